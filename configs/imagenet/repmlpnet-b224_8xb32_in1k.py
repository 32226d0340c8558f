# RepMLPNet-B224 on ImageNet-1k at 224x224, 8 GPUs x 32 images: the
# RepMLPNet release's recipe (see repmlpnet_in1k.py).
_base_ = './_base_/repmlpnet_in1k.py'

model = dict(backbone=dict(arch='B224'), head=dict(in_channels=768))
