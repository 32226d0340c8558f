# UperNet + RepVGG-B1g2 on ADE20K, 512x512 crops, 160k iterations, 8 GPUs x
# 2 images: the RepMLPNet-T224 UperNet config's recipe (mmseg's UperNet
# ADE20K setting), head and sliding inference, with RepVGG-B1g2 (stage
# widths 128, 256, 512, 2048, strides 4-32). RepVGG has no partition: any
# map size runs.
#
# Norms: SyncBN in every RepVGG branch (2 images per GPU) and in the heads.
_base_ = ['./upernet_repmlpnet-t224_8xb2-160k_ade20k-512x512.py']

channels = [128, 256, 512, 2048]
# Original RepVGG-B1g2-train.pth, mmpretrain or mmrep weights (placeholder).
pretrained = 'checkpoints/RepVGG-B1g2-train.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmrep.RepVGG',
        arch='B1g2',
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=channels),
    auxiliary_head=dict(in_channels=channels[2]))
