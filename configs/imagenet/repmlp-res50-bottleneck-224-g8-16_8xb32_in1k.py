# RepMLP-Res50-bottleneck-224-g8/16 (fc3 groups 8/16 in c3/c4) on ImageNet-1k,
# 8 GPUs x 32 images, the RepMLP paper's recipe (see repmlp-res50_in1k.py).
_base_ = './_base_/repmlp-res50_in1k.py'

model = dict(
    backbone=dict(arch='bottleneck-224-g8/16'), head=dict(in_channels=2048))
