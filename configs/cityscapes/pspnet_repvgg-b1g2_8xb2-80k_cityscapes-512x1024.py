# PSPNet + RepVGG-B1g2 on Cityscapes, 512x1024 crops, 80k iterations,
# 8 GPUs x 2 images. The pyramid pooling head reads the stride-32 stage
# (2048 channels), the auxiliary FCN head the stride-16 stage (512).
# Norms: SyncBN in every RepVGG branch (2 images per GPU) and the heads.
_base_ = [
    'mmseg::_base_/models/pspnet_r50-d8.py',
    'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py',
]
custom_imports = dict(imports=['mmrep', 'mmrep.deploy.autoswitch'],
                      allow_failed_imports=False)

crop_size = (512, 1024)
backbone_init = None  # e.g. dict(type='Pretrained', checkpoint='B1g2.pth')

model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmrep.RepVGG',
        arch='B1g2',
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=backbone_init),
    decode_head=dict(in_channels=2048, in_index=3, num_classes=19),
    auxiliary_head=dict(in_channels=512, in_index=2, num_classes=19),
    # Sliding 512x1024 windows, as the other Cityscapes configs.
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 682)))
train_dataloader = dict(batch_size=2)
custom_hooks = [dict(type='mmrep.ReparamCheckpointHook')]
