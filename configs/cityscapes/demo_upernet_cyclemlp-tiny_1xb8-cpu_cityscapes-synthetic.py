# The README demo's UperNet with a small CycleMLP backbone instead of
# RepMLPNet: same data, pipeline, head and schedule (the demo config), for
# the INT8 benchmark (benchmarks/bench_quant.py).
_base_ = ['./demo_upernet_repmlpnet-tiny_1xb8-cpu_cityscapes-synthetic.py']

channels = [16, 32, 64, 128]

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmrep.CycleMLP',
        arch=dict(channels=channels, num_blocks=(1, 1, 2, 1),
                  mlp_ratios=(2, 2, 2, 2)),
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.))
