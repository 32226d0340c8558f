# RepVGG on ImageNet-1k, the RepVGG paper's recipe for the heavier models
# (B2, B2g2, B2g4, B3, B3g2, B3g4): the basic recipe of `repvgg_in1k.py`
# trained for 200 epochs with AutoAugment (ImageNet policy), label smoothing
# 0.1 and mixup (alpha 0.2).
_base_ = './repvgg_in1k.py'

model = dict(
    head=dict(
        loss=dict(
            _delete_=True,
            type='LabelSmoothLoss',
            label_smooth_val=0.1,
            mode='original',
            loss_weight=1.0)),
    train_cfg=dict(augments=dict(type='Mixup', alpha=0.2)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='AutoAugment',
        policies='imagenet',
        # the BGR image mean, as mmpretrain's ImageNet configs pad
        hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic')),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

param_scheduler = dict(T_max=200, end=200)
train_cfg = dict(max_epochs=200)
