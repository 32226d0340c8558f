# Semantic FPN + CycleMLP-B3 on ADE20K: the CycleMLP-B1 config (recipe and
# norms there) with the B3 backbone (3, 4, 18, 3 blocks; same stage widths
# 64, 128, 320, 512, so the FPN is unchanged).
_base_ = ['./fpn_cyclemlp-b1_8xb4-40k_ade20k-512x512.py']

pretrained = 'checkpoints/CycleMLP_B3.pth'  # placeholder, see the B1 config

model = dict(
    backbone=dict(arch='B3',
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
