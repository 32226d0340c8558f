# RetinaNet + FPN with a CycleMLP-B1 backbone on COCO, 1x schedule (12
# epochs), 8 GPUs x 2 images, images resized to at most 1333x800.
#
# Recipe: the CycleMLP release publishes no detection configs (its
# detection/README.md says "coming soon"); this follows PVT's released
# RetinaNet configs (whai362/PVT, branch v2,
# detection/configs/retinanet_pvt_*_fpn_1x_coco.py), whose framework the
# CycleMLP authors name for segmentation and whose RetinaNet neck
# (start_level=1) cycle_mlp.py provides for: AdamW, lr 1e-4, weight decay
# 1e-4, no gradient clipping, batch 16 (8 GPUs x 2), the 1x step schedule
# (lr x0.1 after epochs 8 and 11, 500-iteration linear warm-up) and
# pipeline of mmdet's RetinaNet.
#
# Drop path 0: the release's dense-prediction backbones
# (CycleMLP_B1_feat ... CycleMLP_B5_feat in cycle_mlp.py, registered for
# mmdet) build the network without a drop-path rate, so its default of 0
# applies. (PVT's own backbones use 0.1; that value belongs to PVT.)
#
# The FPN reads stages 1-3 (strides 8, 16, 32; start_level=1) and builds its
# two extra levels (strides 64, 128) from the stride-32 backbone map itself
# ('on_input'), as in the paper. The backbone still returns stage 0, whose
# output norm (``norm0``, kept so that the original release's
# dense-prediction checkpoints load unchanged) then gets no gradient: hence
# find_unused_parameters for DDP.
#
# Norms: CycleMLP normalizes with LayerNorm, which has no batch statistics,
# so the 2-image batches need no frozen norms (norm_eval changes nothing);
# nothing is frozen (frozen_stages=-1), as in PVT's setup.
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['mmrep', 'mmrep.deploy.autoswitch'],
                      allow_failed_imports=False)

# ImageNet-1k weights: the original release's CycleMLP_B1.pth (classifier
# or dense-prediction form) or an mmrep checkpoint. This path is a
# placeholder: put the file there or override it with
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
    neck=dict(in_channels=channels, start_level=1,
              add_extra_convs='on_input', num_outs=5))
find_unused_parameters = True

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4))
train_dataloader = dict(batch_size=2)  # x 8 GPUs
auto_scale_lr = dict(base_batch_size=16)
custom_hooks = [dict(type='mmrep.ReparamCheckpointHook')]
