# UperNet + RepMLPNet-T224 on Cityscapes, 512x1024 crops, 80k iterations,
# 8 GPUs x 2 images.
#
# Partition sizes: the T224 preset partitions each stage into its whole
# 224x224-image map (56, 28, 14, 7). 512x1024 crops give stage maps of
# 128x256, 64x128, 32x64 and 16x32, which 56/28/14/7 do not divide, so this
# config uses (64, 32, 16, 8): every crop divides evenly, and so do whole
# 1024x2048 frames. Any other size would be zero-padded per block.
#
# Norms: SyncBN in the backbone, its re-parameterizable branches included,
# since 2 images per GPU are too few for per-GPU BatchNorm statistics; the
# heads use SyncBN too (mmseg's base). On the CPU (gloo), tools/train.py
# turns SyncBN into BN and logs it.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py',
]
custom_imports = dict(imports=['mmrep', 'mmrep.deploy.autoswitch'],
                      allow_failed_imports=False)

crop_size = (512, 1024)
channels = [64, 128, 256, 512]
# ImageNet weights: an mmrep, original RepMLPNet-T224 or mmpretrain
# checkpoint, e.g. dict(type='Pretrained', checkpoint='RepMLPNet-T224.pth').
# Its partition FCs (fc3, trained on 56/28/14/7 partitions) are resampled to
# (64, 32, 16, 8) on load, one log line per tensor (mmrep.checkpoints.resample).
backbone_init = None

data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmrep.RepMLPNet',
        arch='T224',
        partition_sizes=(64, 32, 16, 8),
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=backbone_init),
    decode_head=dict(in_channels=channels, num_classes=19),
    auxiliary_head=dict(in_channels=channels[2], num_classes=19),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 682)))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999),
                   weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=80000,
         by_epoch=False),
]
train_dataloader = dict(batch_size=2)
custom_hooks = [dict(type='mmrep.ReparamCheckpointHook')]
