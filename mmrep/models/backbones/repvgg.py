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

Differences from the original, all outside the numbers it produces: the
classifier (``gap`` + ``linear``) is left to a head (its weights are split
off by :meth:`RepVGG.convert_state_dict`), stage outputs are returned as
NCHW maps for ``out_indices``, and the usual OpenMMLab training switches are
available. Inputs of any size run (each stride-2 block rounds up).
"""
import copy

import torch.nn as nn
import torch.utils.checkpoint as cp
from ...registry import MODELS
from ..layers import RepVGGBlock
from .base import (RepBackbone, arch_settings_of, check_out_indices,
                   complete_arch)

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
            default 64). The original constructor's names
            (``override_groups_map``; ``num_classes``, which belongs to the
            classifier and is ignored here) and mmpretrain's
            (``width_factor``; ``se_cfg`` must be None) are accepted too.
        in_channels (int): image channels. Default: 3.
        out_indices (Sequence[int]): stages (0 = ``stage1``) whose outputs
            are returned. Default: all four.
        frozen_stages (int): freeze the stem ``stage0`` (0) and the first
            ``n`` stages ``stage1..stage{n}``; -1: nothing. Default: -1.
        norm_eval (bool): keep BatchNorm layers in eval mode while training.
            Default: False.
        with_cp (bool): gradient checkpointing of each block. Default: False.
        deploy (bool): build the fused (re-parameterized) form. Default:
            False.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=...)``
            loads an mmrep, original (train or fused) or mmpretrain
            checkpoint, converting keys and form as needed.
        norm_cfg (dict): config of every BatchNorm, the re-parameterizable
            branches' included (mmcv ``build_norm_layer``); e.g.
            ``dict(type='SyncBN', requires_grad=True)`` for multi-GPU dense
            training. Parameter names do not depend on it. Default:
            ``dict(type='BN')``.
    """

    arch_settings = {
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
    arch_defaults = dict(group_layer_map=None, stem_channels=64)
    _other_names = dict(width_factor='width_multiplier',
                        override_groups_map='group_layer_map')
    _ignored = ('num_classes', )

    def __init__(self, arch='A0', in_channels=3, out_indices=(0, 1, 2, 3),
                 frozen_stages=-1, norm_eval=False, with_cp=False,
                 deploy=False, init_cfg=None, norm_cfg=dict(type='BN')):
        super().__init__(init_cfg=init_cfg)
        self._build_args = dict(
            arch=copy.deepcopy(arch), in_channels=in_channels,
            out_indices=out_indices, frozen_stages=frozen_stages,
            norm_eval=norm_eval, with_cp=with_cp, deploy=deploy,
            norm_cfg=copy.deepcopy(norm_cfg))
        self.arch = self.parse_arch(arch)
        a = self.arch
        num_stages = len(a['num_blocks'])
        self.out_indices = check_out_indices(out_indices, num_stages)
        self.num_stages = num_stages
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.deploy = deploy

        channels = [int(64 * 2**i * w)
                    for i, w in enumerate(a['width_multiplier'])]
        self.channels = tuple(channels)
        planes = min(a['stem_channels'], channels[0])
        self.stage0 = RepVGGBlock(in_channels, planes, stride=2,
                                  deploy=deploy, norm_cfg=norm_cfg)
        layer = 1
        for i, (out, n) in enumerate(zip(channels, a['num_blocks'])):
            blocks = []
            for j in range(n):
                groups = a['group_layer_map'].get(layer, 1)
                try:
                    blocks.append(RepVGGBlock(planes, out, 2 if j == 0 else 1,
                                              groups, deploy, norm_cfg))
                except ValueError as e:
                    raise ValueError(f'block {layer} (stage{i + 1}.{j}): '
                                     f'{e}') from None
                planes = out
                layer += 1
            self.add_module(f'stage{i + 1}', nn.Sequential(*blocks))
        self._freeze_stages()

    @classmethod
    def parse_arch(cls, arch):
        """Resolve a preset name or dict into a complete settings dict.

        Args:
            arch (str | dict): see the class docstring.

        Returns:
            dict: num_blocks (tuple[int]), width_multiplier (tuple[float]),
            group_layer_map (dict[int, int]), stem_channels (int).

        Raises:
            ValueError: unknown preset name, unknown or missing keys,
                per-stage lists of different lengths, or a group map naming
                a block that does not exist.
        """
        arch = arch_settings_of(arch, cls.arch_settings, 'RepVGG',
                                cls._other_names, cls._ignored)
        if arch.pop('se_cfg', None) is not None:
            raise ValueError('RepVGG blocks with SE layers (se_cfg) are not '
                             'supported')
        # Lengths are checked below, after the values are normalized.
        out = complete_arch(arch, 'RepVGG',
                            ('num_blocks', 'width_multiplier'),
                            cls.arch_defaults, same_length=False)
        out['num_blocks'] = tuple(int(n) for n in out['num_blocks'])
        out['width_multiplier'] = tuple(
            float(w) for w in out['width_multiplier'])
        out['stem_channels'] = int(out['stem_channels'])
        if len(out['num_blocks']) != len(out['width_multiplier']) or \
                not out['num_blocks']:
            raise ValueError(
                f'arch needs one num_blocks and width_multiplier entry per '
                f'stage; got {out["num_blocks"]} and '
                f'{out["width_multiplier"]}')
        if min(out['num_blocks']) < 1 or min(out['width_multiplier']) <= 0:
            raise ValueError(f'arch num_blocks and width_multiplier must be '
                             f'positive, got {out["num_blocks"]} and '
                             f'{out["width_multiplier"]}')
        groups = {int(k): int(v)
                  for k, v in (out['group_layer_map'] or {}).items()}
        total = sum(out['num_blocks'])
        bad = sorted(k for k in groups if not 1 <= k <= total)
        if bad:
            raise ValueError(f'group_layer_map names blocks {bad}; blocks are '
                             f'numbered 1..{total} (stage0 cannot be grouped)')
        out['group_layer_map'] = groups
        return out

    def forward(self, x):
        """Return the stage outputs selected by ``out_indices``.

        Args:
            x (Tensor): images ``(N, C, H, W)`` of any size.

        Returns:
            tuple[Tensor]: NCHW maps at strides 4, 8, 16, 32 (rounded up).
        """
        x = self._run(self.stage0, x)
        outs = []
        for i in range(self.num_stages):
            for block in getattr(self, f'stage{i + 1}'):
                x = self._run(block, x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _run(self, block, x):
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(block, x, use_reentrant=False)
        return block(x)

    def stem_and_stages(self):
        return [self.stage0], [[getattr(self, f'stage{i + 1}')]
                               for i in range(self.num_stages)]
