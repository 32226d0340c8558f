# UperNet + RepMLPNet-L256 (96, 192, 384, 768 channels; 2, 2, 18, 2 blocks) on
# Cityscapes, 512x1024 crops, 80k iterations, 8 GPUs x 2 images: the T224
# config's recipe, head, SyncBN and sliding inference. The L256 preset's
# partitions (64, 32, 16, 8) divide the 512x1024 crop's stage maps
# (128x256 ... 16x32) evenly as they are, so its ImageNet weights load
# without resampling.
_base_ = ['./upernet_repmlpnet-t224_8xb2-80k_cityscapes-512x1024.py']

channels = [96, 192, 384, 768]
model = dict(
    backbone=dict(arch='L256', partition_sizes=(64, 32, 16, 8)),
    decode_head=dict(in_channels=channels),
    auxiliary_head=dict(in_channels=channels[2]))
