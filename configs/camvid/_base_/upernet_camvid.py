# UperNet on CamVid: mmseg's UperNet, the dataset of ./camvid.py (its
# num_classes, ignore_index and crop_size wired into the model here), mmseg's
# runtime and a 20k-iteration AdamW schedule (1k warm-up, poly decay; 4
# GPUs x 4 images). A backbone config replaces model.backbone and the heads'
# in_channels.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    './camvid.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_20k.py',
]
custom_imports = dict(imports=['mmrep', 'mmrep.deploy.autoswitch'],
                      allow_failed_imports=False)

model = dict(
    pretrained=None,
    data_preprocessor=dict(size=_base_.crop_size,
                           seg_pad_val=_base_.ignore_index),
    decode_head=dict(num_classes=_base_.num_classes,
                     ignore_index=_base_.ignore_index),
    auxiliary_head=dict(num_classes=_base_.num_classes,
                        ignore_index=_base_.ignore_index))
custom_hooks = [dict(type='mmrep.ReparamCheckpointHook')]

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999),
                   weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=1000),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1000, end=20000,
         by_epoch=False),
]
