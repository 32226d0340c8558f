# A small Semantic FPN + CycleMLP trained on the CPU on generated
# ADE20K-layout data (mmrep.datasets.make_ade20k_like writes it; data_root
# below is where to put it). Same segmentor, neck, head, dataset type
# (ADE20KDataset, 150 classes, reduce_zero_label) and evaluator as
# fpn_cyclemlp-b1_8xb4-40k_ade20k-512x512.py, at 128x128 with a small
# custom arch, a thin head and a short schedule.
_base_ = ['./fpn_cyclemlp-b1_8xb4-40k_ade20k-512x512.py']

crop_size = (128, 128)
data_root = 'data/demo_ade20k'
channels = [16, 32, 64, 128]
max_iters = 200

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch=dict(_delete_=True, channels=channels, num_blocks=(1, 1, 1, 1),
                  mlp_ratios=(2, 2, 2, 2)),
        drop_path_rate=0.,
        init_cfg=None),
    neck=dict(in_channels=channels, out_channels=32),
    decode_head=dict(in_channels=[32, 32, 32, 32], channels=32))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=20, end=max_iters,
         by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False,
                    interval=max_iters, max_keep_ckpts=1))
