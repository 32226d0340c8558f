# RepMLPNet on ImageNet-1k, the recipe of the RepMLPNet release (its
# `main_repmlp.py` command): 100 epochs of AdamW (lr 1e-3 x 256 / 512 = 5e-4
# for 256 images per step, 8 GPUs x 32; weight decay 0.1, none on BN
# parameters and biases; gradients clipped at norm 5), a 10-epoch linear
# warm-up then cosine decay to 0, RandAugment (two ops, magnitudes uniform in
# [0, 15) on the 10-level scale: the release's `raug15`), mixup 0.4 or
# CutMix 1.0 per batch, label smoothing 0.1, no EMA. Evaluation resizes the
# short side to the training resolution and crops its centre.
# A preset's config sets `img_size`-dependent pipelines (224 here), the arch
# and `model.head.in_channels`.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs32_pil_resize.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmrep', 'mmrep.deploy.autoswitch'],
                      allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    # final_norm: the classifier's `head_norm` before pooling, as in the
    # original; its partitions default to the preset's (stage map sizes at
    # the preset's resolution).
    backbone=dict(
        type='mmrep.RepMLPNet', arch='T224', out_indices=(3, ),
        final_norm=True),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, 5)),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.4),
        dict(type='CutMix', alpha=1.0),
    ]))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=15,
        magnitude_std='inf',
        hparams=dict(pad_val=[128, 128, 128])),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=224, edge='short', backend='pillow'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))

optim_wrapper = dict(
    optimizer=dict(
        type='AdamW', lr=5e-4, weight_decay=0.1, eps=1e-8,
        betas=(0.9, 0.999)),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=5e-4,  # from 2.5e-7, the release's scaled warm-up lr
        by_epoch=True,
        begin=0,
        end=10,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=0.0,
        by_epoch=True,
        begin=10,
        end=100,
        convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=256)

default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3))
custom_hooks = [dict(type='mmrep.ReparamCheckpointHook')]
