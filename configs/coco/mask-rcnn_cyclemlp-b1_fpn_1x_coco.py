# Mask R-CNN + FPN with a CycleMLP-B1 backbone on COCO, 1x schedule (12
# epochs), 8 GPUs x 2 images (batch 16), images resized to at most 1333x800.
#
# Recipe: the CycleMLP release publishes no detection configs (its
# detection/README.md says "coming soon"), so this follows PVT's framework,
# which the CycleMLP authors name for segmentation: AdamW, weight decay
# 1e-4, batch 16, the 1x step schedule of mmdet's
# mask-rcnn_r50_fpn_1x_coco.py (lr x0.1 after epochs 8 and 11, 500-iteration
# linear warm-up), its pipeline (resize, flip) and its heads. The learning
# rate is 1e-4, the value of PVT's RetinaNet configs; PVT's released Mask
# R-CNN configs (whai362/PVT, branches v1 and v2,
# detection/configs/mask_rcnn_pvt_*_fpn_1x_coco.py) use 2e-4 instead, and
# which of the two the CycleMLP paper's Mask R-CNN runs used is not settled
# by any released file.
#
# Drop path 0: the release's dense-prediction backbones
# (CycleMLP_B1_feat ... CycleMLP_B5_feat in cycle_mlp.py, registered for
# mmdet) build the network without a drop-path rate, so its default of 0
# applies. (PVT's own backbones use 0.1; that value belongs to PVT.)
#
# The FPN reads all four stages (strides 4-32) and adds a max-pooled fifth
# level, as mmdet's ResNet Mask R-CNN does, so every backbone parameter gets
# a gradient.
#
# Norms: CycleMLP has no BatchNorm (only LayerNorms, which keep no batch
# statistics), so the backbone takes no norm_cfg; nothing is frozen.
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['mmrep', 'mmrep.deploy.autoswitch'],
                      allow_failed_imports=False)

# ImageNet-1k weights: the original release's CycleMLP_B1.pth (classifier
# or dense-prediction form) or an mmrep checkpoint. Placeholder path: put
# the file there or override it with
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/CycleMLP_B1.pth
pretrained = 'checkpoints/CycleMLP_B1.pth'
channels = [64, 128, 320, 512]  # the backbone's stage widths

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmrep.CycleMLP',
        arch='B1',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.0,  # the release's dense backbones (see above)
        frozen_stages=-1,
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=channels))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4))
train_dataloader = dict(batch_size=2)  # x 8 GPUs
auto_scale_lr = dict(base_batch_size=16)
custom_hooks = [dict(type='mmrep.ReparamCheckpointHook')]
