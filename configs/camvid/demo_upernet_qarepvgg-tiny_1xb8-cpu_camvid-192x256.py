# The small RepVGG of ./demo_upernet_repvgg-tiny_1xb8-cpu_camvid-192x256.py
# with QARepVGG blocks (quantization-friendly: no BN in the 1x1 and
# identity branches, a BN after the sum).
_base_ = ['./demo_upernet_repvgg-tiny_1xb8-cpu_camvid-192x256.py']

model = dict(backbone=dict(block='qarepvgg'))
