# RepMLP-Res50 on ImageNet-1k, the RepMLP paper's recipe: 100 epochs of SGD
# (momentum 0.9, lr 0.1, weight decay 1e-4) with cosine decay, 256 images
# per step (8 GPUs x 32), random resized crops and flips, label smoothing
# 0.1. A preset's config sets `model.backbone.arch`.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs32_pil_resize.py',
    'mmpretrain::_base_/schedules/imagenet_bs256_coslr.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmrep', 'mmrep.deploy.autoswitch'],
                      allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmrep.RepMLPResNet', arch='bottleneck-224', out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=2048,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, 5)))

param_scheduler = dict(
    type='CosineAnnealingLR',
    T_max=100,
    by_epoch=True,
    begin=0,
    end=100,
    convert_to_iter_based=True)
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)
val_dataloader = dict(batch_size=256)
test_dataloader = dict(batch_size=256)

default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3))
custom_hooks = [dict(type='mmrep.ReparamCheckpointHook')]
