# PSPNet + RepMLPNet-T224 on Cityscapes, 512x1024 crops, 80k iterations,
# 8 GPUs x 2 images. The pyramid pooling head reads the stride-32 stage
# (512 channels), the auxiliary FCN head the stride-16 stage.
# Partition sizes (64, 32, 16, 8) divide the crops' stage maps evenly; see
# upernet_repmlpnet-t224_8xb2-80k_cityscapes-512x1024.py.
# Norms: SyncBN in the backbone (2 images per GPU) and the heads.
_base_ = [
    'mmseg::_base_/models/pspnet_r50-d8.py',
    'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py',
]
custom_imports = dict(imports=['mmrep', 'mmrep.deploy.autoswitch'],
                      allow_failed_imports=False)

crop_size = (512, 1024)
backbone_init = None  # e.g. dict(type='Pretrained', checkpoint='T224.pth')

data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmrep.RepMLPNet',
        arch='T224',
        partition_sizes=(64, 32, 16, 8),
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=backbone_init),
    decode_head=dict(in_channels=512, in_index=3,
                     num_classes=19),
    auxiliary_head=dict(in_channels=256, in_index=2,
                        num_classes=19),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 682)))
train_dataloader = dict(batch_size=2)
custom_hooks = [dict(type='mmrep.ReparamCheckpointHook')]
