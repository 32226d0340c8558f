"""The RepMLP unit of RepMLP v1 (Ding et al., "RepMLP: Re-parameterizing
Convolutions into Fully-connected Layers for Image Recognition",
arXiv 2105.01883) and the two ResNet blocks built around it.

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
  :mod:`mmrep.models.layers.repmlp_block`. A partition's average is taken
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

from .conv_bn import ConvBN, build_bn, fuse_bn
from .linear import grouped_linear
from .repmlp_block import conv_to_fc, pad_to_partition


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
        raise ValueError(f'{name} must be a positive int, got {value!r}')
    return value


class RepMLPUnit(nn.Module):
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
            raise ValueError(f'the configured map {H}x{W} must be a multiple '
                             f'of the partition {h}x{w}')
        if in_channels % fc3_groups or out_channels % fc3_groups:
            raise ValueError(f'fc3_groups={fc3_groups} must divide '
                             f'in_channels={in_channels} and '
                             f'out_channels={out_channels}')
        kernels = tuple(reparam_conv_k or ())
        for k in kernels:
            if _positive_int('reparam_conv_k entries', k) % 2 == 0:
                raise ValueError(f'conv kernel sizes must be odd, got {k}')
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
        padded = torch.jit.is_tracing() or Hp != H or Wp != W
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
        if torch.jit.is_tracing() or Hp != H or Wp != W:  # pixels inside
            rows = (H - torch.arange(gh, device=xp.device) * ch).clamp(max=ch)
            cols = (W - torch.arange(gw, device=xp.device) * cw).clamp(max=cw)
            count = (rows[:, None] * cols[None, :]).to(xp.dtype)
            v = v * (ch * cw) / count
        grid = self.grid
        other_grid = torch.jit.is_tracing() or (gh, gw) != grid
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

    def fused_params(self):
        """The fused form's parameters.

        Returns:
            tuple: ``fc1`` weight and bias with the BN after the pooling
            folded in (both None without a global perceptron), and ``fc3``
            weight ``(O*h*w, C/groups*h*w, 1, 1)`` and bias ``(O*h*w,)``
            with ``fc3_bn`` and the conv branches folded in.
        """
        fc1_weight = fc1_bias = None
        if self.deploy:
            if self.need_global_perceptron:
                fc1 = self.fc1_fc2.fc1
                fc1_weight, fc1_bias = fc1.weight, fc1.bias
            return fc1_weight, fc1_bias, self.fc3.weight, self.fc3.bias
        weight, bias = fuse_bn(self.fc3.weight, self.fc3_bn)
        if self.conv_kernels:
            size = max(self.conv_kernels)
            kernel = conv_bias = 0
            for k in self.conv_kernels:
                k_weight, k_bias = getattr(self, f'repconv{k}').fused_kernel()
                kernel = kernel + F.pad(k_weight, [(size - k) // 2] * 4)
                conv_bias = conv_bias + k_bias
            fc_weight, fc_bias = conv_to_fc(
                kernel, conv_bias, self.fc3_groups, self.h, self.w)
            weight = weight + fc_weight.reshape_as(weight)
            bias = bias + fc_bias
        if self.need_global_perceptron:
            bn, fc1 = self.avg.bn, self.fc1_fc2.fc1
            scale = bn.weight / (bn.running_var + bn.eps).sqrt()
            shift = bn.bias - bn.running_mean * scale
            # fc1's inputs are (C, grid_h, grid_w) flattened, C-major.
            cells = self.grid[0] * self.grid[1]
            fc1_weight = fc1.weight * scale.repeat_interleave(cells)
            fc1_bias = fc1.bias + fc1.weight @ shift.repeat_interleave(cells)
        return fc1_weight, fc1_bias, weight, bias

    def reparameterize(self):
        """Switch to the fused form in place (eval-mode equivalent)."""
        if self.deploy:
            return
        with torch.no_grad():
            fc1_weight, fc1_bias, weight, bias = self.fused_params()
            fc3 = nn.Conv2d(self.fc3.in_channels, self.fc3.out_channels, 1,
                            groups=self.fc3_groups, bias=True,
                            device=weight.device, dtype=weight.dtype)
            fc3.weight.copy_(weight)
            fc3.bias.copy_(bias)
            self.fc3 = fc3
            del self.fc3_bn
            for k in self.conv_kernels:
                delattr(self, f'repconv{k}')
            if self.need_global_perceptron:
                self.fc1_fc2.fc1.weight.copy_(fc1_weight)
                self.fc1_fc2.fc1.bias.copy_(fc1_bias)
                self.avg = nn.Identity()
        self.deploy = True


class _FusableBlock(nn.Module):
    """Shared ``reparameterize`` of the blocks below."""

    def reparameterize(self):
        """Fuse every conv-BN pair and the RepMLP unit in place."""
        for m in list(self.children()):
            if callable(getattr(m, 'reparameterize', None)):
                m.reparameterize()
        self.deploy = True

    def _shortcut(self, in_channels, out_channels, deploy, norm_cfg):
        if in_channels == out_channels:
            return nn.Identity()
        return conv_bn_act(in_channels, out_channels, 1, relu=False,
                           deploy=deploy, norm_cfg=norm_cfg)


class RepMLPBottleneckBlock(_FusableBlock):
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
            raise ValueError(f'mid_channels={mid_channels} // r={r} leaves no '
                             f'channels for the RepMLP unit')
        self.deploy = deploy
        self.shortcut = self._shortcut(in_channels, out_channels, deploy,
                                       norm_cfg)
        self.btnk_conv1 = conv_bn_act(in_channels, mid_channels, 1,
                                      deploy=deploy,
                                      norm_cfg=norm_cfg)
        self.btnk_conv2 = conv_bn_act(mid_channels, inner, 3,
                                      dilation=dilation, deploy=deploy,
                                      norm_cfg=norm_cfg)
        self.btnk_repmlp = RepMLPUnit(inner, inner, H, W, h, w,
                                      reparam_conv_k, fc1_fc2_reduction,
                                      fc3_groups, deploy, dilation,
                                      norm_cfg)
        self.repmlp_nonlinear = nn.ReLU()
        self.btnk_conv4 = conv_bn_act(inner, mid_channels, 3,
                                      dilation=dilation, deploy=deploy,
                                      norm_cfg=norm_cfg)
        self.btnk_conv5 = conv_bn_act(mid_channels, out_channels, 1,
                                      relu=False, deploy=deploy,
                                      norm_cfg=norm_cfg)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.btnk_conv2(self.btnk_conv1(x))
        out = self.repmlp_nonlinear(self.btnk_repmlp(out))
        out = self.btnk_conv5(self.btnk_conv4(out))
        return self.relu(out + self.shortcut(x))


class RepMLPLightBlock(_FusableBlock):
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
        self.deploy = deploy
        self.shortcut = self._shortcut(in_channels, out_channels, deploy,
                                       norm_cfg)
        self.light_conv1 = conv_bn_act(in_channels, mid_channels, 1,
                                       deploy=deploy,
                                       norm_cfg=norm_cfg)
        self.light_repmlp = RepMLPUnit(mid_channels, mid_channels, H, W, h, w,
                                       reparam_conv_k, fc1_fc2_reduction,
                                       fc3_groups, deploy, dilation,
                                       norm_cfg)
        self.repmlp_nonlinear = nn.ReLU()
        self.light_conv3 = conv_bn_act(mid_channels, out_channels, 1,
                                       relu=False, deploy=deploy,
                                       norm_cfg=norm_cfg)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.repmlp_nonlinear(self.light_repmlp(self.light_conv1(x)))
        return self.relu(self.light_conv3(out) + self.shortcut(x))
