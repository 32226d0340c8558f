# UperNet + RepMLPNet-T224 on CamVid at twice the frames' size: frames
# resized to 960x720, 720x960 crops, 20k iterations, 4 GPUs x 2 images.
# The crop is set in the lines below (RandomCrop, the pad size and the
# 'auto' partitions read it).
_base_ = ['./upernet_repmlpnet-t224_4xb4-20k_camvid-360x480.py']

crop_size = (720, 960)
image_scale = (960, 720)
train_pipeline = [
    dict(t, crop_size=crop_size) if t.type == 'RandomCrop' else
    dict(t, scale=image_scale) if t.type == 'RandomResize' else t
    for t in _base_.train_pipeline]
test_pipeline = [
    dict(t, scale=image_scale) if t.type == 'Resize' else t
    for t in _base_.test_pipeline]

model = dict(data_preprocessor=dict(size=crop_size),
             backbone=dict(input_size=crop_size))
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
