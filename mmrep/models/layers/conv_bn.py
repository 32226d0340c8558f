"""Convolution followed by BatchNorm, the algebra that fuses the two, the
one helper that swaps a convolution for its biased fused twin, and the one
place where mmrep builds its BatchNorms."""
from types import SimpleNamespace

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .reparam import Reparameterizable

BN_TYPES_1D = {'BN': 'BN1d', 'BN2d': 'BN1d'}


def build_bn(norm_cfg, num_features, dims=2):
    """Build a BatchNorm from an OpenMMLab ``norm_cfg`` (mmcv's
    ``build_norm_layer``).

    Args:
        norm_cfg (dict | None): e.g. ``dict(type='BN')`` or
            ``dict(type='SyncBN', requires_grad=True)``; None means
            ``dict(type='BN')``.
        num_features (int): normalized channels.
        dims (int): 2 for ``(N, C, H, W)`` inputs, 1 for ``(N, C)``; a
            ``'BN'`` config then builds ``BatchNorm1d`` (SyncBN takes both).
            Default: 2.

    Returns:
        nn.Module: the norm layer.
    """
    # Imported here: mmcv.cnn imports mmengine.runner, which ``import
    # mmrep`` does not need.
    from mmcv.cnn import build_norm_layer

    cfg = dict(type='BN') if norm_cfg is None else dict(norm_cfg)
    if dims == 1:
        cfg['type'] = BN_TYPES_1D.get(cfg['type'], cfg['type'])
    return build_norm_layer(cfg, num_features)[1]


def fuse_bn(weight, bn, bias=None):
    """Fold an eval-mode BatchNorm into the linear map in front of it.

    The BN may have fewer channels than ``weight`` has output rows: each BN
    channel then covers ``weight.size(0) // bn.num_features`` consecutive rows
    (RepMLP's ``fc3_bn`` normalises share sets of an ``h*w``-row FC).

    Args:
        weight (Tensor): weight whose first dimension is the output.
        bn (nn.BatchNorm2d): the BatchNorm applied to that output (any
            ``_BatchNorm``, SyncBatchNorm included).
        bias (Tensor, optional): bias of the linear map, if it has one.

    Returns:
        tuple[Tensor, Tensor]: the fused weight and bias.
    """
    scale = bn.weight / (bn.running_var + bn.eps).sqrt()
    repeat = weight.size(0) // scale.numel()
    scale = scale.repeat_interleave(repeat)
    mean = bn.running_mean.repeat_interleave(repeat)
    beta = bn.bias.repeat_interleave(repeat)
    if bias is not None:
        mean = mean - bias
    fused_weight = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    return fused_weight, beta - mean * scale


def pop_bn_state(state, prefix):
    """Take the BN tensors ``prefix + {weight, bias, running_mean,
    running_var}`` (and any ``num_batches_tracked``) out of a state dict,
    as an object with the attributes :func:`fuse_bn` and
    :func:`fold_input_bn` read (eps 1e-5).

    Args:
        state (dict[str, Tensor]): changed in place.
        prefix (str): the BN's key prefix.

    Returns:
        SimpleNamespace: ``weight``, ``bias``, ``running_mean``,
        ``running_var``, ``eps``.
    """
    bn = SimpleNamespace(
        **{n: state.pop(prefix + n)
           for n in ('weight', 'bias', 'running_mean', 'running_var')},
        eps=1e-5)
    state.pop(prefix + 'num_batches_tracked', None)
    return bn


def fold_input_bn(weight, bias, bn):
    """Fold an eval-mode BatchNorm applied to the *input* of a convolution.

    ``conv(bn(x)) == conv'(x)`` exactly when the convolution has no zero
    padding and ``groups == 1`` (e.g. a 1x1 conv): every output then sees
    only normalized input values, never a padded zero.

    Args:
        weight (Tensor): ``(out, in, kh, kw)`` convolution weight.
        bias (Tensor | None): convolution bias.
        bn: an ``nn.BatchNorm2d`` over the ``in`` channels, or any object
            with its ``weight``, ``bias``, ``running_mean``, ``running_var``
            and ``eps``.

    Returns:
        tuple[Tensor, Tensor]: the fused weight and bias.
    """
    scale = bn.weight / (bn.running_var + bn.eps).sqrt()
    shift = bn.bias - bn.running_mean * scale
    view = (1, -1) + (1, ) * (weight.dim() - 2)
    extra = (weight * shift.reshape(view)).flatten(1).sum(1)
    return weight * scale.reshape(view), \
        extra if bias is None else bias + extra


def fused_conv(conv, weight, bias):
    """The biased twin of ``conv`` holding the fused ``weight`` and ``bias``.

    Args:
        conv (nn.Conv2d): the convolution whose geometry (channels, kernel,
            stride, padding, dilation, groups) the twin takes.
        weight (Tensor): the twin's weight, shaped like ``conv.weight``.
        bias (Tensor): the twin's bias, ``(out_channels,)``.

    Returns:
        nn.Conv2d: a new convolution with ``bias=True``, on ``weight``'s
        device and dtype, trainable as ``conv.weight`` is (a frozen stage's
        fused layers stay frozen, whoever fuses them).
    """
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                      conv.stride, conv.padding, conv.dilation, conv.groups,
                      bias=True, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(weight)
        fused.bias.copy_(bias)
    return fused.requires_grad_(conv.weight.requires_grad)


class ConvBN(Reparameterizable, nn.Module):
    """``Conv2d`` (no bias) -> BatchNorm -> optional activation.

    Parameter names (``conv.*``, ``bn.*``) are those of the original RepMLP
    and RepVGG releases. :meth:`reparameterize` folds the BN into the
    convolution, which then carries a bias and ``bn`` becomes an identity.

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels.
        kernel_size (int | tuple[int, int]): convolution kernel size.
        stride (int): convolution stride. Default: 1.
        padding (int | tuple[int, int]): zero padding. Default: 0.
        groups (int): convolution groups. Default: 1.
        act (nn.Module, optional): activation applied last. Default: None.
        deploy (bool): build the fused form directly. Default: False.
        norm_cfg (dict, optional): the BN's config (:func:`build_bn`).
            Default: ``dict(type='BN')``.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1,
                 padding=0, groups=1, act=None, deploy=False,
                 norm_cfg=None):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                              padding, groups=groups, bias=deploy)
        self.bn = nn.Identity() if deploy else build_bn(norm_cfg,
                                                            out_channels)
        self.act = act if act is not None else nn.Identity()

    @property
    def deploy(self):
        return isinstance(self.bn, nn.Identity)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))

    def fused_weights(self):
        """The weight and bias of the equivalent biased convolution
        (differentiable; the BN's running statistics, i.e. eval mode).

        Returns:
            tuple[Tensor, Tensor]: ``(out, in // groups, kh, kw)`` weight and
            ``(out,)`` bias.
        """
        if self.deploy:
            return self.conv.weight, self.conv.bias
        return fuse_bn(self.conv.weight, self.bn)

    def fuse_own(self):
        """Fold the BatchNorm into the convolution, in place (torch's
        ``fuse_conv_bn_eval``; eval-mode semantics). The new bias trains
        as the weight does (torch makes a bias it creates frozen)."""
        if self.deploy:
            return
        with torch.no_grad():
            self.conv = fuse_conv_bn_eval(self.conv.eval(), self.bn.eval())
        self.conv.bias.requires_grad_(self.conv.weight.requires_grad)
        self.bn = nn.Identity()
