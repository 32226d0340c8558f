# RepMLP-Res50-light-224 (fc3 groups 4) on ImageNet-1k,
# 8 GPUs x 32 images, the RepMLP paper's recipe (see repmlp-res50_in1k.py).
_base_ = './_base_/repmlp-res50_in1k.py'

model = dict(backbone=dict(arch='light-224'), head=dict(in_channels=2048))
