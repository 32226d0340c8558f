# RepMLPNet-L256 on ImageNet-1k at 256x256, 8 GPUs x 32 images: the
# RepMLPNet release's recipe (see repmlpnet_in1k-256px.py).
_base_ = './_base_/repmlpnet_in1k-256px.py'

model = dict(backbone=dict(arch='L256'), head=dict(in_channels=768))
