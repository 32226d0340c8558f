"""RepMLPNet (Ding et al., "RepMLPNet: Hierarchical Vision MLP with
Re-parameterized Locality", CVPR 2022) as a dense-prediction backbone.

Structure, parameter names and numbers follow the original release
(DingXiaoH/RepMLP ``repmlpnet.py``): a 4x4 conv embedding, four stages of
``RepMLPNetUnit`` (pre-BN -> RepMLP block, pre-BN -> conv FFN, both residual)
joined by 2x2 conv embeddings, and ``head_norm`` before a classifier.

Differences from the original, all outside the numbers it produces:

* ``partition_sizes`` is a setting of its own. Inputs of any size run: the
  image and each embedding input are zero-padded on the bottom/right to a
  multiple of the stride, and each RepMLP block pads its map to a multiple of
  its partition (see :mod:`mmrep.models.layers.repmlp_block`).
* Stage outputs (before the next embedding) are returned as NCHW maps for
  ``out_indices``; ``final_norm=True`` applies ``head_norm`` to the last one,
  which is what a classifier needs.
* The partition FC runs as a batched matrix product, and
  :meth:`RepMLPNet.reparameterize` also folds every conv-BN pair.
"""
import copy

import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from ...registry import MODELS
from ..layers import ConvBN, RepMLPBlock, to_2tuple
from .base import RepBackbone, check_out_indices


class FFNBlock(nn.Module):
    """1x1 conv-BN -> GELU -> 1x1 conv-BN."""

    def __init__(self, channels, hidden, deploy=False):
        super().__init__()
        self.ffn_fc1 = ConvBN(channels, hidden, 1, deploy=deploy)
        self.ffn_fc2 = ConvBN(hidden, channels, 1, deploy=deploy)
        self.act = nn.GELU()

    def forward(self, x):
        return self.ffn_fc2(self.act(self.ffn_fc1(x)))


class RepMLPNetUnit(nn.Module):
    """``x + RepMLP(BN(x))`` followed by ``y + FFN(BN(y))``."""

    def __init__(self, channels, partition, num_sharesets, conv_kernels,
                 gp_reduce, ffn_expand=4, deploy=False):
        super().__init__()
        self.repmlp_block = RepMLPBlock(channels, partition, num_sharesets,
                                        conv_kernels, gp_reduce, deploy)
        self.ffn_block = FFNBlock(channels, channels * ffn_expand, deploy)
        self.prebn1 = nn.BatchNorm2d(channels)
        self.prebn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        x = x + self.repmlp_block(self.prebn1(x))
        return x + self.ffn_block(self.prebn2(x))


def _pad_to_stride(x, stride):
    """Zero-pad bottom/right so a ``stride x stride`` conv drops no pixel."""
    sh, sw = stride
    pad_h, pad_w = -x.shape[-2] % sh, -x.shape[-1] % sw
    return F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x


@MODELS.register_module()
class RepMLPNet(RepBackbone):
    """RepMLPNet backbone.

    Args:
        arch (str | dict): a preset name (``'T224'``, ``'B224'``, ``'T256'``,
            ``'B256'``, ``'D256'``, ``'L256'``) or a dict with ``channels``,
            ``num_blocks``, ``sharesets`` and ``partition_sizes`` (one entry
            per stage) and optionally ``conv_kernels`` (default ``(1, 3)``),
            ``gp_reduce`` (4), ``ffn_expand`` (4), ``patch_size`` (4). The
            original constructor's names (``hs``/``ws``, ``sharesets_nums``,
            ``reparam_conv_k``, ``globalperceptron_reduce``) are accepted too.
        in_channels (int): image channels. Default: 3.
        partition_sizes (Sequence[int | tuple[int, int]], optional): the
            partition ``(h, w)`` of each stage, overriding the preset's (which
            equals the stage's map size at the preset's image resolution).
        out_indices (Sequence[int]): stages whose outputs are returned.
            Default: all four.
        final_norm (bool): apply ``head_norm`` to the last stage's output.
            Default: False.
        frozen_stages (int): freeze the conv embedding (0) and the first
            ``n`` stages with their embeddings; -1: nothing. Default: -1.
        norm_eval (bool): keep BatchNorm layers in eval mode while training.
            Default: False.
        with_cp (bool): gradient checkpointing of each unit. Default: False.
        deploy (bool): build the fused (re-parameterized) form. Default:
            False.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=...)``
            loads an mmrep, original (train or fused) or mmpretrain
            checkpoint, converting keys and form as needed.
    """

    arch_settings = {
        'T224': dict(channels=(64, 128, 256, 512), num_blocks=(2, 2, 6, 2),
                     sharesets=(1, 4, 16, 128),
                     partition_sizes=(56, 28, 14, 7)),
        'T256': dict(channels=(64, 128, 256, 512), num_blocks=(2, 2, 6, 2),
                     sharesets=(1, 4, 16, 128),
                     partition_sizes=(64, 32, 16, 8)),
        'B224': dict(channels=(96, 192, 384, 768), num_blocks=(2, 2, 12, 2),
                     sharesets=(1, 4, 32, 128),
                     partition_sizes=(56, 28, 14, 7)),
        'B256': dict(channels=(96, 192, 384, 768), num_blocks=(2, 2, 12, 2),
                     sharesets=(1, 4, 32, 128),
                     partition_sizes=(64, 32, 16, 8)),
        'D256': dict(channels=(80, 160, 320, 640), num_blocks=(2, 2, 18, 2),
                     sharesets=(1, 4, 16, 128),
                     partition_sizes=(64, 32, 16, 8)),
        'L256': dict(channels=(96, 192, 384, 768), num_blocks=(2, 2, 18, 2),
                     sharesets=(1, 4, 32, 256),
                     partition_sizes=(64, 32, 16, 8)),
    }
    arch_defaults = dict(conv_kernels=(1, 3), gp_reduce=4, ffn_expand=4,
                         patch_size=4)
    _original_names = dict(sharesets_nums='sharesets',
                           reparam_conv_k='conv_kernels',
                           globalperceptron_reduce='gp_reduce')

    def __init__(self, arch='T224', in_channels=3, partition_sizes=None,
                 out_indices=(0, 1, 2, 3), final_norm=False, frozen_stages=-1,
                 norm_eval=False, with_cp=False, deploy=False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self._build_args = dict(
            arch=copy.deepcopy(arch), in_channels=in_channels,
            partition_sizes=partition_sizes, out_indices=out_indices,
            final_norm=final_norm, frozen_stages=frozen_stages,
            norm_eval=norm_eval, with_cp=with_cp, deploy=deploy)
        self.arch = self.parse_arch(arch)
        if partition_sizes is not None:
            if len(partition_sizes) != len(self.arch['channels']):
                raise ValueError(
                    f'partition_sizes needs one entry per stage '
                    f'({len(self.arch["channels"])}), got {partition_sizes}')
            self.arch['partition_sizes'] = tuple(
                to_2tuple(p) for p in partition_sizes)
        a = self.arch
        num_stages = len(a['channels'])
        self.out_indices = check_out_indices(out_indices, num_stages)
        self.final_norm = final_norm
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.deploy = deploy
        self.patch_size = to_2tuple(a['patch_size'])

        self.conv_embedding = ConvBN(in_channels, a['channels'][0],
                                     self.patch_size, self.patch_size,
                                     act=nn.ReLU(), deploy=deploy)
        self.stages = nn.ModuleList()
        self.embeds = nn.ModuleList()
        for i in range(num_stages):
            self.stages.append(nn.ModuleList(
                RepMLPNetUnit(a['channels'][i], a['partition_sizes'][i],
                              a['sharesets'][i], a['conv_kernels'],
                              a['gp_reduce'], a['ffn_expand'], deploy)
                for _ in range(a['num_blocks'][i])))
            if i < num_stages - 1:
                self.embeds.append(ConvBN(a['channels'][i],
                                          a['channels'][i + 1], 2, 2,
                                          act=nn.ReLU(), deploy=deploy))
        # Kept whether or not it is applied, so checkpoints keep one layout.
        self.head_norm = nn.BatchNorm2d(a['channels'][-1])
        self._freeze_stages()

    @classmethod
    def parse_arch(cls, arch):
        """Resolve a preset name or dict into a complete settings dict.

        Args:
            arch (str | dict): see the class docstring.

        Returns:
            dict: channels, num_blocks, sharesets, partition_sizes (as
            ``(h, w)`` pairs), conv_kernels, gp_reduce, ffn_expand,
            patch_size.

        Raises:
            ValueError: unknown preset name, unknown or missing keys, or
                per-stage lists of different lengths.
        """
        if isinstance(arch, str):
            key = arch.upper().replace('REPMLPNET-', '').replace('-', '')
            if key not in cls.arch_settings:
                raise ValueError(f'unknown RepMLPNet arch {arch!r}; presets: '
                                 f'{sorted(cls.arch_settings)}')
            arch = cls.arch_settings[key]
        if not isinstance(arch, dict):
            raise ValueError(f'arch must be a preset name or a dict, got '
                             f'{type(arch).__name__}')
        arch = dict(arch)
        for old, new in cls._original_names.items():
            if old in arch:
                arch[new] = arch.pop(old)
        if 'hs' in arch or 'ws' in arch:
            hs, ws = arch.pop('hs', None), arch.pop('ws', None)
            if hs is None or ws is None or len(hs) != len(ws):
                raise ValueError('arch needs both hs and ws, of equal length')
            arch['partition_sizes'] = tuple(zip(hs, ws))
        per_stage = ('channels', 'num_blocks', 'sharesets', 'partition_sizes')
        allowed = set(per_stage) | set(cls.arch_defaults)
        unknown = set(arch) - allowed
        missing = set(per_stage) - set(arch)
        if unknown or missing:
            raise ValueError(
                f'malformed RepMLPNet arch dict: unknown keys '
                f'{sorted(unknown)}, missing keys {sorted(missing)}; '
                f'expected {sorted(per_stage)} plus optional '
                f'{sorted(cls.arch_defaults)}')
        lengths = {k: len(arch[k]) for k in per_stage}
        if len(set(lengths.values())) != 1:
            raise ValueError(f'arch per-stage settings differ in length: '
                             f'{lengths}')
        out = dict(cls.arch_defaults)
        out.update(arch)
        out['partition_sizes'] = tuple(
            to_2tuple(p) for p in out['partition_sizes'])
        for k in ('channels', 'num_blocks', 'sharesets'):
            out[k] = tuple(int(v) for v in out[k])
        out['conv_kernels'] = tuple(out['conv_kernels'] or ())
        return out

    def forward(self, x):
        """Return the stage outputs selected by ``out_indices``.

        Args:
            x (Tensor): images ``(N, C, H, W)`` of any size.

        Returns:
            tuple[Tensor]: NCHW maps at strides 4, 8, 16, 32 (rounded up).
        """
        x = self.conv_embedding(_pad_to_stride(x, self.patch_size))
        outs = []
        last = len(self.stages) - 1
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = self.embeds[i - 1](_pad_to_stride(x, (2, 2)))
            for unit in stage:
                if self.with_cp and x.requires_grad:
                    x = cp.checkpoint(unit, x, use_reentrant=False)
                else:
                    x = unit(x)
            if i in self.out_indices:
                outs.append(self.head_norm(x)
                            if self.final_norm and i == last else x)
        return tuple(outs)

    def stem_and_stages(self):
        return [self.conv_embedding], [
            [stage] if i == 0 else [self.embeds[i - 1], stage]
            for i, stage in enumerate(self.stages)]

    # ----------------------------------------------------------------
    # Checkpoint conversion (used by mmrep.models.checkpoint)
    # ----------------------------------------------------------------
    _mmpretrain_renames = (
        ('patch_embed.projection.', 'conv_embedding.conv.'),
        ('patch_embed.norm.', 'conv_embedding.bn.'),
        ('downsample_layers.', 'embeds.'),
        ('final_norm.', 'head_norm.'),
        ('.gp.conv1.conv.', '.gp.fc1.'),
        ('.gp.conv2.conv.', '.gp.fc2.'),
        ('.norm1.', '.prebn1.'),
        ('.norm2.', '.prebn2.'),
    )

    @classmethod
    def convert_state_dict(cls, state_dict):
        """Map an original or mmpretrain state dict onto mmrep's names.

        mmrep keeps the original release's parameter names, so original
        checkpoints pass through; the classifier's ``head.*`` is split off.

        Args:
            state_dict (dict[str, Tensor]): backbone or classifier weights,
                without any ``backbone.`` prefix.

        Returns:
            tuple[dict, dict]: backbone weights and classifier head weights
            (mmpretrain ``LinearClsHead`` names: ``fc.weight``, ``fc.bias``).
        """
        backbone, head = {}, {}
        is_mmpretrain = any(k.startswith(('patch_embed.', 'downsample_layers.'))
                            for k in state_dict)
        for key, value in state_dict.items():
            if key.startswith('head.'):
                name = key[len('head.'):]
                head[name if name.startswith('fc.') else 'fc.' + name] = value
                continue
            if is_mmpretrain:
                for old, new in cls._mmpretrain_renames:
                    key = key.replace(old, new)
            backbone[key] = value
        return backbone, head
