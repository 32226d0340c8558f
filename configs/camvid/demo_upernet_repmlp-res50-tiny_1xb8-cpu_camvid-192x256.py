# UperNet + a shallow RepMLP-Res50 (light blocks, one or two per stage) on
# real CamVid, 192x256 crops, on the CPU (the demo setting of
# ./_base_/demo_upernet_camvid-cpu.py). The RepMLP units are built for the
# crop: img_size=crop_size and 4x4 partitions give the c3 map (stride 8,
# 24x32) a 6x8 grid and c4 (stride 16, 12x16) a 3x4 grid.
_base_ = ['./_base_/demo_upernet_camvid-cpu.py']

channels = [256, 512, 1024, 2048]

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmrep.RepMLPResNet',
        arch=dict(block_type='light', num_blocks=(1, 2, 2, 1),
                  img_size=_base_.crop_size, partition=(4, 4),
                  conv_kernels=(1, 3), fc1_fc2_reduction=4,
                  fc3_groups=(4, 8), bottleneck_r=(2, 4)),
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True)),
    decode_head=dict(in_channels=channels),
    auxiliary_head=dict(in_channels=channels[2]))
