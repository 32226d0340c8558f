# UperNet + CycleMLP-B1 on Cityscapes, 512x1024 crops, 80k iterations,
# 8 GPUs x 2 images; the same head, optimizer (AdamW, lr 6e-5, weight decay
# 0.01, no decay on norms, 1500-iteration warm-up, poly decay) and sliding
# 512x1024 inference as the RepMLPNet-T224 UperNet config.
#
# CycleMLP has no partition: its Cycle FCs mix a fixed 3-pixel neighbourhood
# and run on any map size, so whole-frame inference would work as well.
# UperNet reads all four stages (channels 64, 128, 320, 512), each through
# its own LayerNorm, so every backbone parameter gets a gradient.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py',
]
custom_imports = dict(imports=['mmrep'], allow_failed_imports=False)

crop_size = (512, 1024)
channels = [64, 128, 320, 512]
# ImageNet weights: the original release's CycleMLP_B1.pth or an mmrep
# checkpoint, e.g. dict(type='Pretrained', checkpoint='CycleMLP_B1.pth')
backbone_init = None

data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmrep.CycleMLP',
        arch='B1',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
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
