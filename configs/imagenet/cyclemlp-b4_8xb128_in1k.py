# CycleMLP-B4 on ImageNet-1k, 8 GPUs x 128 images: the CycleMLP release's
# DeiT-style recipe with stochastic depth 0.3 (see cyclemlp_in1k.py).
_base_ = './_base_/cyclemlp_in1k.py'

model = dict(
    backbone=dict(arch='B4', drop_path_rate=0.3),
    head=dict(in_channels=512))
