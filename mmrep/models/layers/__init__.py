from .conv_bn import ConvBN, fold_input_bn, fuse_bn
from .cycle_fc import CycleFC, cycle_shift, cycle_stack, cycle_stack_sum
from .repmlp_block import (GlobalPerceptron, RepMLPBlock, conv_to_fc,
                           pad_to_partition, to_2tuple)
from .repmlp_unit import (RepMLPBottleneckBlock, RepMLPLightBlock,
                          RepMLPUnit)
from .repvgg_block import RepVGGBlock

__all__ = ['ConvBN', 'fuse_bn', 'fold_input_bn', 'GlobalPerceptron',
           'RepMLPBlock', 'conv_to_fc', 'pad_to_partition', 'to_2tuple',
           'RepVGGBlock', 'RepMLPUnit', 'RepMLPBottleneckBlock',
           'RepMLPLightBlock', 'CycleFC', 'cycle_shift', 'cycle_stack',
           'cycle_stack_sum']
