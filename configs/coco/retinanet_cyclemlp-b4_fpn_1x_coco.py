# RetinaNet + FPN with a CycleMLP-B4 backbone on COCO, 1x schedule, 8 GPUs x
# 2 images: the CycleMLP-B1 config (recipe and norms there) with the B4
# backbone (3, 8, 27, 3 blocks; same stage widths 64, 128, 320, 512, so the
# FPN is unchanged).
_base_ = ['./retinanet_cyclemlp-b1_fpn_1x_coco.py']

pretrained = 'checkpoints/CycleMLP_B4.pth'  # placeholder, see the B1 config

model = dict(
    backbone=dict(arch='B4',
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
