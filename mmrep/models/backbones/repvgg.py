"""RepVGG (Ding et al., "RepVGG: Making VGG-style ConvNets Great Again",
CVPR 2021) as a dense-prediction backbone.

Structure, parameter names and numbers follow the original release
(DingXiaoH/RepVGG ``repvgg.py``): a stride-2 RepVGG block ``stage0`` and four
stages ``stage1..stage4`` of RepVGG blocks, each opening with a stride-2
block, so the stage outputs have strides 4, 8, 16 and 32. Stage ``i`` has
``int(64 * 2**i * width_multiplier[i])`` channels and the stem
``min(64, int(64 * width_multiplier[0]))``. Blocks are numbered from 1 (the
first block of ``stage1``) to the total count; the ``group_layer_map`` gives
the blocks that use grouped convolutions.

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

Differences from the original, all outside the numbers it produces: the
classifier (``gap`` + ``linear``) is left to a head (its weights are split
off on loading, :mod:`mmrep.checkpoints`), stage outputs are returned as
NCHW maps for ``out_indices``, and the usual OpenMMLab training switches are
available. Inputs of any size run (each stride-2 block rounds up).
"""
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...registry import MODELS
from ...utils.errors import ModelArgumentError
from ...utils.serialization import CheckpointMismatchError
from ..layers import (ConvBN, Reparameterizable, build_bn, fuse_bn,
                      fused_conv)
from .base import RepBackbone, record_build_args
from .family import (CheckpointFamily, Source, has_key_prefix, indices,
                     register_family, rename_args, renamer, split_classifier,
                     torch_bn_name)

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


class RepVGGBlock(Reparameterizable, nn.Module):
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
            (:func:`~mmrep.models.layers.build_bn`). Default:
            ``dict(type='BN')``.
        block (str): ``'repvgg'`` (the three branches above) or
            ``'qarepvgg'``, the quantization-friendly block of Chu et al.,
            "Make RepVGG Greater Again: A Quantization-aware Approach"
            (AAAI 2024): 3x3 conv-BN + a plain 1x1 conv (no BN, no bias) +
            the identity (no BN), then one BN after the sum (``bn``), then
            the ReLU. Without per-branch BNs on the 1x1 and identity
            branches the fused kernel's per-channel ranges stay close to
            the 3x3 branch's, which suits INT8. Train it with ordinary
            weight decay (no custom L2 on the equivalent kernel), as the
            paper does. Both fuse to the same ``rbr_reparam``.
            Default: ``'repvgg'``.

    Raises:
        ModelArgumentError: ``groups`` does not divide the channel counts, a
            non-positive size, or an unknown ``block``.
    """

    def __init__(self, in_channels, out_channels, stride=1, groups=1,
                 deploy=False, norm_cfg=None, block='repvgg'):
        super().__init__()
        if block not in ('repvgg', 'qarepvgg'):
            raise ModelArgumentError(
                f"block must be 'repvgg' or 'qarepvgg', got "
                f'{block!r}')
        self.block = block
        if min(in_channels, out_channels, stride, groups) < 1:
            raise ModelArgumentError(
                f'RepVGGBlock needs positive sizes, got in_channels='
                f'{in_channels}, out_channels={out_channels}, stride={stride},'
                f' groups={groups}')
        if in_channels % groups or out_channels % groups:
            raise ModelArgumentError(
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
        if block == 'qarepvgg':
            self.rbr_identity = (nn.Identity() if in_channels == out_channels
                                 and stride == 1 else None)
            self.rbr_dense = ConvBN(in_channels, out_channels, 3, stride, 1,
                                    groups=groups, norm_cfg=norm_cfg)
            self.rbr_1x1 = nn.Conv2d(in_channels, out_channels, 1, stride, 0,
                                     groups=groups, bias=False)
            self.bn = build_bn(norm_cfg, out_channels)
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
        if self.block == 'qarepvgg':
            out = self.bn(out)
        return self.nonlinearity(out)

    def fused_weights(self):
        """The kernel and bias of the single 3x3 conv equal to the branches.

        Differentiable (usable for regularisation or quantization-aware
        training); uses the BN running statistics, i.e. eval-mode behaviour.

        Returns:
            tuple[Tensor, Tensor]: weight ``(out, in // groups, 3, 3)`` and
            bias ``(out,)``.
        """
        if self.deploy:
            return self.rbr_reparam.weight, self.rbr_reparam.bias
        weight, bias = self.rbr_dense.fused_weights()
        if self.block == 'qarepvgg':
            weight = weight + F.pad(self.rbr_1x1.weight, [1, 1, 1, 1])
            if self.rbr_identity is not None:
                weight = weight + identity_kernel(
                    self.in_channels, self.groups, device=weight.device,
                    dtype=weight.dtype)
            return fuse_bn(weight, self.bn, bias)
        weight_1x1, bias_1x1 = self.rbr_1x1.fused_weights()
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

    def fuse_own(self):
        """Replace the branches by ``rbr_reparam``, in place. Equivalent in
        eval mode; does nothing when already fused."""
        if self.deploy:
            return
        conv = fused_conv(self.rbr_dense.conv, *self.fused_weights())
        for name in ('rbr_dense', 'rbr_1x1', 'rbr_identity', 'bn'):
            if hasattr(self, name):
                delattr(self, name)
        self.rbr_reparam = conv
        self.deploy = True

    def extra_repr(self):
        return (f'{self.in_channels}, {self.out_channels}, '
                f'stride={self.stride}, groups={self.groups}, '
                f'deploy={self.deploy}' +
                (", block='qarepvgg'" if self.block == 'qarepvgg' else ''))


_GROUPWISE_LAYERS = tuple(range(2, 27, 2))
_G2 = {layer: 2 for layer in _GROUPWISE_LAYERS}
_G4 = {layer: 4 for layer in _GROUPWISE_LAYERS}
_A_BLOCKS = (2, 4, 14, 1)
_B_BLOCKS = (4, 6, 16, 1)


def _preset(num_blocks, width_multiplier, group_layer_map=None):
    return dict(num_blocks=num_blocks, width_multiplier=width_multiplier,
                group_layer_map=dict(group_layer_map or {}))


@MODELS.register_module()
class RepVGG(RepBackbone):
    """RepVGG backbone.

    Args:
        arch (str | dict): a preset name (``'A0'``, ``'A1'``, ``'A2'``,
            ``'B0'``, ``'B1'``, ``'B1g2'``, ``'B1g4'``, ``'B2'``, ``'B2g2'``,
            ``'B2g4'``, ``'B3'``, ``'B3g2'``, ``'B3g4'``; case-insensitive, an
            optional ``'RepVGG-'`` prefix allowed) or a dict with
            ``num_blocks`` and ``width_multiplier`` (one entry per stage) and
            optionally ``group_layer_map`` (``{block number: groups}``,
            default none) and ``stem_channels`` (the stem's upper bound,
            default 64). (``tools/convert_checkpoint.py`` translates the
            original and mmpretrain constructors' arguments into such a
            dict.)
        in_channels (int): image channels. Default: 3.
        out_indices, frozen_stages, norm_eval, with_cp, deploy, init_cfg,
            norm_cfg: the OpenMMLab switches, as
            :class:`~mmrep.models.backbones.base.RepBackbone` describes them.
        block (str): ``'repvgg'`` or ``'qarepvgg'`` (the quantization-
            friendly block, :class:`RepVGGBlock`), for every block. The
            fused forms have the same structure. Default: ``'repvgg'``.
    """

    arch_zoo = {
        'A0': _preset(_A_BLOCKS, (0.75, 0.75, 0.75, 2.5)),
        'A1': _preset(_A_BLOCKS, (1, 1, 1, 2.5)),
        'A2': _preset(_A_BLOCKS, (1.5, 1.5, 1.5, 2.75)),
        'B0': _preset(_B_BLOCKS, (1, 1, 1, 2.5)),
        'B1': _preset(_B_BLOCKS, (2, 2, 2, 4)),
        'B1g2': _preset(_B_BLOCKS, (2, 2, 2, 4), _G2),
        'B1g4': _preset(_B_BLOCKS, (2, 2, 2, 4), _G4),
        'B2': _preset(_B_BLOCKS, (2.5, 2.5, 2.5, 5)),
        'B2g2': _preset(_B_BLOCKS, (2.5, 2.5, 2.5, 5), _G2),
        'B2g4': _preset(_B_BLOCKS, (2.5, 2.5, 2.5, 5), _G4),
        'B3': _preset(_B_BLOCKS, (3, 3, 3, 5)),
        'B3g2': _preset(_B_BLOCKS, (3, 3, 3, 5), _G2),
        'B3g4': _preset(_B_BLOCKS, (3, 3, 3, 5), _G4),
    }
    arch_keys = ('num_blocks', 'width_multiplier')
    arch_defaults = dict(group_layer_map=None, stem_channels=64)

    @record_build_args
    def __init__(self, arch='A0', in_channels=3, out_indices=(0, 1, 2, 3),
                 frozen_stages=-1, norm_eval=False, with_cp=False,
                 deploy=False, init_cfg=None, norm_cfg=dict(type='BN'),
                 block='repvgg'):
        super().__init__(arch, out_indices, frozen_stages, norm_eval,
                         with_cp, deploy, norm_cfg, init_cfg, in_channels)
        a = self.arch
        channels = [int(64 * 2**i * w)
                    for i, w in enumerate(a['width_multiplier'])]
        self.channels = tuple(channels)
        planes = min(a['stem_channels'], channels[0])
        self.stage0 = RepVGGBlock(in_channels, planes, stride=2,
                                  deploy=deploy, norm_cfg=norm_cfg,
                                  block=block)
        layer = 1
        for i, (out, n) in enumerate(zip(channels, a['num_blocks'])):
            blocks = []
            for j in range(n):
                groups = a['group_layer_map'].get(layer, 1)
                try:
                    blocks.append(RepVGGBlock(planes, out, 2 if j == 0 else 1,
                                              groups, deploy, norm_cfg,
                                              block))
                except ValueError as e:
                    raise ModelArgumentError(
                        f'block {layer} (stage{i + 1}.{j}): '
                        f'{e}') from None
                planes = out
                layer += 1
            self.add_module(f'stage{i + 1}', nn.Sequential(*blocks))
        self._freeze_stages()

    @classmethod
    def check_arch(cls, arch):
        """Validate a complete arch dict (see the class docstring).

        Returns:
            dict: num_blocks (tuple[int]), width_multiplier (tuple[float]),
            group_layer_map (dict[int, int]), stem_channels (int).

        Raises:
            ModelArgumentError: non-positive values, or a group map naming a
                block that does not exist.
        """
        out = dict(arch)
        out['num_blocks'] = tuple(int(n) for n in out['num_blocks'])
        out['width_multiplier'] = tuple(
            float(w) for w in out['width_multiplier'])
        out['stem_channels'] = int(out['stem_channels'])
        if min(out['num_blocks']) < 1 or min(out['width_multiplier']) <= 0:
            raise ModelArgumentError(
                f'arch num_blocks and width_multiplier must be '
                f'positive, got {out["num_blocks"]} and '
                f'{out["width_multiplier"]}')
        groups = {int(k): int(v)
                  for k, v in (out['group_layer_map'] or {}).items()}
        total = sum(out['num_blocks'])
        bad = sorted(k for k in groups if not 1 <= k <= total)
        if bad:
            raise ModelArgumentError(
                f'group_layer_map names blocks {bad}; blocks are '
                f'numbered 1..{total} (stage0 cannot be grouped)')
        out['group_layer_map'] = groups
        return out


# ---------------------------------------------------------------------------
# checkpoint source: the original release
# DingXiaoH/RepVGG ``repvgg.py``: ``create_RepVGG_*`` and its train-time and
# fused (``repvgg_model_convert``) checkpoints. mmrep keeps its names; its
# classifier is ``linear``.
# ---------------------------------------------------------------------------
#: The original's constructor arguments (and mmpretrain's ``width_factor``)
#: -> mmrep's arch keys.
ORIGINAL_ARCH_NAMES = dict(width_factor='width_multiplier',
                           override_groups_map='group_layer_map')


def from_original_kwargs(kwargs):
    """The mmrep settings of an original ``RepVGG(**kwargs)``.

    ``override_groups_map`` -> ``group_layer_map``, ``width_factor`` ->
    ``width_multiplier``; ``num_classes`` goes to the classifier; mmrep's
    own names pass through (the model checks them).

    Args:
        kwargs (dict): the original's constructor arguments.

    Returns:
        tuple[dict, int | None]: ``dict(arch=...)`` and the number of
        classes (None where not given).

    Raises:
        ModelArgumentError: an argument under both names, or an ``se_cfg``.
    """
    arch = rename_args(kwargs, ORIGINAL_ARCH_NAMES)
    num_classes = arch.pop('num_classes', None)
    if arch.pop('se_cfg', None) is not None:
        raise ModelArgumentError(
            'RepVGG blocks with SE layers (se_cfg) are not '
            'supported')
    return dict(arch=arch), num_classes


def _block_weight(state, name):
    for key in (f'{name}.rbr_dense.conv.weight', f'{name}.rbr_reparam.weight'):
        if key in state:
            return state[key].shape
    raise KeyError(name)


def read_arch(state):
    """The arch dict of converted RepVGG weights (train-time or fused), from
    their names and shapes: blocks per stage, widths, groups and the stem
    width.

    Args:
        state (dict[str, Tensor]): converted backbone weights.

    Returns:
        dict: the arch.

    Raises:
        KeyError | ValueError: the weights are not laid out as RepVGG's.
    """
    stem = _block_weight(state, 'stage0')
    planes, in_ch = int(stem[0]), int(stem[0])
    num_blocks, multipliers, groups, layer = [], [], {}, 1
    for i in range(1, 5):
        blocks = indices(state, rf'stage{i}\.(\d+)\.')
        if not blocks:
            raise ValueError(f'no stage{i}')
        num_blocks.append(len(blocks))
        for j in range(len(blocks)):
            shape = _block_weight(state, f'stage{i}.{j}')
            if in_ch % int(shape[1]):
                raise ValueError(f'stage{i}.{j} groups')
            if in_ch // int(shape[1]) > 1:
                groups[layer] = in_ch // int(shape[1])
            in_ch, layer = int(shape[0]), layer + 1
        multipliers.append(in_ch / (64 * 2**(i - 1)))
    arch = dict(num_blocks=tuple(num_blocks),
                width_multiplier=tuple(multipliers), group_layer_map=groups)
    if planes != min(64, int(64 * multipliers[0])):
        arch['stem_channels'] = planes
    return arch
# ------------------- end of checkpoint source: the original release --------


# ---------------------------------------------------------------------------
# checkpoint source: mmpretrain
# ``mmpretrain/models/backbones/repvgg.py``: ``stem``, ``stage_1`` ..,
# blocks with ``branch_3x3`` / ``branch_1x1`` (``conv`` + ``norm``),
# ``branch_norm`` and, fused, ``branch_reparam``; classifier ``head.fc``.
# ---------------------------------------------------------------------------
#: mmpretrain name fragment -> mmrep's, applied in order.
MMPRETRAIN_RENAMES = (
    (re.compile(r'^stem\.'), 'stage0.'),
    (re.compile(r'^stage_(\d+)\.'), r'stage\1.'),
    (re.compile(r'\bbranch_3x3\.norm\.'), 'rbr_dense.bn.'),
    (re.compile(r'\bbranch_1x1\.norm\.'), 'rbr_1x1.bn.'),
    (re.compile(r'\bbranch_3x3\.'), 'rbr_dense.'),
    (re.compile(r'\bbranch_1x1\.'), 'rbr_1x1.'),
    (re.compile(r'\bbranch_norm\.'), 'rbr_identity.'),
    (re.compile(r'\bbranch_reparam\.'), 'rbr_reparam.'),
)
#: Key prefixes only mmpretrain's RepVGG checkpoints have.
MMPRETRAIN_PREFIXES = ('stem.', 'stage_')


def is_mmpretrain_state(state):
    """Whether the key names are mmpretrain's RepVGG names (timm's, which
    share ``stem.``, are told first)."""
    return has_key_prefix(state, MMPRETRAIN_PREFIXES)


def from_mmpretrain_state_dict(state):
    """mmpretrain RepVGG weights as mmrep backbone and classifier weights
    (:data:`MMPRETRAIN_RENAMES`; ``head.fc.*`` -> ``fc.*``)."""
    return split_classifier(state, renamer(MMPRETRAIN_RENAMES))
# ----------------------- end of checkpoint source: mmpretrain --------------


# ---------------------------------------------------------------------------
# checkpoint source: MindCV
# mindspore-lab/mindcv ``mindcv/models/repvgg.py`` (at 51b0636), its
# ``RepVGG(**kwargs)`` and its checkpoints (MindSpore names).
#
# The port computes what the original release computes (same blocks, widths,
# group numbering, BN eps, pooling and classifier): no option is needed.
# Its SE blocks (``use_se=True``) are not supported, as the original's are
# not.
# ---------------------------------------------------------------------------
#: The port's conv-BN cells are numbered lists: index -> mmrep's name.
MINDCV_CONV_BN = {'0': 'conv', '1': 'bn'}


def from_mindcv_kwargs(port_kwargs):
    """The mmrep classifier settings of a MindCV ``RepVGG(**kwargs)``.

    ``num_blocks`` and ``width_multiplier`` keep their names,
    ``override_group_map`` becomes ``group_layer_map`` (keys as ints: a JSON
    copy has them as strings), ``num_classes`` goes to the classifier,
    ``in_channels`` and ``deploy`` to the backbone.

    Args:
        port_kwargs (dict): the port's constructor arguments.

    Returns:
        tuple[dict, int]: the :class:`RepVGG` constructor arguments of a
        classifier's backbone (the last stage as output) and the number of
        classes.

    Raises:
        ModelArgumentError: ``use_se=True``, or an argument the port does
            not take.
    """
    kwargs = dict(port_kwargs)
    if kwargs.pop('use_se', False):
        raise ModelArgumentError(
            'RepVGG blocks with SE layers (use_se) are not '
            'supported')
    num_classes = int(kwargs.pop('num_classes', 1000))
    backbone = dict(in_channels=int(kwargs.pop('in_channels', 3)),
                    deploy=bool(kwargs.pop('deploy', False)),
                    out_indices=(-1, ))
    groups = kwargs.pop('override_group_map', None) or {}
    arch = dict(num_blocks=tuple(kwargs.pop('num_blocks')),
                width_multiplier=tuple(kwargs.pop('width_multiplier')),
                group_layer_map={int(k): int(v) for k, v in groups.items()})
    if kwargs:
        raise ModelArgumentError(f'MindCV RepVGG takes no {sorted(kwargs)}')
    return dict(backbone, arch=arch), num_classes


def _mindcv_key(key):
    """A MindCV RepVGG key in mmrep's (the original's) names."""
    parts = key.split('.')
    for i, part in enumerate(parts[:-2]):
        if part in ('rbr_dense', 'rbr_1x1') and parts[i + 1] in \
                MINDCV_CONV_BN:
            parts[i + 1] = MINDCV_CONV_BN[parts[i + 1]]
    return torch_bn_name('.'.join(parts))


def from_mindcv_state_dict(port_state):
    """MindCV RepVGG weights as mmrep backbone and classifier weights.

    ``rbr_dense.0.*`` / ``rbr_1x1.0.*`` -> ``rbr_dense.conv.*`` /
    ``rbr_1x1.conv.*``, ``rbr_dense.1.*`` / ``rbr_1x1.1.*`` -> ``.bn.*``, BN
    ``gamma`` / ``beta`` / ``moving_mean`` / ``moving_variance`` ->
    ``weight`` / ``bias`` / ``running_mean`` / ``running_var`` (also
    ``rbr_identity``), ``linear.*`` -> the classifier's ``fc.*``;
    ``rbr_reparam.*`` and the stage names are the original's already.

    Args:
        port_state (dict[str, Tensor]): the port's checkpoint.

    Returns:
        tuple[dict, dict]: backbone weights and head weights (``fc.weight``,
        ``fc.bias``, mmpretrain's ``LinearClsHead`` names).
    """
    return split_classifier(port_state, _mindcv_key, ('linear.', ))
# ------------------------ end of checkpoint source: MindCV -------------------


# ---------------------------------------------------------------------------
# checkpoint source: timm
# ---------------------------------------------------------------------------
# timm (``timm/models/byobnet.py``) builds RepVGG as a ``ByobNet`` of
# ``RepVggBlock``s: ``stem`` (the stride-2 first block), ``stages.N.M`` (block
# M of stage N, from 0), no ``final_conv`` (``num_features=0``) and a
# ``ClassifierHead`` whose ``head.fc`` is the linear classifier. In eval mode
# its models compute what the original release's compute:
#
# * the identity branch is a BN present when the input and output channels
#   agree and the stride is 1 (timm also requires an undilated block, which
#   only its ``output_stride`` < 32 option changes);
# * every BN is a ``BatchNormAct2d`` without activation, eps 1e-5 (the
#   original's default);
# * timm's ``drop_path`` (only for ``drop_path_rate`` > 0, on the sum of the
#   3x3 and 1x1 branches of the blocks that have an identity) and dropout
#   before ``head.fc`` act in training only;
# * grouped blocks: timm groups the 2nd, 4th, ... block of each stage (odd
#   index within the stage; a group size ``channels // groups``), the
#   original the blocks with even global numbers 2..26
#   (``override_groups_map``, stage1's first block is number 1). Every stage
#   before the last has an even depth in timm's B presets, so both group the
#   same blocks, those of :data:`TIMM_REPVGG_ARCHS`' presets;
#   :func:`timm_repvgg_arch` translates a config of other depths block by
#   block;
# * ``repvgg_d2se`` (depths 8, 14, 24, 1, widths of B2) puts a
#   squeeze-and-excitation layer (``attn.fc1``/``attn.fc2``) after each
#   block's branches: mmrep's RepVGG has none, and refuses it.
#
# timm has no ``g2`` presets. Its fused form (``reparameterize_model``) has
# ``reparam_conv`` for each block, mmrep's ``rbr_reparam``.

#: timm model names -> mmrep presets (same depths, widths, stem width and
#: grouped blocks as timm's ``model_cfgs``).
TIMM_REPVGG_ARCHS = {
    'repvgg_a0': 'A0', 'repvgg_a1': 'A1', 'repvgg_a2': 'A2',
    'repvgg_b0': 'B0', 'repvgg_b1': 'B1', 'repvgg_b1g4': 'B1g4',
    'repvgg_b2': 'B2', 'repvgg_b2g4': 'B2g4', 'repvgg_b3': 'B3',
    'repvgg_b3g4': 'B3g4',
}
TIMM_SE_REFUSAL = (
    "timm's repvgg_d2se cannot be converted: its blocks end in a "
    "squeeze-and-excitation layer (attn.fc1, attn.fc2), which mmrep's "
    "RepVGG does not have")

#: timm's block parts -> mmrep's (the ``conv``/``bn`` names inside are
#: shared).
TIMM_REPVGG_PARTS = {
    'conv_kxk': 'rbr_dense',
    'conv_1x1': 'rbr_1x1',
    'identity': 'rbr_identity',
    'reparam_conv': 'rbr_reparam',
}
_TIMM_KEY = re.compile(
    r'^(?:stem|stages\.(\d+)\.(\d+))\.(?:'
    r'(conv_kxk|conv_1x1)\.((?:conv|bn)\.\w+)|(identity)\.(\w+)|'
    r'(reparam_conv)\.(weight|bias))$')
_TIMM_HEAD = ('head.fc.weight', 'head.fc.bias')


def timm_repvgg_key(key):
    """An mmrep classifier's name for a timm RepVGG tensor.

    ``stem.`` -> ``backbone.stage0.``, ``stages.N.M.`` ->
    ``backbone.stage{N+1}.M.``; within a block ``conv_kxk`` ->
    ``rbr_dense``, ``conv_1x1`` -> ``rbr_1x1``, ``identity`` ->
    ``rbr_identity``, ``reparam_conv`` -> ``rbr_reparam``; ``head.fc.*``
    stays (mmpretrain's ``LinearClsHead``).

    Args:
        key (str): a key of timm's ``state_dict()``.

    Returns:
        str | None: the mmrep key; None for a key no timm RepVGG model of
        mmrep's kind has (``attn.*``, ``final_conv.*``, other blocks).
    """
    if key in _TIMM_HEAD:
        return key
    m = _TIMM_KEY.match(key)
    if m is None:
        return None
    stage, block = m.group(1), m.group(2)
    part = m.group(3) or m.group(5) or m.group(7)
    rest = m.group(4) or m.group(6) or m.group(8)
    where = 'stage0' if stage is None else f'stage{int(stage) + 1}.{block}'
    return f'backbone.{where}.{TIMM_REPVGG_PARTS[part]}.{rest}'


def is_timm_repvgg_state(state):
    """Whether a state dict has timm's RepVGG names (``stem.`` /
    ``stages.N.M.`` with ``conv_kxk``, ``conv_1x1``, ``identity`` or
    ``reparam_conv``). mmpretrain's (``stem.branch_3x3``, ``stage_1.``) and
    the original's (``stage1.0.rbr_dense``) do not match.

    Args:
        state (dict[str, Tensor]): the weights.

    Returns:
        bool
    """
    return any(_TIMM_KEY.match(k) for k in state)


def convert_timm_repvgg(state):
    """A timm RepVGG state dict (train-time or fused, with or without
    ``head.fc``) as an mmrep classifier's: backbone tensors under
    ``backbone.`` (names of :class:`RepVGG`), the classifier ``head.fc.*``
    (mmpretrain's ``LinearClsHead``), values unchanged.

    Args:
        state (dict[str, Tensor]): timm's weights.

    Returns:
        tuple[dict, bool]: the converted weights and whether they are the
        fused form (build the backbone with ``deploy=True``).

    Raises:
        CheckpointMismatchError: SE layers (``repvgg_d2se``), a
            ``final_conv``, other keys, or fused and train-time blocks mixed.
    """
    out, unknown = {}, []
    for key, value in state.items():
        new = timm_repvgg_key(key)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if any('.attn.' in k for k in unknown):
        raise CheckpointMismatchError(TIMM_SE_REFUSAL)
    if unknown:
        hint = (' (a final 1x1 conv, which timm RepVGG models do not have)'
                if any(k.startswith('final_conv.') for k in unknown) else '')
        raise CheckpointMismatchError(
            f'{len(unknown)} keys are not those of a timm RepVGG model'
            f'{hint}: {sorted(unknown)[:8]}')
    fused = any('.rbr_reparam.' in k for k in out)
    if fused and any('.rbr_dense.' in k for k in out):
        raise CheckpointMismatchError(
            'the timm checkpoint mixes fused (reparam_conv) and train-time '
            '(conv_kxk) blocks')
    return out, fused


def _timm_cfg_arch(cfg):
    """:func:`timm_repvgg_arch` of a timm ``ByoModelCfg``."""
    def refuse(why):
        raise ModelArgumentError(f'this timm config is no mmrep RepVGG: {why}')

    blocks = tuple(cfg.blocks)
    if getattr(cfg, 'stem_type', None) != 'rep':
        refuse(f'stem_type {getattr(cfg, "stem_type", None)!r}, not rep')
    attn = [getattr(c, name, None) for c in (cfg, ) + blocks
            for name in ('attn_layer', 'self_attn_layer')]
    if 'se' in attn:
        raise ModelArgumentError(TIMM_SE_REFUSAL)
    if any(attn):
        refuse(f'attention layers {sorted(set(filter(None, attn)))}')
    if getattr(cfg, 'num_features', 0):
        refuse(f'a final 1x1 conv (num_features={cfg.num_features})')
    factor = float(getattr(cfg, 'width_factor', 1.0))
    stem = getattr(cfg, 'stem_chs', None) or blocks[0].c
    if isinstance(stem, (list, tuple)):
        refuse(f'stem_chs {stem}, several convolutions')
    stem = int(round(stem * factor))
    num_blocks, width_multiplier, group_map = [], [], {}
    in_chs, layer = stem, 1
    for i, block in enumerate(blocks):
        if getattr(block, 'type', None) != 'rep' or \
                getattr(block, 's', 2) != 2:
            refuse(f'stage {i} is not one run of stride-2 rep blocks')
        width = block.c * factor
        if width <= 0 or width != int(width) or int(width) % 8:
            # timm rounds other widths to multiples of 8.
            refuse(f'stage {i} width {width} is no multiple of 8')
        width = int(width)
        multiplier = width / (64 * 2**i)
        if int(64 * 2**i * multiplier) != width:
            refuse(f'stage {i} width {width}')
        for j in range(block.d):
            size = block.gs(width, j) if callable(block.gs) else block.gs
            groups = in_chs // size if size else 1
            if groups > 1:
                group_map[layer] = groups
            in_chs, layer = width, layer + 1
        num_blocks.append(int(block.d))
        width_multiplier.append(multiplier)
    first = int(64 * width_multiplier[0])
    if stem > first:
        refuse(f'stem width {stem} above the first stage\'s')
    # mmrep's stem has min(stem_channels, first stage) channels.
    return dict(num_blocks=tuple(num_blocks),
                width_multiplier=tuple(width_multiplier),
                group_layer_map=group_map,
                stem_channels=64 if stem == min(64, first) else stem)


def timm_repvgg_arch(model):
    """The mmrep RepVGG arch of a timm RepVGG model.

    Args:
        model (str | object): a timm model name (``'repvgg_a0'`` ..
            ``'repvgg_b3g4'``; a ``'timm/'`` prefix and a ``'.tag'`` such as
            ``'.rvgg_in1k'`` allowed), or a timm ``ByoModelCfg``
            (``timm.models.byobnet.model_cfgs[name]``), translated: depths,
            widths (``c * width_factor``), the stem width and the groups of
            each block as timm computes them.

    Returns:
        str | dict: a preset name (:data:`TIMM_REPVGG_ARCHS`) for a name, an
        arch dict for a config.

    Raises:
        ModelArgumentError: ``repvgg_d2se`` (:data:`TIMM_SE_REFUSAL`), an
            unknown name, or a config mmrep cannot represent.
    """
    if not isinstance(model, str):
        return _timm_cfg_arch(model)
    name = model.split('/')[-1].split('.')[0].lower()
    if name == 'repvgg_d2se':
        raise ModelArgumentError(TIMM_SE_REFUSAL)
    if name not in TIMM_REPVGG_ARCHS:
        raise ModelArgumentError(
            f'unknown timm RepVGG model {model!r}; one of '
            f'{sorted(TIMM_REPVGG_ARCHS)}')
    return TIMM_REPVGG_ARCHS[name]


def from_timm_state_dict(state):
    """timm RepVGG weights as mmrep backbone and classifier weights
    (:func:`convert_timm_repvgg`, split).

    Args:
        state (dict[str, Tensor]): timm's weights.

    Returns:
        tuple[dict, dict]: backbone weights and head weights (``fc.weight``,
        ``fc.bias``).
    """
    converted, _ = convert_timm_repvgg(state)
    backbone, head = {}, {}
    for key, value in converted.items():
        if key.startswith('backbone.'):
            backbone[key[len('backbone.'):]] = value
        else:  # head.fc.*
            head[key[len('head.'):]] = value
    return backbone, head
# ------------------------- end of checkpoint source: timm -------------------


register_family(CheckpointFamily(
    name='repvgg', model=RepVGG, display='RepVGG-{}',
    sources=(
        Source('original', split_classifier, from_original_kwargs),
        Source('mmpretrain', from_mmpretrain_state_dict, from_original_kwargs,
               detect=is_mmpretrain_state,
               key_marks=('branch_3x3', 'branch_1x1', 'branch_norm',
                          'branch_reparam')),
        Source('timm', from_timm_state_dict, detect=is_timm_repvgg_state,
               key_marks=tuple(TIMM_REPVGG_PARTS), priority=1, port=True),
        Source('mindcv', from_mindcv_state_dict, from_mindcv_kwargs,
               framework='mindspore', label='MindCV', port=True),
    ),
    train_only_markers=('.bn.', 'rbr_dense.', 'rbr_1x1.', 'rbr_identity.'),
    input_weights=('stage0.rbr_dense.conv.weight',
                   'stage0.rbr_reparam.weight'),
    read_arch=read_arch))
