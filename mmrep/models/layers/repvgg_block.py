"""The RepVGG block (Ding et al., "RepVGG: Making VGG-style ConvNets Great
Again", CVPR 2021).

At training time the block sums three branches and applies a ReLU:

* ``rbr_dense``: 3x3 convolution + BN,
* ``rbr_1x1``: 1x1 convolution + BN (same stride, no padding),
* ``rbr_identity``: a BN of the input, present only when the input and output
  shapes agree (equal channels, stride 1); any BatchNorm (SyncBatchNorm
  too), since the fusion reads only its affine parameters and statistics.

All three are linear in eval mode, so :meth:`RepVGGBlock.reparameterize`
merges them into one biased 3x3 convolution, ``rbr_reparam``: the 1x1 kernel
is zero-padded to 3x3, and the identity becomes a 3x3 kernel with a single 1
at the centre of each channel's own input (within its group). Parameter names
are the original release's, so its checkpoints load unchanged.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .conv_bn import ConvBN, build_bn, fuse_bn


def identity_kernel(channels, groups, kernel_size=3, device=None,
                    dtype=None):
    """The ``k x k`` grouped-conv kernel that copies its input.

    Args:
        channels (int): input = output channels.
        groups (int): convolution groups; must divide ``channels``.
        kernel_size (int): odd kernel size. Default: 3.
        device (torch.device, optional): device of the result.
        dtype (torch.dtype, optional): dtype of the result.

    Returns:
        Tensor: ``(channels, channels // groups, k, k)`` with
        ``w[i, i % (channels // groups), k // 2, k // 2] = 1``, zero elsewhere.
    """
    per_group = channels // groups
    kernel = torch.zeros(channels, per_group, kernel_size, kernel_size,
                         device=device, dtype=dtype)
    idx = torch.arange(channels, device=device)
    kernel[idx, idx % per_group, kernel_size // 2, kernel_size // 2] = 1
    return kernel


class RepVGGBlock(nn.Module):
    """3x3 conv-BN + 1x1 conv-BN (+ identity BN) -> ReLU; one 3x3 conv once
    re-parameterized.

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels.
        stride (int): stride of both convolutions. Default: 1.
        groups (int): groups of both convolutions; must divide both channel
            counts. Default: 1.
        deploy (bool): build the fused form (``rbr_reparam``) directly.
            Default: False.
        norm_cfg (dict, optional): config of the three branches' BNs
            (:func:`~mmrep.models.layers.conv_bn.build_bn`). Default:
            ``dict(type='BN')``.

    Raises:
        ValueError: ``groups`` does not divide the channel counts, or a
            non-positive size.
    """

    def __init__(self, in_channels, out_channels, stride=1, groups=1,
                 deploy=False, norm_cfg=None):
        super().__init__()
        if min(in_channels, out_channels, stride, groups) < 1:
            raise ValueError(
                f'RepVGGBlock needs positive sizes, got in_channels='
                f'{in_channels}, out_channels={out_channels}, stride={stride},'
                f' groups={groups}')
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f'groups={groups} must divide in_channels={in_channels} and '
                f'out_channels={out_channels}')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.groups = groups
        self.deploy = deploy
        self.nonlinearity = nn.ReLU()
        if deploy:
            self.rbr_reparam = nn.Conv2d(in_channels, out_channels, 3, stride,
                                         1, groups=groups, bias=True)
            return
        self.rbr_identity = (build_bn(norm_cfg, in_channels)
                             if in_channels == out_channels and stride == 1
                             else None)
        self.rbr_dense = ConvBN(in_channels, out_channels, 3, stride, 1,
                                groups=groups, norm_cfg=norm_cfg)
        self.rbr_1x1 = ConvBN(in_channels, out_channels, 1, stride, 0,
                              groups=groups, norm_cfg=norm_cfg)

    def forward(self, x):
        if self.deploy:
            return self.nonlinearity(self.rbr_reparam(x))
        out = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            out = out + self.rbr_identity(x)
        return self.nonlinearity(out)

    def equivalent_kernel_bias(self):
        """The kernel and bias of the single 3x3 conv equal to the branches.

        Differentiable (usable for regularisation or quantization-aware
        training); uses the BN running statistics, i.e. eval-mode behaviour.

        Returns:
            tuple[Tensor, Tensor]: weight ``(out, in // groups, 3, 3)`` and
            bias ``(out,)``.
        """
        if self.deploy:
            return self.rbr_reparam.weight, self.rbr_reparam.bias
        weight, bias = self.rbr_dense.fused_kernel()
        weight_1x1, bias_1x1 = self.rbr_1x1.fused_kernel()
        weight = weight + F.pad(weight_1x1, [1, 1, 1, 1])
        bias = bias + bias_1x1
        if self.rbr_identity is not None:
            bn = self.rbr_identity
            kernel = identity_kernel(self.in_channels, self.groups,
                                     device=bn.weight.device,
                                     dtype=bn.weight.dtype)
            weight_id, bias_id = fuse_bn(kernel, bn)
            weight, bias = weight + weight_id, bias + bias_id
        return weight, bias

    def reparameterize(self):
        """Replace the branches by ``rbr_reparam``, in place. Equivalent in
        eval mode; does nothing when already fused."""
        if self.deploy:
            return
        weight, bias = self.equivalent_kernel_bias()
        conv = nn.Conv2d(self.in_channels, self.out_channels, 3, self.stride,
                         1, groups=self.groups, bias=True,
                         device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(weight)
            conv.bias.copy_(bias)
        for name in ('rbr_dense', 'rbr_1x1', 'rbr_identity'):
            delattr(self, name)
        self.rbr_reparam = conv
        self.deploy = True

    def extra_repr(self):
        return (f'{self.in_channels}, {self.out_channels}, '
                f'stride={self.stride}, groups={self.groups}, '
                f'deploy={self.deploy}')
