"""RepMLP-Res50 (Ding et al., "RepMLP: Re-parameterizing Convolutions into
Fully-connected Layers for Image Recognition", arXiv 2105.01883) as a
dense-prediction backbone.

Structure, parameter names and numbers follow the original release
(DingXiaoH/RepMLP ``repmlp_resnet.py``): a ResNet-50 (7x7 stem ``stage0``
with max-pooling, bottleneck stages ``stage1..stage4`` of 256, 512, 1024 and
2048 channels) in which every block of ``stage2`` and ``stage3`` (the
paper's c3 and c4) except the first, strided one is a RepMLP Bottleneck or
RepMLP Light block built around the RepMLP unit. The RepMLP
units are configured for the maps of an ``img_size`` image (stride 8 and 16),
with one partition size for both stages.

Differences from the original, all outside the numbers it produces:

* the classifier (``gap`` + ``linear``) is left to a head; its weights are
  split off on loading (:mod:`mmrep.checkpoints`);
* stage outputs are returned as NCHW maps for ``out_indices``, with the usual
  OpenMMLab training switches;
* inputs of any size run (the RepMLP units pad, and map other grids onto the
  configured one, see below);
* ``fc3_groups`` and ``bottleneck_r`` may differ between c3 and c4 (the
  paper's "g4/8" and "g8/16" variants);
* ``strides`` and ``dilations`` give the dilated forms used by PSPNet and
  similar heads (e.g. strides ``(1, 2, 1, 1)`` and dilations ``(1, 1, 2, 4)``
  as mmseg's ResNetV1c-D8, output stride 8): the first block of a stage takes
  its stride, every 3x3 conv of the stage its dilation, and the RepMLP units
  of the stage dilate their partitions alike, so they keep the partition
  grid they were trained with.

A :class:`RepMLPUnit` cuts an ``H x W`` map into ``h x w`` partitions and
combines three perceptrons:

* global perceptron: each partition is averaged, the ``(H/h) x (W/w)`` grid
  of averages goes through a BN and an MLP (``fc1_fc2``, whose weights are
  tied to that grid), and the result is added to every pixel of its
  partition;
* partition perceptron ``fc3``: a grouped FC from each ``C*h*w`` partition to
  ``O*h*w`` outputs, followed by BN;
* local perceptron: grouped ``k x k`` conv + BN branches inside each
  partition, merged into ``fc3`` after training.

Parameter names are those of the original release (``fc1_fc2.fc1``,
``avg.bn``, ``fc3``, ``fc3_bn``, ``repconv{k}.conv``/``.bn``), so its state
dicts load unchanged, train-time and fused alike. :meth:`RepMLPUnit.
reparameterize` folds ``fc3_bn`` and the conv branches into ``fc3`` and the
BN after the pooling into ``fc1``.

Inputs of any size run; a map shaped as configured is processed exactly as
by the original:

* Padding. A map whose height or width is not a multiple of the partition is
  zero-padded on the bottom/right to the next multiple (a map smaller than a
  partition becomes one partition) and the result is cropped back, as in
  RepMLPNet's block. A partition's average is taken
  over its pixels inside the map, and the global term is added to those
  pixels only, so the padding stays zero.
* Grid size. When the grid of partitions differs from the configured
  ``(H/h, W/w)``, the grid of averages is adaptive-average-pooled to the
  configured grid before ``fc1_fc2``, and the MLP's output is
  adaptive-average-pooled back to the actual grid (which, when growing,
  repeats or blends neighbouring cells). Both steps are the identity when the
  grids match.
* Dilation. With ``dilation=d`` (a dilated ResNet stage) a partition takes
  every ``d``-th pixel of a ``d*h x d*w`` cell, so the cell covers the image
  area that an ``h x w`` partition covers at the undilated resolution; each
  cell holds ``d*d`` interleaved partitions and the global perceptron
  averages whole cells. The conv branches then act as dilated convolutions.
"""
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.utils import to_2tuple

from ...registry import MODELS
from ...utils.errors import ModelArgumentError
from ..layers import (ConvBN, Reparameterizable, build_bn, conv_to_fc,
                      fuse_bn, fused_conv, pad_to_partition)
from ..layers.linear import grouped_linear
from ..layers.resample import resample_fc3_state, resample_grid_mlp_state
from ..layers.tracing import exporting
from .base import RepBackbone, record_build_args
from .family import (CheckpointFamily, Source, register_family, rename_args,
                     split_classifier)


def conv_bn_act(in_channels, out_channels, kernel_size, stride=1, dilation=1,
                relu=True, deploy=False, norm_cfg=None):
    """A :class:`ConvBN` with 'same' padding, optional dilation and ReLU.

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels.
        kernel_size (int): odd square kernel size.
        stride (int): stride. Default: 1.
        dilation (int): dilation. Default: 1.
        relu (bool): apply ReLU last. Default: True.
        deploy (bool): build the fused form. Default: False.
        norm_cfg (dict, optional): the BN's config. Default:
            ``dict(type='BN')``.

    Returns:
        ConvBN: the layer (parameter names ``conv.*``, ``bn.*``).
    """
    layer = ConvBN(in_channels, out_channels, kernel_size, stride,
                   padding=dilation * (kernel_size // 2),
                   act=nn.ReLU() if relu else None, deploy=deploy,
                   norm_cfg=norm_cfg)
    if dilation != 1:
        layer.conv.dilation = (dilation, dilation)
    return layer


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelArgumentError(
            f'{name} must be a positive int, got {value!r}')
    return value


class RepMLPUnit(Reparameterizable, nn.Module):
    """The RepMLP unit of RepMLP v1 (the original's ``RepMLP``).

    Args:
        in_channels (int): input channels ``C``.
        out_channels (int): output channels ``O``.
        H (int): map height the unit is configured for; a multiple of ``h``.
        W (int): map width the unit is configured for; a multiple of ``w``.
        h (int): partition height.
        w (int): partition width.
        reparam_conv_k (Sequence[int], optional): odd kernel sizes of the
            local perceptron branches; None or empty: no branches.
        fc1_fc2_reduction (int): hidden width of ``fc1_fc2`` is its input
            width ``C*(H/h)*(W/w)`` divided by this. Default: 1.
        fc3_groups (int): groups of ``fc3`` and of the conv branches; must
            divide ``C`` and ``O``. Default: 1.
        deploy (bool): build the fused form (``fc3`` with bias, no BNs, no
            conv branches). Default: False.
        dilation (int): partition dilation (see the module docstring).
            Default: 1.
        norm_cfg (dict, optional): config of the BNs (``avg.bn``,
            ``fc3_bn``, the conv branches'); a ``'BN'`` config builds the
            original's ``BatchNorm1d`` for ``fc3_bn``. Default:
            ``dict(type='BN')``.

    The global perceptron exists only when the configured grid is larger
    than one partition (``H != h`` or ``W != w``), as in the original.
    """

    def __init__(self, in_channels, out_channels, H, W, h, w,
                 reparam_conv_k=None, fc1_fc2_reduction=1, fc3_groups=1,
                 deploy=False, dilation=1, norm_cfg=None):
        super().__init__()
        for name, value in (('in_channels', in_channels),
                            ('out_channels', out_channels), ('H', H),
                            ('W', W), ('h', h), ('w', w),
                            ('fc1_fc2_reduction', fc1_fc2_reduction),
                            ('fc3_groups', fc3_groups),
                            ('dilation', dilation)):
            _positive_int(name, value)
        if H % h or W % w:
            raise ModelArgumentError(
                f'the configured map {H}x{W} must be a multiple '
                f'of the partition {h}x{w}')
        if in_channels % fc3_groups or out_channels % fc3_groups:
            raise ModelArgumentError(f'fc3_groups={fc3_groups} must divide '
                                     f'in_channels={in_channels} and '
                                     f'out_channels={out_channels}')
        kernels = tuple(reparam_conv_k or ())
        for k in kernels:
            if _positive_int('reparam_conv_k entries', k) % 2 == 0:
                raise ModelArgumentError(
                    f'conv kernel sizes must be odd, got {k}')
        self.C, self.O = in_channels, out_channels
        self.H, self.W, self.h, self.w = H, W, h, w
        self.grid = (H // h, W // w)
        self.fc3_groups = fc3_groups
        self.dilation = dilation
        self.conv_kernels = kernels
        self.deploy = deploy
        self.need_global_perceptron = H != h or W != w
        hw = h * w
        if self.need_global_perceptron:
            width = in_channels * self.grid[0] * self.grid[1]
            hidden = int(width // fc1_fc2_reduction)
            self.fc1_fc2 = nn.Sequential(OrderedDict(
                fc1=nn.Linear(width, hidden), relu=nn.ReLU(),
                fc2=nn.Linear(hidden, width)))
            # The original's avg = AvgPool2d -> BN; pooling is done in
            # forward, so ``avg`` holds the BN (train form) or nothing.
            self.avg = nn.Identity() if deploy else nn.Sequential(
                OrderedDict(bn=build_bn(norm_cfg, in_channels)))
        self.fc3 = nn.Conv2d(in_channels * hw, out_channels * hw, 1,
                             groups=fc3_groups, bias=deploy)
        if not deploy:
            self.fc3_bn = build_bn(norm_cfg, out_channels * hw, dims=1)
            for k in kernels:
                self.add_module(f'repconv{k}', ConvBN(
                    in_channels, out_channels, k, padding=k // 2,
                    groups=fc3_groups, norm_cfg=norm_cfg))

    def forward(self, x):
        """Apply the unit.

        Args:
            x (Tensor): ``(N, C, H', W')`` map of any size.

        Returns:
            Tensor: ``(N, O, H', W')``.
        """
        if x.dim() != 4 or x.size(1) != self.C:
            raise ValueError(f'RepMLPUnit expects (N, {self.C}, H, W) input, '
                             f'got {tuple(x.shape)}')
        N, C, H, W = x.shape
        h, w, d = self.h, self.w, self.dilation
        ch, cw = h * d, w * d  # one cell holds d*d interleaved partitions
        xp = pad_to_partition(x, ch, cw)
        Hp, Wp = xp.shape[-2:]
        gh, gw = Hp // ch, Wp // cw
        # While tracing (ONNX export) the general path is recorded, so the
        # graph runs at any input size.
        padded = exporting() or Hp != H or Wp != W
        if self.need_global_perceptron:
            v = self._global_term(xp, H, W, gh, gw)
            xp = xp.reshape(N, C, gh, ch, gw, cw) + v[:, :, :, None, :, None]
            xp = xp.reshape(N, C, Hp, Wp)
            if padded:  # the padding stays zero
                xp = F.pad(xp[:, :, :H, :W], (0, Wp - W, 0, Hp - H))
        # (N, C, gh*h*d, gw*w*d) -> rows (N*gh*gw*d*d, C*h*w)
        rows = xp.reshape(N, C, gh, h, d, gw, w, d)
        rows = rows.permute(0, 2, 5, 4, 7, 1, 3, 6).reshape(-1, C * h * w)
        out = self._partition_perceptron(rows)
        out = out.reshape(N, gh, gw, d, d, self.O, h, w)
        out = out.permute(0, 5, 1, 6, 3, 2, 7, 4).reshape(N, self.O, Hp, Wp)
        if padded:
            out = out[:, :, :H, :W]
        return out

    def _global_term(self, xp, H, W, gh, gw):
        """The global perceptron's ``(N, C, gh, gw)`` output for a padded
        map ``xp`` whose top-left ``H x W`` is the input."""
        N = xp.size(0)
        ch, cw = self.h * self.dilation, self.w * self.dilation
        v = F.avg_pool2d(xp, (ch, cw))
        Hp, Wp = xp.shape[-2:]
        if exporting() or Hp != H or Wp != W:  # pixels inside
            rows = (H - torch.arange(gh, device=xp.device) * ch).clamp(max=ch)
            cols = (W - torch.arange(gw, device=xp.device) * cw).clamp(max=cw)
            count = (rows[:, None] * cols[None, :]).to(xp.dtype)
            v = v * (ch * cw) / count
        grid = self.grid
        other_grid = exporting() or (gh, gw) != grid
        if other_grid:
            v = F.adaptive_avg_pool2d(v, grid)
        v = self.avg(v)
        v = self.fc1_fc2(v.reshape(N, -1)).reshape(N, self.C, *grid)
        if other_grid:
            v = F.adaptive_avg_pool2d(v, (gh, gw))
        return v

    def _partition_perceptron(self, rows):
        """``fc3`` (+ BN and conv branches) on ``(M, C*h*w)`` rows."""
        g, hw = self.fc3_groups, self.h * self.w
        M = rows.size(0)
        # fc3 is stored as the original's grouped 1x1 conv; applied as one
        # matrix product per group.
        weight = self.fc3.weight.reshape(g, self.O * hw // g, -1)
        bias = self.fc3.bias.reshape(g, -1) if self.deploy else None
        out = grouped_linear(rows.reshape(M, g, -1).transpose(0, 1), weight,
                             bias)
        out = out.transpose(0, 1).reshape(M, self.O * hw)
        if self.deploy:
            return out
        out = self.fc3_bn(out)
        if self.conv_kernels:
            local = rows.reshape(M, self.C, self.h, self.w)
            for k in self.conv_kernels:
                out = out + getattr(self, f'repconv{k}')(local).reshape(M, -1)
        return out

    def fused_weights(self):
        """The fused form's weights (differentiable; BN running statistics,
        i.e. eval mode).

        Returns:
            tuple: ``fc3`` weight ``(O*h*w, C/groups*h*w, 1, 1)`` and bias
            ``(O*h*w,)`` with ``fc3_bn`` and the conv branches folded in, and
            ``fc1`` weight and bias with the BN after the pooling folded in
            (both None without a global perceptron).
        """
        fc1 = self.fc1_fc2.fc1 if self.need_global_perceptron else None
        if self.deploy:
            return (self.fc3.weight, self.fc3.bias,
                    *((fc1.weight, fc1.bias) if fc1 else (None, None)))
        weight, bias = fuse_bn(self.fc3.weight, self.fc3_bn)
        if self.conv_kernels:
            size = max(self.conv_kernels)
            kernel = conv_bias = 0
            for k in self.conv_kernels:
                k_weight, k_bias = getattr(self, f'repconv{k}').fused_weights()
                kernel = kernel + F.pad(k_weight, [(size - k) // 2] * 4)
                conv_bias = conv_bias + k_bias
            fc_weight, fc_bias = conv_to_fc(
                kernel, conv_bias, self.fc3_groups, self.h, self.w)
            weight = weight + fc_weight.reshape_as(weight)
            bias = bias + fc_bias
        if fc1 is None:
            return weight, bias, None, None
        bn = self.avg.bn
        scale = bn.weight / (bn.running_var + bn.eps).sqrt()
        shift = bn.bias - bn.running_mean * scale
        # fc1's inputs are (C, grid_h, grid_w) flattened, C-major.
        cells = self.grid[0] * self.grid[1]
        return (weight, bias, fc1.weight * scale.repeat_interleave(cells),
                fc1.bias + fc1.weight @ shift.repeat_interleave(cells))

    def fuse_own(self):
        """Switch to the fused form in place (eval-mode equivalent)."""
        if self.deploy:
            return
        with torch.no_grad():
            weight, bias, fc1_weight, fc1_bias = self.fused_weights()
            self.fc3 = fused_conv(self.fc3, weight, bias)
            del self.fc3_bn
            for k in self.conv_kernels:
                delattr(self, f'repconv{k}')
            if self.need_global_perceptron:
                self.fc1_fc2.fc1.weight.copy_(fc1_weight)
                self.fc1_fc2.fc1.bias.copy_(fc1_bias)
                self.avg = nn.Identity()
        self.deploy = True


def shortcut(in_channels, out_channels, deploy=False, norm_cfg=None):
    """The residual path of a block: identity, or a 1x1 conv-BN when the
    channels change."""
    if in_channels == out_channels:
        return nn.Identity()
    return conv_bn_act(in_channels, out_channels, 1, relu=False,
                       deploy=deploy, norm_cfg=norm_cfg)


class RepMLPBottleneckBlock(nn.Module):
    """RepMLP Bottleneck block: 1x1 -> 3x3 (channels / r) -> RepMLP -> 3x3
    (channels * r) -> 1x1, plus the shortcut, each conv with BN and all but
    the last with ReLU (a ReLU also follows the RepMLP unit).

    Args:
        in_channels (int): input channels.
        mid_channels (int): channels of the 1x1 convs' inner side.
        out_channels (int): output channels; a 1x1 conv-BN shortcut is used
            when they differ from ``in_channels``.
        r (int): the RepMLP unit works on ``mid_channels // r`` channels.
        H, W, h, w, reparam_conv_k, fc1_fc2_reduction, fc3_groups: the
            RepMLP unit's settings (see :class:`RepMLPUnit`).
        deploy (bool): build the fused form. Default: False.
        dilation (int): dilation of the 3x3 convs and of the unit's
            partitions (dilated ResNet stages). Default: 1.
        norm_cfg (dict, optional): config of every BN. Default:
            ``dict(type='BN')``.
    """

    def __init__(self, in_channels, mid_channels, out_channels, r, H, W, h,
                 w, reparam_conv_k=None, fc1_fc2_reduction=1, fc3_groups=1,
                 deploy=False, dilation=1, norm_cfg=None):
        super().__init__()
        _positive_int('r', r)
        inner = mid_channels // r
        if inner < 1:
            raise ModelArgumentError(
                f'mid_channels={mid_channels} // r={r} leaves no '
                f'channels for the RepMLP unit')
        bn = dict(deploy=deploy, norm_cfg=norm_cfg)
        self.shortcut = shortcut(in_channels, out_channels, **bn)
        self.btnk_conv1 = conv_bn_act(in_channels, mid_channels, 1, **bn)
        self.btnk_conv2 = conv_bn_act(mid_channels, inner, 3,
                                      dilation=dilation, **bn)
        self.btnk_repmlp = RepMLPUnit(
            inner, inner, H, W, h, w, reparam_conv_k, fc1_fc2_reduction,
            fc3_groups, dilation=dilation, **bn)
        self.repmlp_nonlinear = nn.ReLU()
        self.btnk_conv4 = conv_bn_act(inner, mid_channels, 3,
                                      dilation=dilation, **bn)
        self.btnk_conv5 = conv_bn_act(mid_channels, out_channels, 1,
                                      relu=False, **bn)
        self.relu = nn.ReLU()

    @property
    def deploy(self):
        """Whether the block is in its fused form (its RepMLP unit's)."""
        return self.btnk_repmlp.deploy

    def forward(self, x):
        out = self.btnk_conv2(self.btnk_conv1(x))
        out = self.repmlp_nonlinear(self.btnk_repmlp(out))
        out = self.btnk_conv5(self.btnk_conv4(out))
        return self.relu(out + self.shortcut(x))


class RepMLPLightBlock(nn.Module):
    """RepMLP Light block: 1x1 conv -> RepMLP unit -> 1x1 conv, plus the
    shortcut (BN after each conv, ReLU after the first conv, the unit and the
    sum).

    Args:
        in_channels (int): input channels.
        mid_channels (int): channels of the RepMLP unit.
        out_channels (int): output channels; a 1x1 conv-BN shortcut is used
            when they differ from ``in_channels``.
        H, W, h, w, reparam_conv_k, fc1_fc2_reduction, fc3_groups: the
            RepMLP unit's settings (see :class:`RepMLPUnit`).
        deploy (bool): build the fused form. Default: False.
        dilation (int): dilation of the unit's partitions. Default: 1.
        norm_cfg (dict, optional): config of every BN. Default:
            ``dict(type='BN')``.
    """

    def __init__(self, in_channels, mid_channels, out_channels, H, W, h, w,
                 reparam_conv_k=None, fc1_fc2_reduction=1, fc3_groups=1,
                 deploy=False, dilation=1, norm_cfg=None):
        super().__init__()
        bn = dict(deploy=deploy, norm_cfg=norm_cfg)
        self.shortcut = shortcut(in_channels, out_channels, **bn)
        self.light_conv1 = conv_bn_act(in_channels, mid_channels, 1, **bn)
        self.light_repmlp = RepMLPUnit(
            mid_channels, mid_channels, H, W, h, w, reparam_conv_k,
            fc1_fc2_reduction, fc3_groups, dilation=dilation, **bn)
        self.repmlp_nonlinear = nn.ReLU()
        self.light_conv3 = conv_bn_act(mid_channels, out_channels, 1,
                                       relu=False, **bn)
        self.relu = nn.ReLU()

    @property
    def deploy(self):
        """Whether the block is in its fused form (its RepMLP unit's)."""
        return self.light_repmlp.deploy

    def forward(self, x):
        out = self.repmlp_nonlinear(self.light_repmlp(self.light_conv1(x)))
        return self.relu(self.light_conv3(out) + self.shortcut(x))


class BaseBlock(nn.Module):
    """The ResNet-50 bottleneck block of the original (``conv1`` 1x1,
    ``conv2`` 3x3 with the stride, ``conv3`` 1x1, ``shortcut``).

    Args:
        in_channels (int): input channels.
        mid_channels (int): inner channels.
        out_channels (int): output channels.
        stride (int): stride of ``conv2`` and the shortcut. Default: 1.
        dilation (int): dilation of ``conv2``. Default: 1.
        deploy (bool): build the fused form. Default: False.
        norm_cfg (dict, optional): config of every BN. Default:
            ``dict(type='BN')``.
    """

    def __init__(self, in_channels, mid_channels, out_channels, stride=1,
                 dilation=1, deploy=False, norm_cfg=None):
        super().__init__()
        bn = dict(deploy=deploy, norm_cfg=norm_cfg)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = conv_bn_act(in_channels, out_channels, 1, stride,
                                        relu=False, **bn)
        else:
            self.shortcut = nn.Identity()
        self.conv1 = conv_bn_act(in_channels, mid_channels, 1, **bn)
        self.conv2 = conv_bn_act(mid_channels, mid_channels, 3, stride,
                                 dilation, **bn)
        self.conv3 = conv_bn_act(mid_channels, out_channels, 1, relu=False,
                                 **bn)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.conv3(self.conv2(self.conv1(x)))
        return self.relu(out + self.shortcut(x))


def _preset(block_type, fc3_groups):
    return dict(block_type=block_type, num_blocks=(3, 4, 6, 3),
                img_size=(224, 224), partition=(7, 7),
                conv_kernels=(1, 3, 5), fc1_fc2_reduction=1,
                fc3_groups=fc3_groups, bottleneck_r=(2, 4))


@MODELS.register_module()
class RepMLPResNet(RepBackbone):
    """RepMLP-Res50 backbone.

    Args:
        arch (str | dict): a preset name or a settings dict.

            Presets (case-insensitive, an optional ``'RepMLP-Res50-'`` prefix
            allowed): ``'bottleneck-224'`` (fc3 groups 8, the released
            RepMLP-Res50-Bottleneck-224), ``'light-224'`` (groups 4, the
            released RepMLP-Res50-Light-224), and the paper's per-stage
            variants ``'bottleneck-224-g4/8'``, ``'bottleneck-224-g8/16'``,
            ``'light-224-g4/8'``, ``'light-224-g8/16'`` (fc3 groups in c3 /
            c4). All use 224x224 images, 7x7 partitions, conv branches
            ``(1, 3, 5)`` and ``bottleneck_r=(2, 4)``.

            A dict needs ``num_blocks`` (four entries) and may give
            ``block_type`` (``'bottleneck'``, ``'light'`` or ``'base'``, the
            plain ResNet), ``img_size`` (int or ``(H, W)``), ``partition``
            (int or ``(h, w)``), ``conv_kernels``, ``fc1_fc2_reduction``,
            ``fc3_groups`` (int, or a pair for c3 and c4) and
            ``bottleneck_r`` (pair for c3 and c4); the defaults are those of
            ``'bottleneck-224'``. (``tools/convert_checkpoint.py``
            translates the original constructor's arguments into such a
            dict.)
        in_channels (int): image channels. Default: 3.
        strides (Sequence[int]): stride of each stage's first block.
            Default: ``(1, 2, 2, 2)``.
        dilations (Sequence[int]): dilation of each stage. Default:
            ``(1, 1, 1, 1)``; ``(1, 1, 2, 4)`` with strides ``(1, 2, 1, 1)``
            gives output stride 8.
        out_indices, frozen_stages, norm_eval, with_cp, deploy, init_cfg,
            norm_cfg: the OpenMMLab switches, as
            :class:`~mmrep.models.backbones.base.RepBackbone` describes them.
    """

    arch_zoo = {
        'bottleneck-224': _preset('bottleneck', 8),
        'light-224': _preset('light', 4),
        'bottleneck-224-g4/8': _preset('bottleneck', (4, 8)),
        'bottleneck-224-g8/16': _preset('bottleneck', (8, 16)),
        'light-224-g4/8': _preset('light', (4, 8)),
        'light-224-g8/16': _preset('light', (8, 16)),
    }
    arch_keys = ('num_blocks', )
    arch_defaults = {k: v for k, v in _preset('bottleneck', 8).items()
                     if k != 'num_blocks'}
    arch_prefixes = ('RepMLP-Res50', )
    block_types = ('bottleneck', 'light', 'base')
    channels = (256, 512, 1024, 2048)
    stem_channels = 64
    # Stages (0-based) whose non-first blocks carry RepMLP: c3 and c4.
    repmlp_stages = (1, 2)

    @record_build_args
    def __init__(self, arch='bottleneck-224', in_channels=3,
                 out_indices=(0, 1, 2, 3), strides=(1, 2, 2, 2),
                 dilations=(1, 1, 1, 1), frozen_stages=-1, norm_eval=False,
                 with_cp=False, deploy=False, init_cfg=None,
                 norm_cfg=dict(type='BN')):
        super().__init__(arch, out_indices, frozen_stages, norm_eval,
                         with_cp, deploy, norm_cfg, init_cfg, in_channels)
        self.strides = self._per_stage('strides', strides, self.num_stages)
        self.dilations = self._per_stage('dilations', dilations,
                                         self.num_stages)
        a = self.arch

        self.stage0 = nn.Sequential(
            conv_bn_act(in_channels, self.stem_channels, 7, 2, deploy=deploy,
                        norm_cfg=norm_cfg),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        planes = self.stem_channels
        for i, (out, n) in enumerate(zip(self.channels, a['num_blocks'])):
            blocks = []
            for j in range(n):
                try:
                    blocks.append(self._make_block(i, j, planes, out))
                except ValueError as e:
                    raise ModelArgumentError(
                        f'stage{i + 1}.{j}: {e}') from None
                planes = out
            self.add_module(f'stage{i + 1}', nn.Sequential(*blocks))
        self._freeze_stages()

    def _make_block(self, stage, index, in_channels, out_channels):
        a = self.arch
        stride = self.strides[stage] if index == 0 else 1
        dilation = self.dilations[stage]
        if (a['block_type'] == 'base' or index == 0
                or stage not in self.repmlp_stages):
            return BaseBlock(in_channels, out_channels // 4, out_channels,
                             stride, dilation, self.deploy, self.norm_cfg)
        k = self.repmlp_stages.index(stage)
        ratio = 4 * 2**stage  # the map's stride in the original network
        unit = dict(H=a['img_size'][0] // ratio, W=a['img_size'][1] // ratio,
                    h=a['partition'][0], w=a['partition'][1],
                    reparam_conv_k=a['conv_kernels'],
                    fc1_fc2_reduction=a['fc1_fc2_reduction'],
                    fc3_groups=a['fc3_groups'][k], deploy=self.deploy,
                    dilation=dilation, norm_cfg=self.norm_cfg)
        if a['block_type'] == 'light':
            return RepMLPLightBlock(in_channels, out_channels // 8,
                                    out_channels, **unit)
        return RepMLPBottleneckBlock(in_channels, out_channels // 4,
                                     out_channels, a['bottleneck_r'][k],
                                     **unit)

    @staticmethod
    def _per_stage(name, values, num_stages):
        values = tuple(values)
        if len(values) != num_stages or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1
                for v in values):
            raise ModelArgumentError(
                f'{name} needs {num_stages} positive ints, got '
                f'{values}')
        return values

    @classmethod
    def check_arch(cls, arch):
        """Validate a complete arch dict (see the class docstring).

        Returns:
            dict: block_type, num_blocks (4 ints), img_size and partition
            (``(H, W)`` pairs), conv_kernels (tuple), fc1_fc2_reduction
            (int), fc3_groups and bottleneck_r (pairs for c3 and c4).

        Raises:
            ModelArgumentError: unknown block type or malformed values.
        """
        out = dict(arch)
        if out['block_type'] not in cls.block_types:
            raise ModelArgumentError(
                f'block_type must be one of {cls.block_types}, '
                f'got {out["block_type"]!r}')
        out['num_blocks'] = tuple(out['num_blocks'])
        if len(out['num_blocks']) != len(cls.channels) or not all(
                isinstance(n, int) and n >= 1 for n in out['num_blocks']):
            raise ModelArgumentError(
                f'num_blocks needs {len(cls.channels)} positive '
                f'ints, got {out["num_blocks"]}')
        out['img_size'] = tuple(to_2tuple(out['img_size']))
        out['partition'] = tuple(to_2tuple(out['partition']))
        out['conv_kernels'] = tuple(out['conv_kernels'] or ())
        for key in ('fc3_groups', 'bottleneck_r'):
            value = out[key]
            out[key] = (value, value) if isinstance(value, int) \
                else tuple(value)
            if len(out[key]) != len(cls.repmlp_stages):
                raise ModelArgumentError(
                    f'{key} must be an int or a pair (c3, c4), '
                    f'got {value!r}')
        return out


# ---------------------------------------------------------------------------
# checkpoint source: the original release
# DingXiaoH/RepMLP ``repmlp_resnet.py`` (RepMLP v1): ``create_RepMLPRes50_*``
# and its train-time and fused checkpoints. mmrep keeps its names; its
# classifier is ``linear``.
# ---------------------------------------------------------------------------
#: The original's constructor arguments -> mmrep's arch keys.
ORIGINAL_ARCH_NAMES = dict(reparam_conv_k='conv_kernels')
#: Pairs of the original's arguments that become one mmrep ``(h, w)``.
ORIGINAL_PAIRS = (('img_H', 'img_W', 'img_size'), ('h', 'w', 'partition'))


def from_original_kwargs(kwargs):
    """The mmrep settings of an original ``RepMLPResNet(**kwargs)``:
    ``img_H``/``img_W`` -> ``img_size``, ``h``/``w`` -> ``partition``,
    ``reparam_conv_k`` -> ``conv_kernels``; ``num_classes`` goes to the
    classifier; mmrep's own names pass through.

    Args:
        kwargs (dict): the original's constructor arguments.

    Returns:
        tuple[dict, int | None]: ``dict(arch=...)`` and the number of
        classes (None where not given).

    Raises:
        ModelArgumentError: an argument under both names, or half of a pair.
    """
    arch = rename_args(kwargs, ORIGINAL_ARCH_NAMES)
    num_classes = arch.pop('num_classes', None)
    for old, new, target in ORIGINAL_PAIRS:
        if old in arch or new in arch:
            if old not in arch or new not in arch or target in arch:
                raise ModelArgumentError(
                    f'arch needs both {old!r} and {new!r} '
                    f'(and not {target!r} as well)')
            arch[target] = (arch.pop(old), arch.pop(new))
    return dict(arch=arch), num_classes


def adapt_checkpoint(backbone, state):
    """Reconcile converted weights with a RepMLP-Res50: each unit's ``fc3``
    (with its per-output-pixel bias and BN) built for another partition
    size, and its global perceptron ``fc1_fc2`` built for another grid, are
    resampled.

    Args:
        backbone (RepMLPResNet): the model.
        state (dict[str, Tensor]): converted backbone weights.

    Returns:
        dict[str, Tensor]: a new dict.
    """
    state = dict(state)
    pixel_keys = ('fc3.bias', 'fc3_bn.weight', 'fc3_bn.bias',
                  'fc3_bn.running_mean', 'fc3_bn.running_var')
    for name, unit in backbone.named_modules():
        if isinstance(unit, RepMLPUnit):
            resample_fc3_state(state, name + '.fc3.', unit.O,
                               (unit.h, unit.w),
                               [f'{name}.{k}' for k in pixel_keys])
            if unit.need_global_perceptron:
                resample_grid_mlp_state(state, name + '.fc1_fc2.', unit.C,
                                        unit.grid,
                                        unit.fc1_fc2.fc1.out_features)
    return state
# ------------------- end of checkpoint source: the original release --------


register_family(CheckpointFamily(
    name='repmlp-res50', model=RepMLPResNet, display='RepMLP-Res50-{}',
    sources=(Source('original', split_classifier, from_original_kwargs), ),
    train_only_markers=('.bn.', 'fc3_bn.', '.repconv'),
    adapt=adapt_checkpoint))
