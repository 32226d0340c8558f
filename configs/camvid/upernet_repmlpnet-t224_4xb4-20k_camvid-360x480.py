# UperNet + RepMLPNet-T224 on CamVid at the papers' scale: 360x480 crops
# (whole frames), 20k iterations, 4 GPUs x 4 images. Partition sizes follow
# the crop (partition_sizes='auto', logged at build): T224's (56, 28, 14, 7)
# give 45x40, 23x20, 12x10 and 6x5 on the 90x120 ... 12x15 stage maps.
_base_ = ['./_base_/upernet_camvid.py']

channels = [64, 128, 256, 512]
# ImageNet weights, e.g. dict(type='Pretrained', checkpoint='RepMLPNet-T224.pth'):
# fc3 is resampled to the partitions on load, one log line per tensor.
backbone_init = None

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmrep.RepMLPNet',
        arch='T224',
        partition_sizes='auto',
        input_size=_base_.crop_size,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=backbone_init),
    decode_head=dict(in_channels=channels),
    auxiliary_head=dict(in_channels=channels[2]))
