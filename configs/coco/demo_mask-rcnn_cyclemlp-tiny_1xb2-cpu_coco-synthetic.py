# A small Mask R-CNN + CycleMLP trained on the CPU on generated COCO-format
# data with instance masks (mmrep.datasets.make_coco_like writes it; every
# annotation has a polygon). Same detector, neck, heads and pipeline types
# as mask-rcnn_cyclemlp-b1_fpn_1x_coco.py, at 128x128 with a small custom
# arch, thin heads, three classes and an iteration-based schedule;
# evaluated with mmdet's CocoMetric on boxes and masks.
_base_ = ['./mask-rcnn_cyclemlp-b1_fpn_1x_coco.py']

data_root = 'data/demo_coco/'
classes = ('red', 'green', 'blue')  # mmrep.datasets.COCO_DEMO_CLASSES
img_scale = (128, 128)
channels = [16, 32, 64, 128]
max_iters = 200

model = dict(
    backbone=dict(
        arch=dict(_delete_=True, channels=channels, num_blocks=(1, 1, 1, 1),
                  mlp_ratios=(2, 2, 2, 2)),
        drop_path_rate=0.,
        init_cfg=None),
    neck=dict(in_channels=channels, out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=32),
        bbox_head=dict(in_channels=32, fc_out_channels=64,
                       num_classes=len(classes)),
        mask_roi_extractor=dict(out_channels=32),
        mask_head=dict(in_channels=32, conv_out_channels=32, num_convs=1,
                       num_classes=len(classes))),
    # Keep low-scoring boxes too: after a short training few pass 0.05.
    test_cfg=dict(rcnn=dict(score_thr=0.0)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor')),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes),
                 ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='images/train/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=4),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes),
                 ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='images/val/'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json',
                     metric=['bbox', 'segm'])
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[int(max_iters * 0.8)], gamma=0.1),
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop',
                 max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False,
                    interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
