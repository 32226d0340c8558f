# UperNet + RepMLPNet-B256 on Cityscapes, 512x1024 crops, 80k iterations,
# 8 GPUs x 2 images. The B256 preset's partitions (64, 32, 16, 8) divide
# the 512x1024 crop's stage maps (128x256 ... 16x32) evenly as they are.
_base_ = ['./upernet_repmlpnet-t224_8xb2-80k_cityscapes-512x1024.py']

channels = [96, 192, 384, 768]
model = dict(
    backbone=dict(arch='B256', partition_sizes=(64, 32, 16, 8)),
    decode_head=dict(in_channels=channels),
    auxiliary_head=dict(in_channels=channels[2]))
