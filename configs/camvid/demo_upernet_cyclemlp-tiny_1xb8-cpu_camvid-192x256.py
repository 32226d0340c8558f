# UperNet + a small CycleMLP on real CamVid, 192x256 crops, on the CPU (the
# demo setting of ./_base_/demo_upernet_camvid-cpu.py).
_base_ = ['./_base_/demo_upernet_camvid-cpu.py']

channels = [32, 64, 128, 256]

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmrep.CycleMLP',
        arch=dict(channels=channels, num_blocks=(1, 1, 2, 1),
                  mlp_ratios=(2, 2, 2, 2)),
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.),
    decode_head=dict(in_channels=channels),
    auxiliary_head=dict(in_channels=channels[2]))
