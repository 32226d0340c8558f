# Baseline for pspnet_repmlp-res50-g4-8_8xb2-80k_cityscapes-512x1024.py:
# mmseg's PSPNet with ResNetV1c-50-D8 (ImageNet weights from
# open-mmlab://resnet50_v1c), the same 512x1024 crops, 80k iterations and
# 8 GPUs x 2 images, and the same sliding 512x1024 inference (mmseg's own
# config infers on whole 1024x2048 images; its model-zoo numbers use that).
_base_ = 'mmseg::pspnet/pspnet_r50-d8_4xb2-80k_cityscapes-512x1024.py'
custom_imports = dict(imports=['mmrep', 'mmrep.deploy.autoswitch'],
                      allow_failed_imports=False)

crop_size = (512, 1024)
model = dict(
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 682)))
train_dataloader = dict(batch_size=2)
custom_hooks = [dict(type='mmrep.ReparamCheckpointHook')]
