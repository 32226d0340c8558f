# UperNet + RepVGG-B1g2 on CamVid at the papers' scale: 360x480 crops,
# 20k iterations, 4 GPUs x 4 images.
_base_ = ['./_base_/upernet_camvid.py']

channels = [128, 256, 512, 2048]
# e.g. dict(type='Pretrained', checkpoint='RepVGG-B1g2-train.pth')
backbone_init = None

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmrep.RepVGG',
        arch='B1g2',
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=backbone_init),
    decode_head=dict(in_channels=channels),
    auxiliary_head=dict(in_channels=channels[2]))
