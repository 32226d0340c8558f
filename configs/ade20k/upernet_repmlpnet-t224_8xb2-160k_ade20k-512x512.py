# UperNet + RepMLPNet-T224 on ADE20K, 512x512 crops, 160k iterations,
# 8 GPUs x 2 images (batch 16).
#
# Recipe: mmseg's UperNet ADE20K setting for hierarchical backbones (its
# Swin configs): AdamW, lr 6e-5, weight decay 0.01, no decay on norms,
# 1500-iteration linear warm-up, then poly decay (power 1.0) to 160k
# iterations, batch 16; pipeline and dataset settings from mmseg's ADE20K
# base. The RepMLPNet paper's own ADE20K recipe is not reproduced here.
#
# Partition sizes: the T224 preset partitions each stage into its whole
# 224x224-image map (56, 28, 14, 7), which does not divide the 512x512
# crop's stage maps (128, 64, 32, 16). (64, 32, 16, 8) divides them into
# 2x2 partitions per stage (as the B256 preset does for 256x256 images, and
# as the Cityscapes configs do), keeps fc3 within 8/7 of its ImageNet size
# per side (the ImageNet weights are resampled on load), and stays
# affordable: whole-map partitions (128, 64, 32, 16) would make stage 1's
# fc3 a 16384x16384 matrix. Inference slides 512x512 windows, so every
# window is processed with the training partition grid.
#
# Norms: SyncBN in the backbone, its re-parameterizable branches included
# (2 images per GPU), and in the heads, as mmseg's base.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
custom_imports = dict(imports=['mmrep', 'mmrep.deploy.autoswitch'],
                      allow_failed_imports=False)

crop_size = (512, 512)
channels = [64, 128, 256, 512]
# ImageNet weights: an mmrep, original RepMLPNet-T224 or mmpretrain
# checkpoint (placeholder path; override with --cfg-options
# model.backbone.init_cfg.checkpoint=...).
pretrained = 'checkpoints/RepMLPNet-T224-train.pth'

model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmrep.RepMLPNet',
        arch='T224',
        partition_sizes=(64, 32, 16, 8),
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=channels, num_classes=150),
    auxiliary_head=dict(in_channels=channels[2], num_classes=150),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999),
                   weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000,
         by_epoch=False),
]
train_dataloader = dict(batch_size=2)  # x 8 GPUs
custom_hooks = [dict(type='mmrep.ReparamCheckpointHook')]
