# CycleMLP-B3 on ImageNet-1k, 8 GPUs x 128 images: the CycleMLP release's
# DeiT-style recipe with stochastic depth 0.2 (see cyclemlp_in1k.py).
_base_ = './_base_/cyclemlp_in1k.py'

model = dict(
    backbone=dict(arch='B3', drop_path_rate=0.2),
    head=dict(in_channels=512))
