# The README demo's UperNet with a small RepVGG backbone instead of
# RepMLPNet: same data, pipeline, head and schedule (the demo config), for
# the INT8 benchmark (benchmarks/bench_quant.py). `block='qarepvgg'` (via
# --cfg-options model.backbone.block=qarepvgg) trains the quantization-
# friendly block.
_base_ = ['./demo_upernet_repmlpnet-tiny_1xb8-cpu_cityscapes-synthetic.py']

channels = [16, 32, 64, 128]

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmrep.RepVGG',
        arch=dict(num_blocks=(1, 1, 2, 1),
                  width_multiplier=(0.25, 0.25, 0.25, 0.25)),
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        block='repvgg'))
