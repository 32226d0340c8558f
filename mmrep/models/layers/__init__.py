"""What several backbone families share: conv-BN algebra and the fused-conv
swap, partition padding and conv-to-FC, Cycle FC, the oneDNN products, and the
switch to the fused form under every library's name and walk order."""
from .conv_bn import (ConvBN, build_bn, fold_input_bn, fuse_bn, fused_conv,
                      pop_bn_state)
from .cycle_fc import (CycleFC, cycle_shift, cycle_stack, cycle_stack_grouped,
                       cycle_stack_rows, cycle_stack_sum)
from .partition import conv_to_fc, pad_to_partition
from .reparam import Reparameterizable, has_unfused, reparameterize_tree

__all__ = ['ConvBN', 'build_bn', 'fuse_bn', 'fold_input_bn', 'fused_conv',
           'pop_bn_state',
           'conv_to_fc', 'pad_to_partition', 'CycleFC', 'cycle_shift',
           'cycle_stack', 'cycle_stack_grouped', 'cycle_stack_rows',
           'cycle_stack_sum', 'Reparameterizable', 'reparameterize_tree',
           'has_unfused']
