# RepVGG on ImageNet-1k, the RepVGG paper's basic recipe (used for A0-A2,
# B0, B1, B1g2, B1g4): 120 epochs of SGD (momentum 0.9, lr 0.1, weight decay
# 1e-4) with cosine decay, 256 images per step (8 GPUs x 32), random
# resized crops and flips only, no weight decay on BN parameters and biases.
# A preset's config sets `model.backbone.arch` and `model.head.in_channels`.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs32_pil_resize.py',
    'mmpretrain::_base_/schedules/imagenet_bs256_coslr.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmrep', 'mmrep.deploy.autoswitch'],
                      allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(type='mmrep.RepVGG', arch='A0', out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    # LinearClsHead keeps its weights as `head.fc.*`, the names mmrep's
    # checkpoint converter gives the original `linear.*` classifier.
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=1280,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4),
    paramwise_cfg=dict(
        bias_decay_mult=0.0,
        custom_keys={
            'rbr_dense.bn': dict(decay_mult=0.0),
            'rbr_1x1.bn': dict(decay_mult=0.0),
            'rbr_identity': dict(decay_mult=0.0),
        }))
param_scheduler = dict(
    type='CosineAnnealingLR',
    T_max=120,
    by_epoch=True,
    begin=0,
    end=120,
    convert_to_iter_based=True)
train_cfg = dict(by_epoch=True, max_epochs=120, val_interval=1)
val_dataloader = dict(batch_size=256)
test_dataloader = dict(batch_size=256)
auto_scale_lr = dict(base_batch_size=256)

default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3))
# Writes `<checkpoint>_deploy.pth` (the fused model) next to each checkpoint.
custom_hooks = [dict(type='mmrep.ReparamCheckpointHook')]
