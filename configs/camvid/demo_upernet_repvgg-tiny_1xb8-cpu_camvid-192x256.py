# UperNet + a small RepVGG on real CamVid, 192x256 crops, on the CPU (the
# demo setting of ./_base_/demo_upernet_camvid-cpu.py).
_base_ = ['./_base_/demo_upernet_camvid-cpu.py']

channels = [32, 64, 128, 256]

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmrep.RepVGG',
        arch=dict(num_blocks=(1, 1, 2, 1),
                  width_multiplier=(0.5, 0.5, 0.5, 0.5)),
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        block='repvgg'),
    decode_head=dict(in_channels=channels),
    auxiliary_head=dict(in_channels=channels[2]))
