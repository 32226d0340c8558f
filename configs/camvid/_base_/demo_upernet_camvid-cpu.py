# The CPU demo setting on real CamVid: UperNet with a thin head (64
# channels, auxiliary 32), 192x256 crops, batch 8, 500 iterations, one
# process with no data workers. A backbone config adds model.backbone and
# the heads' in_channels.
#
# Changing the crop (here from camvid.py's 360x480): RandomCrop, the data
# preprocessor's size and RepMLPNet's input_size read crop_size, so a crop
# is set in these lines.
_base_ = ['./upernet_camvid.py']

crop_size = (192, 256)
train_pipeline = [
    dict(t, crop_size=crop_size) if t.type == 'RandomCrop' else t
    for t in _base_.train_pipeline]
max_iters = 500

model = dict(
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(channels=64),
    auxiliary_head=dict(channels=32),
    test_cfg=dict(mode='whole'))

train_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False,
                        dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False)
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=50, end=max_iters,
         by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False,
                    interval=max_iters, max_keep_ckpts=1))
