# RetinaNet + FPN with a CycleMLP-B2 backbone on COCO, 1x schedule, 8 GPUs x
# 2 images: the CycleMLP-B1 config with the deeper B2 (2, 3, 10, 3 blocks;
# same stage widths 64, 128, 320, 512, so the FPN is unchanged).
_base_ = ['./retinanet_cyclemlp-b1_fpn_1x_coco.py']

# Placeholder, as in the B1 config: put the original CycleMLP_B2.pth (or an
# mmrep checkpoint) there, or override it with
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/CycleMLP_B2.pth
pretrained = 'checkpoints/CycleMLP_B2.pth'

model = dict(
    backbone=dict(
        arch='B2',
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
