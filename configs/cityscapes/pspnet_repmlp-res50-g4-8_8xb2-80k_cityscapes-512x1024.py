# PSPNet + RepMLP-Res50-g4/8 (Bottleneck) on Cityscapes, 512x1024 crops,
# 80k iterations, 8 GPUs x 2 images: the RepMLP paper's Cityscapes setting
# (PSPNet, RepMLP-Res50-g4/8, 512x1024 crops); partition and
# fc1_fc2_reduction below are chosen for those crops.
# The backbone is dilated as mmseg's ResNet-D8 (strides (1, 2, 1, 1),
# dilations (1, 1, 2, 4), output stride 8); the pyramid pooling head reads
# stage4 (2048 channels), the auxiliary FCN head stage3 (1024).
#
# The RepMLP units are built for the 512x1024 crop: img_size=(512, 1024)
# and 8x8 partitions give c3 (stride 8, 64x128 map) a grid of 8x16
# partitions and c4 (stride 8 here, dilation 2: 16x16 cells of 2x2
# interleaved 8x8 partitions) a grid of 4x8, so training crops are processed
# with the configured grid, without padding or pooling. fc1_fc2_reduction=8
# keeps the global perceptrons' hidden widths at those of the 224 models
# (c3: 64*8*16/8 = 1024 = 64*4*4, c4: 64*4*8/8 = 256 = 64*2*2) instead of
# 8192x8192 FCs per c3 unit; the backbone has 101.0M parameters (42.8M at
# 224x224), most of them in the c3 units' 8192x1024 fc1 / fc2.
#
# ImageNet weights (e.g. RepMLP-Res50-g4/8 at 224x224, 7x7 partitions, grids
# 4x4 and 2x2; train-time or fused) load through backbone_init: every
# resolution-bound tensor is resampled on load and logged
# (mmrep.checkpoints.resample): fc3 and its per-pixel BN/bias from 7x7 to 8x8
# partitions by bilinear interpolation over output pixels and the adjoint
# (new -> old grid) resampling over input pixels, and fc1_fc2 from the 4x4 /
# 2x2 grids to 8x16 / 4x8 the same way; conv branches load unchanged.
#
# Inference slides 512x1024 windows, so every window is a training-size
# input (identical to the model's direct forward on that crop).
#
# Norms: SyncBN in the backbone, the RepMLP units' BNs included, as mmseg's
# ResNet-D8 PSPNet (2 images per GPU), and in the heads.
_base_ = 'mmseg::pspnet/pspnet_r50-d8_4xb2-80k_cityscapes-512x1024.py'
custom_imports = dict(imports=['mmrep', 'mmrep.deploy.autoswitch'],
                      allow_failed_imports=False)

crop_size = (512, 1024)
# e.g. dict(type='Pretrained', checkpoint='RepMLP-Res50-g4-8.pth')
backbone_init = None

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmrep.RepMLPResNet',
        arch=dict(
            block_type='bottleneck',
            num_blocks=(3, 4, 6, 3),
            img_size=crop_size,
            partition=(8, 8),
            conv_kernels=(1, 3, 5),
            fc1_fc2_reduction=8,
            fc3_groups=(4, 8),
            bottleneck_r=(2, 4)),
        strides=(1, 2, 1, 1),
        dilations=(1, 1, 2, 4),
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=backbone_init),
    decode_head=dict(in_channels=2048, in_index=3, num_classes=19),
    auxiliary_head=dict(in_channels=1024, in_index=2, num_classes=19),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 682)))
train_dataloader = dict(batch_size=2)
custom_hooks = [dict(type='mmrep.ReparamCheckpointHook')]
