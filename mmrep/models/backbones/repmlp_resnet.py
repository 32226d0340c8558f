"""RepMLP-Res50 (Ding et al., "RepMLP: Re-parameterizing Convolutions into
Fully-connected Layers for Image Recognition", arXiv 2105.01883) as a
dense-prediction backbone.

Structure, parameter names and numbers follow the original release
(DingXiaoH/RepMLP ``repmlp_resnet.py``): a ResNet-50 (7x7 stem ``stage0``
with max-pooling, bottleneck stages ``stage1..stage4`` of 256, 512, 1024 and
2048 channels) in which every block of ``stage2`` and ``stage3`` (the
paper's c3 and c4) except the first, strided one is a RepMLP Bottleneck or
RepMLP Light block (:mod:`mmrep.models.layers.repmlp_unit`). The RepMLP
units are configured for the maps of an ``img_size`` image (stride 8 and 16),
with one partition size for both stages.

Differences from the original, all outside the numbers it produces:

* the classifier (``gap`` + ``linear``) is left to a head; its weights are
  split off on loading (:meth:`RepBackbone.convert_state_dict`);
* stage outputs are returned as NCHW maps for ``out_indices``, with the usual
  OpenMMLab training switches;
* inputs of any size run (the RepMLP units pad, and map other grids onto the
  configured one, see :mod:`mmrep.models.layers.repmlp_unit`);
* ``fc3_groups`` and ``bottleneck_r`` may differ between c3 and c4 (the
  paper's "g4/8" and "g8/16" variants);
* ``strides`` and ``dilations`` give the dilated forms used by PSPNet and
  similar heads (e.g. strides ``(1, 2, 1, 1)`` and dilations ``(1, 1, 2, 4)``
  as mmseg's ResNetV1c-D8, output stride 8): the first block of a stage takes
  its stride, every 3x3 conv of the stage its dilation, and the RepMLP units
  of the stage dilate their partitions alike, so they keep the partition
  grid they were trained with.
"""
import copy

import torch.nn as nn
import torch.utils.checkpoint as cp

from ...registry import MODELS
from ..layers import (RepMLPBottleneckBlock, RepMLPLightBlock,  # noqa: F401
                      RepMLPUnit,
                      to_2tuple)
from ..layers.repmlp_unit import conv_bn_act
from .base import RepBackbone, arch_settings_of, check_out_indices


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
            ``'bottleneck-224'``. The original constructor's arguments are
            accepted as they are (``img_H``/``img_W``, ``h``/``w``,
            ``reparam_conv_k``; ``num_classes`` belongs to the classifier and
            is ignored).
        in_channels (int): image channels. Default: 3.
        out_indices (Sequence[int]): stages (0 = ``stage1``) whose outputs
            are returned. Default: all four.
        strides (Sequence[int]): stride of each stage's first block.
            Default: ``(1, 2, 2, 2)``.
        dilations (Sequence[int]): dilation of each stage. Default:
            ``(1, 1, 1, 1)``; ``(1, 1, 2, 4)`` with strides ``(1, 2, 1, 1)``
            gives output stride 8.
        frozen_stages (int): freeze the stem ``stage0`` (0) and the first
            ``n`` stages; -1: nothing. Default: -1.
        norm_eval (bool): keep BatchNorm layers in eval mode while training.
            Default: False.
        with_cp (bool): gradient checkpointing of each block. Default: False.
        deploy (bool): build the fused (re-parameterized) form. Default:
            False.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=...)``
            loads an mmrep or original (train or fused) checkpoint,
            converting as needed.
        norm_cfg (dict): config of every BatchNorm, the re-parameterizable
            branches' included (mmcv ``build_norm_layer``); e.g.
            ``dict(type='SyncBN', requires_grad=True)`` for multi-GPU dense
            training. Parameter names do not depend on it. Default:
            ``dict(type='BN')``.
    """

    arch_settings = {
        'bottleneck-224': _preset('bottleneck', 8),
        'light-224': _preset('light', 4),
        'bottleneck-224-g4/8': _preset('bottleneck', (4, 8)),
        'bottleneck-224-g8/16': _preset('bottleneck', (8, 16)),
        'light-224-g4/8': _preset('light', (4, 8)),
        'light-224-g8/16': _preset('light', (8, 16)),
    }
    arch_defaults = {k: v for k, v in _preset('bottleneck', 8).items()
                     if k != 'num_blocks'}
    block_types = ('bottleneck', 'light', 'base')
    channels = (256, 512, 1024, 2048)
    stem_channels = 64
    # Stages (0-based) whose non-first blocks carry RepMLP: c3 and c4.
    repmlp_stages = (1, 2)

    def __init__(self, arch='bottleneck-224', in_channels=3,
                 out_indices=(0, 1, 2, 3), strides=(1, 2, 2, 2),
                 dilations=(1, 1, 1, 1), frozen_stages=-1, norm_eval=False,
                 with_cp=False, deploy=False, init_cfg=None,
                 norm_cfg=dict(type='BN')):
        super().__init__(init_cfg=init_cfg)
        self._build_args = dict(
            arch=copy.deepcopy(arch), in_channels=in_channels,
            out_indices=out_indices, strides=strides, dilations=dilations,
            frozen_stages=frozen_stages, norm_eval=norm_eval,
            with_cp=with_cp, deploy=deploy, norm_cfg=copy.deepcopy(norm_cfg))
        self.norm_cfg = norm_cfg
        self.arch = a = self.parse_arch(arch)
        num_stages = len(a['num_blocks'])
        self.strides = self._per_stage('strides', strides, num_stages)
        self.dilations = self._per_stage('dilations', dilations, num_stages)
        self.out_indices = check_out_indices(out_indices, num_stages)
        self.num_stages = num_stages
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.deploy = deploy

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
                    raise ValueError(f'stage{i + 1}.{j}: {e}') from None
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
            raise ValueError(f'{name} needs {num_stages} positive ints, got '
                             f'{values}')
        return values

    @classmethod
    def parse_arch(cls, arch):
        """Resolve a preset name or dict into a complete settings dict.

        Args:
            arch (str | dict): see the class docstring.

        Returns:
            dict: block_type, num_blocks (4 ints), img_size and partition
            (``(H, W)`` pairs), conv_kernels (tuple), fc1_fc2_reduction
            (int), fc3_groups and bottleneck_r (pairs for c3 and c4).

        Raises:
            ValueError: unknown preset name or block type, unknown or
                missing keys, or malformed values.
        """
        arch = arch_settings_of(arch, cls.arch_settings, 'RepMLPResNet',
                                ignored=('num_classes', ),
                                prefixes=('RepMLP-Res50', ))
        for old, new in (('img_H', 'img_W'), ('h', 'w')):
            if old in arch or new in arch:
                target = 'img_size' if old == 'img_H' else 'partition'
                if old not in arch or new not in arch or target in arch:
                    raise ValueError(f'arch needs both {old!r} and {new!r} '
                                     f'(and not {target!r} as well)')
                arch[target] = (arch.pop(old), arch.pop(new))
        if 'reparam_conv_k' in arch:
            if 'conv_kernels' in arch:
                raise ValueError("arch gives both 'reparam_conv_k' and "
                                 "'conv_kernels'")
            arch['conv_kernels'] = arch.pop('reparam_conv_k')
        allowed = {'num_blocks', *cls.arch_defaults}
        unknown = set(arch) - allowed
        if unknown or 'num_blocks' not in arch:
            raise ValueError(
                f'malformed RepMLPResNet arch dict: unknown keys '
                f'{sorted(unknown)}, missing keys '
                f'{[] if "num_blocks" in arch else ["num_blocks"]}; expected '
                f'num_blocks plus optional {sorted(cls.arch_defaults)}')
        out = dict(cls.arch_defaults)
        out.update(arch)
        if out['block_type'] not in cls.block_types:
            raise ValueError(f'block_type must be one of {cls.block_types}, '
                             f'got {out["block_type"]!r}')
        out['num_blocks'] = tuple(out['num_blocks'])
        if len(out['num_blocks']) != len(cls.channels) or not all(
                isinstance(n, int) and n >= 1 for n in out['num_blocks']):
            raise ValueError(f'num_blocks needs {len(cls.channels)} positive '
                             f'ints, got {out["num_blocks"]}')
        out['img_size'] = to_2tuple(out['img_size'])
        out['partition'] = to_2tuple(out['partition'])
        out['conv_kernels'] = tuple(out['conv_kernels'] or ())
        for key in ('fc3_groups', 'bottleneck_r'):
            value = out[key]
            out[key] = (value, value) if isinstance(value, int) \
                else tuple(value)
            if len(out[key]) != len(cls.repmlp_stages):
                raise ValueError(f'{key} must be an int or a pair (c3, c4), '
                                 f'got {value!r}')
        return out

    def forward(self, x):
        """Return the stage outputs selected by ``out_indices``.

        Args:
            x (Tensor): images ``(N, C, H, W)`` of any size.

        Returns:
            tuple[Tensor]: NCHW maps, at strides 4, 8, 16, 32 (rounded up)
            with the default ``strides``.
        """
        x = self.stage0(x)
        outs = []
        for i in range(self.num_stages):
            for block in getattr(self, f'stage{i + 1}'):
                if self.with_cp and x.requires_grad:
                    x = cp.checkpoint(block, x, use_reentrant=False)
                else:
                    x = block(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def stem_and_stages(self):
        return [self.stage0], [[getattr(self, f'stage{i + 1}')]
                               for i in range(self.num_stages)]
