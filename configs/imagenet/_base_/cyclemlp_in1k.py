# CycleMLP on ImageNet-1k, the CycleMLP release's DeiT-style recipe: 300
# epochs of AdamW (lr 1e-3 for 1024 images per step, 8 GPUs x 128, i.e.
# 1e-3 x batch / 1024; weight decay 0.05, none on norms and biases), a
# 5-epoch linear warm-up from 1e-6 then cosine decay to 1e-5, RandAugment
# (rand-m9-mstd0.5-inc1), random erasing 0.25, mixup 0.8 or CutMix 1.0 per
# batch, label smoothing 0.1, and stochastic depth rising to the preset's
# rate (B1 0.1, B2 0.1, B3 0.2, B4 0.3, B5 0.3). Bicubic resizing; evaluation
# resizes the short side to 256 and crops the centre 224.
# A preset's config sets the arch, `drop_path_rate` and `in_channels`.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmrep', 'mmrep.deploy.autoswitch'],
                      allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    # final_norm: the classifier's LayerNorm `norm` on the last stage, as in
    # the original, so the weights keep its names.
    backbone=dict(
        type='mmrep.CycleMLP', arch='B1', out_indices=(3, ), final_norm=True,
        drop_path_rate=0.1),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02),
        topk=(1, 5)),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]))

train_dataloader = dict(batch_size=128)

optim_wrapper = dict(
    optimizer=dict(
        type='AdamW', lr=1e-3, weight_decay=0.05, eps=1e-8,
        betas=(0.9, 0.999)),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,  # from 1e-6
        by_epoch=True,
        begin=0,
        end=5,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=5,
        end=300,
        convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=1024)

default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3))
# CycleMLP has nothing to fuse; the hook still writes the deploy file (the
# same weights with a deploy config) so every family's training is alike.
custom_hooks = [dict(type='mmrep.ReparamCheckpointHook')]
