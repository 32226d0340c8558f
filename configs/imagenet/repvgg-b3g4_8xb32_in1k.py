# RepVGG-B3g4 on ImageNet-1k, 8 GPUs x 32 images: the RepVGG paper's recipe
# (200 epochs with AutoAugment, label smoothing and mixup; see
# repvgg_in1k_200e-aa-ls-mixup.py).
_base_ = './_base_/repvgg_in1k_200e-aa-ls-mixup.py'

model = dict(backbone=dict(arch='B3g4'), head=dict(in_channels=2560))
