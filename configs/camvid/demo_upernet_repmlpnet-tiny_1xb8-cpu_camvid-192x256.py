# UperNet + a small RepMLPNet on real CamVid, 192x256 crops, on the CPU
# (the demo setting of ./_base_/demo_upernet_camvid-cpu.py). The partition
# sizes follow the crop (partition_sizes='auto', logged at build): each stage
# map split into the fewest equal partitions no larger than the arch's.
_base_ = ['./_base_/demo_upernet_camvid-cpu.py']

channels = [32, 64, 128, 256]

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmrep.RepMLPNet',
        arch=dict(channels=channels, num_blocks=(1, 1, 2, 1),
                  sharesets=(1, 4, 8, 16),
                  partition_sizes=((16, 32), (8, 16), (4, 8), (2, 4))),
        partition_sizes='auto',
        input_size=_base_.crop_size,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True)),
    decode_head=dict(in_channels=channels),
    auxiliary_head=dict(in_channels=channels[2]))
