# RepMLP-Res50-bottleneck-224-g4/8 (fc3 groups 4/8 in c3/c4) on ImageNet-1k,
# 8 GPUs x 32 images, the RepMLP paper's recipe (see repmlp-res50_in1k.py).
_base_ = './_base_/repmlp-res50_in1k.py'

model = dict(
    backbone=dict(arch='bottleneck-224-g4/8'), head=dict(in_channels=2048))
