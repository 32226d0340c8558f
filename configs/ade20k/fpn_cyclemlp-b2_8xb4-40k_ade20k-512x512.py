# Semantic FPN + CycleMLP-B2 on ADE20K: the CycleMLP-B1 config (recipe and
# norms there) with the B2 backbone (2, 3, 10, 3 blocks; same stage widths
# 64, 128, 320, 512, so the FPN is unchanged).
_base_ = ['./fpn_cyclemlp-b1_8xb4-40k_ade20k-512x512.py']

pretrained = 'checkpoints/CycleMLP_B2.pth'  # placeholder, see the B1 config

model = dict(
    backbone=dict(arch='B2',
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
