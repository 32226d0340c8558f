# Semantic FPN + CycleMLP-B1 on ADE20K, 512x512 crops, 40k iterations,
# 8 GPUs x 4 images (batch 32).
#
# Recipe: the CycleMLP paper trains Semantic FPN on ADE20K as PVT does. The
# numbers here (AdamW, lr 2e-4, weight decay 1e-4, poly decay with power
# 0.9 over 40k iterations, batch 32, 512x512 crops) are those of mmseg's
# PVT-style reference
# poolformer/fpn_poolformer_s12_8xb4-40k_ade20k-512x512.py; they were not
# checked against the paper's text. The pipeline and dataset settings are
# mmseg's own
# ADE20K base (random resize of 2048x512 by 0.5-2, crop, flip, photometric
# distortion; inference on the image resized to 2048x512). Drop path 0.1 is
# a choice (the value of PVT's and PoolFormer's dense configs).
#
# Norms: CycleMLP has no BatchNorm (only LayerNorms, which keep no batch
# statistics), so the backbone takes no norm_cfg; the FPN head keeps the
# base's SyncBN (4 images per GPU).
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
]
custom_imports = dict(imports=['mmrep'], allow_failed_imports=False)

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
        drop_path_rate=0.1,
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
