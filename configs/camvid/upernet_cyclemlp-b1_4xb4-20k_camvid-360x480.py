# UperNet + CycleMLP-B1 on CamVid at the papers' scale: 360x480 crops,
# 20k iterations, 4 GPUs x 4 images.
_base_ = ['./_base_/upernet_camvid.py']

channels = [64, 128, 320, 512]
# e.g. dict(type='Pretrained', checkpoint='CycleMLP_B1.pth')
backbone_init = None

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmrep.CycleMLP',
        arch='B1',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=backbone_init),
    decode_head=dict(in_channels=channels),
    auxiliary_head=dict(in_channels=channels[2]))
