# The baseline of the CamVid benchmark: UperNet + mmseg's own ResNetV1c-18,
# from scratch, in the demo setting of ./_base_/demo_upernet_camvid-cpu.py
# (benchmarks/bench_camvid.py trains it beside mmrep's backbones).
_base_ = ['./_base_/demo_upernet_camvid-cpu.py']

channels = [64, 128, 256, 512]

model = dict(
    backbone=dict(depth=18, init_cfg=None),
    decode_head=dict(in_channels=channels),
    auxiliary_head=dict(in_channels=channels[2]))
