from .conv_bn import ConvBN, fuse_bn
from .repmlp_block import (GlobalPerceptron, RepMLPBlock, conv_to_fc,
                           pad_to_partition, to_2tuple)
from .repvgg_block import RepVGGBlock

__all__ = ['ConvBN', 'fuse_bn', 'GlobalPerceptron', 'RepMLPBlock',
           'conv_to_fc', 'pad_to_partition', 'to_2tuple', 'RepVGGBlock']
