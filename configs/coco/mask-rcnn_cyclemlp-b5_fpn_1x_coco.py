# Mask R-CNN + FPN with a CycleMLP-B5 backbone on COCO, 1x schedule, 8 GPUs x
# 2 images: the CycleMLP-B1 config (recipe and norms there) with the B5
# backbone (3, 4, 24, 3 blocks, stage widths 96, 192, 384, 768, which the
# FPN's inputs follow).
_base_ = ['./mask-rcnn_cyclemlp-b1_fpn_1x_coco.py']

pretrained = 'checkpoints/CycleMLP_B5.pth'  # placeholder, see the B1 config
channels = [96, 192, 384, 768]

model = dict(
    backbone=dict(arch='B5',
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=channels))
