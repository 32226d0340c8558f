# The README demo: a small UperNet + RepMLPNet trained on the CPU in a few
# minutes on generated Cityscapes-layout data (tools/demo.py writes it to
# data/demo_cityscapes). Same model family and pipeline types as the real
# configs, at 128x256 and with a small custom arch.
_base_ = ['./upernet_repmlpnet-t224_8xb2-80k_cityscapes-512x1024.py']

crop_size = (128, 256)
data_root = 'data/demo_cityscapes'
channels = [16, 32, 64, 128]
max_iters = 300

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch=dict(_delete_=True, channels=channels, num_blocks=(1, 1, 2, 1),
                  sharesets=(1, 4, 8, 16),
                  partition_sizes=((16, 32), (8, 16), (4, 8), (2, 4))),
        partition_sizes=None),
    decode_head=dict(in_channels=channels, channels=64),
    auxiliary_head=dict(in_channels=channels[2], channels=32),
    test_cfg=dict(_delete_=True, mode='whole'))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=2e-3, weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=30, end=max_iters,
         by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False,
                    interval=max_iters, max_keep_ckpts=1))
