# UperNet + RepMLP-Res50-light-g4/8 on CamVid, 20k iterations, 4 GPUs x 4
# images. The RepMLP units are built for one map size, which a stride-32
# network needs whole: 352x480 crops (360 is not a multiple of 32) give c3
# (stride 8) a 44x60 map and c4 (stride 16) 22x30, which 11x6 partitions
# split into grids of 4x10 and 2x5; fc1_fc2_reduction=4 keeps the global
# perceptrons near the 224x224 models' size (91M backbone parameters, 60M
# at 224x224; 11x15 partitions would make 391M). ImageNet weights (7x7
# partitions, 4x4 / 2x2 grids) are resampled on load, one log line per
# tensor. Whole 360x480 frames are read in two 352x480 windows.
_base_ = ['./_base_/upernet_camvid.py']

crop_size = (352, 480)
train_pipeline = [
    dict(t, crop_size=crop_size) if t.type == 'RandomCrop' else t
    for t in _base_.train_pipeline]
channels = [256, 512, 1024, 2048]
# e.g. dict(type='Pretrained', checkpoint='RepMLP-Res50-light-224-g4-8.pth')
backbone_init = None

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='mmrep.RepMLPResNet',
        arch=dict(block_type='light', num_blocks=(3, 4, 6, 3),
                  img_size=crop_size, partition=(11, 6),
                  conv_kernels=(1, 3, 5), fc1_fc2_reduction=4,
                  fc3_groups=(4, 8), bottleneck_r=(2, 4)),
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=backbone_init),
    decode_head=dict(in_channels=channels),
    auxiliary_head=dict(in_channels=channels[2]),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(320, 480)))
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
