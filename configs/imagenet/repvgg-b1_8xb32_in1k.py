# RepVGG-B1 on ImageNet-1k, 8 GPUs x 32 images: the RepVGG paper's recipe
# (120 epochs, simple augmentation; see repvgg_in1k.py).
_base_ = './_base_/repvgg_in1k.py'

model = dict(backbone=dict(arch='B1'), head=dict(in_channels=2048))
