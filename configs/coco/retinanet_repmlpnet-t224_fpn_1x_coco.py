# RetinaNet + FPN with a RepMLPNet-T224 backbone on COCO, 1x schedule, 8
# GPUs x 2 images, images resized to at most 1333x800; optimizer and
# schedule as in the CycleMLP configs (AdamW, lr 1e-4, weight decay 1e-4) so
# that the backbones compare on one recipe.
#
# Variable image sizes. COCO images keep their aspect ratio, so every batch
# has its own size; the detector pads each batch bottom/right to a multiple
# of 32 (pad_size_divisor=32), so stage i's map is a multiple of 8 / 2**i.
# Inside every RepMLP block, mmrep zero-pads the map bottom/right to a
# multiple of the stage's partition, applies the partition FC and crops back
# (the global perceptron averages the unpadded map), so any size runs.
#
# Partition sizes: (56, 28, 14, 7), the T224 preset's. The partition FC's
# weights are (h*w) x (h*w), so only these sizes load T224 ImageNet weights
# as they are. They also suit ~800x1333 inputs: a 1333x800 image padded to
# 1344x800 gives stage maps 336x200, 168x100, 84x50, 42x25 (width x
# height); every width is exactly 6 partitions and every height is padded
# to 4 partitions (200 -> 224 rows, 12%), where (64, 32, 16, 8) would pad
# 200 -> 256 and 336 -> 384. pad_size_divisor=224 would remove the padding
# inside the blocks but pad whole images far more.
#
# Norms: RepMLPNet uses BatchNorm, whose statistics 2-image batches would
# spoil, so norm_eval=True keeps the pretrained running statistics (the
# affine parameters still train), as mmdet does for ResNet. No stage is
# frozen (frozen_stages=-1). Stage 0 feeds stage 1, so although the FPN
# skips its output every backbone parameter gets a gradient. The BNs are
# SyncBN (2 images per GPU), which matters once norm_eval is turned off.
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['mmrep', 'mmrep.deploy.autoswitch'],
                      allow_failed_imports=False)

# ImageNet-1k weights: an original RepMLPNet-T224 checkpoint (train-time or
# fused), an mmpretrain RepMLPNet-T224 checkpoint or an mmrep one. This path
# is a placeholder: put the file there or override it with
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/T224.pth
pretrained = 'checkpoints/RepMLPNet-T224.pth'
channels = [64, 128, 256, 512]  # the backbone's stage widths

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmrep.RepMLPNet',
        arch='T224',
        partition_sizes=(56, 28, 14, 7),
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_eval=True,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=channels, start_level=1,
              add_extra_convs='on_input', num_outs=5))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4))
train_dataloader = dict(batch_size=2)  # x 8 GPUs
auto_scale_lr = dict(base_batch_size=16)
custom_hooks = [dict(type='mmrep.ReparamCheckpointHook')]
