# Semantic FPN + CycleMLP-B1 on ADE20K, 512x512 crops, 40k iterations,
# 8 GPUs x 4 images (batch 32).
#
# Recipe: the CycleMLP release publishes no segmentation configs (its
# semantic/README.md says "coming soon"); its authors name PVT's
# segmentation code as the one they used, with only the backbone swapped
# (ShoufaChen/CycleMLP issues #7 and #9). This config therefore follows
# PVT's released Semantic FPN configs (whai362/PVT, branch v2,
# segmentation/configs/sem_fpn/PVT/fpn_pvt_*_ade20k_40k.py and their
# _base_): AdamW, lr 2e-4, weight decay 1e-4, poly decay with power 0.9 down
# to 0 over 40k iterations, 8 GPUs x 4 images, 512x512 crops, FPN with 256
# channels and an FPN head with 128 channels, whole-image inference at
# 2048x512, ImageNet-1k backbone weights. The pipeline is mmseg's ADE20K
# base (random resize of 2048x512 by 0.5-2, crop with cat_max_ratio 0.75,
# flip, photometric distortion), which is PVT's.
#
# Drop path 0: the release's dense-prediction backbones
# (CycleMLP_B1_feat ... CycleMLP_B5_feat in cycle_mlp.py, registered for
# mmseg and mmdet) build the network without a drop-path rate, so its
# default of 0 applies. (PVT's own backbones use 0.1; that value belongs to
# PVT, not to CycleMLP.)
#
# One difference mmseg 1.x forces: PVT's test pipeline resizes with its own
# AlignResize, which rounds the resized image up to a multiple of 32; mmseg
# 1.x has no such transform, so inference here runs on the image resized to
# 2048x512 as is (keep ratio).
#
# Norms: CycleMLP has no BatchNorm (only LayerNorms, which keep no batch
# statistics), so the backbone takes no norm_cfg; the FPN head keeps the
# base's SyncBN (4 images per GPU), as in PVT's base.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
]
custom_imports = dict(imports=['mmrep', 'mmrep.deploy.autoswitch'],
                      allow_failed_imports=False)

crop_size = (512, 512)
channels = [64, 128, 320, 512]  # the backbone's stage widths
# ImageNet-1k weights: the original release's CycleMLP_B1.pth or an mmrep
# checkpoint. This path is a placeholder: put the file there or override it
# with --cfg-options model.backbone.init_cfg.checkpoint=/path/to/CycleMLP_B1.pth
pretrained = 'checkpoints/CycleMLP_B1.pth'

model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmrep.CycleMLP',
        arch='B1',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.0,  # the release's dense backbones (see above)
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=channels),
    decode_head=dict(num_classes=150))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4))
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=40000,
         by_epoch=False),
]
train_dataloader = dict(batch_size=4)  # x 8 GPUs
custom_hooks = [dict(type='mmrep.ReparamCheckpointHook')]
