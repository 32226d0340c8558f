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
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...registry import MODELS
from ..layers import ConvBN, build_bn, fuse_bn, fused_conv
from .base import RepBackbone

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
            (:func:`~mmrep.models.layers.build_bn`). Default:
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

    def reparameterize(self):
        """Replace the branches by ``rbr_reparam``, in place. Equivalent in
        eval mode; does nothing when already fused."""
        if self.deploy:
            return
        conv = fused_conv(self.rbr_dense.conv, *self.fused_weights())
        for name in ('rbr_dense', 'rbr_1x1', 'rbr_identity'):
            delattr(self, name)
        self.rbr_reparam = conv
        self.deploy = True

    def extra_repr(self):
        return (f'{self.in_channels}, {self.out_channels}, '
                f'stride={self.stride}, groups={self.groups}, '
                f'deploy={self.deploy}')


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

    def __init__(self, arch='A0', in_channels=3, out_indices=(0, 1, 2, 3),
                 frozen_stages=-1, norm_eval=False, with_cp=False,
                 deploy=False, init_cfg=None, norm_cfg=dict(type='BN')):
        super().__init__(arch, out_indices, frozen_stages, norm_eval,
                         with_cp, deploy, norm_cfg, init_cfg)
        a = self.arch
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

    @classmethod
    def check_arch(cls, arch):
        """Validate a complete arch dict (see the class docstring).

        Returns:
            dict: num_blocks (tuple[int]), width_multiplier (tuple[float]),
            group_layer_map (dict[int, int]), stem_channels (int).

        Raises:
            ValueError: non-positive values, or a group map naming a block
                that does not exist.
        """
        out = dict(arch)
        out['num_blocks'] = tuple(int(n) for n in out['num_blocks'])
        out['width_multiplier'] = tuple(
            float(w) for w in out['width_multiplier'])
        out['stem_channels'] = int(out['stem_channels'])
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
