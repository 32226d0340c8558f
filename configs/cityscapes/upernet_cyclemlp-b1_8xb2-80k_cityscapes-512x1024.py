# UperNet + CycleMLP-B1 on Cityscapes, 512x1024 crops, 80k iterations,
# 8 GPUs x 2 images; the same head, optimizer (AdamW, lr 6e-5, weight decay
# 0.01, no decay on norms, 1500-iteration warm-up, poly decay), sliding
# 512x1024 inference and deploy hook as the RepMLPNet-T224 UperNet config,
# which it inherits.
#
# CycleMLP has no partition: its Cycle FCs mix a fixed 3-pixel neighbourhood
# and run on any map size, so whole-frame inference would work as well.
# UperNet reads all four stages (channels 64, 128, 320, 512), each through
# its own LayerNorm, so every backbone parameter gets a gradient.
_base_ = ['./upernet_repmlpnet-t224_8xb2-80k_cityscapes-512x1024.py']

channels = [64, 128, 320, 512]
# ImageNet weights: the original release's CycleMLP_B1.pth or an mmrep
# checkpoint, e.g. dict(type='Pretrained', checkpoint='CycleMLP_B1.pth')
backbone_init = None

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmrep.CycleMLP',
        arch='B1',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=backbone_init),
    decode_head=dict(in_channels=channels),
    auxiliary_head=dict(in_channels=channels[2]))
