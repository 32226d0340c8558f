"""CycleMLP (Chen et al., "CycleMLP: A MLP-like Architecture for Dense
Prediction", ICLR 2022) as a dense-prediction backbone.

Structure, parameter names and numbers follow the original release
(ShoufaChen/CycleMLP ``cycle_mlp.py``, ``CycleNet``): a 7x7 stride-4 conv
embedding, four stages of ``CycleBlock`` (pre-LayerNorm -> Cycle token mixer,
pre-LayerNorm -> MLP, both residual, channels-last) joined by 3x3 stride-2
conv downsamplings, all held in ``network`` (stage ``i`` is
``network[2 * i]``, its downsampling ``network[2 * i - 1]``). The original's
dense-prediction mode normalizes each output with its own LayerNorm
(``norm0``, ``norm2``, ``norm4``, ``norm6``, named after the ``network``
index), its classification mode the last map with ``norm`` before ``head``.

Differences from the original, all outside the numbers it produces:

* Cycle FC is a per-channel shift and a 1x1 projection
  (:class:`mmrep.models.layers.CycleFC`), not a deformable convolution.
* ``out_indices`` picks the stage outputs (NCHW); each gets its per-output
  norm, except that with ``final_norm=True`` the last stage gets the
  classifier's ``norm`` instead (then the model's keys are the original
  classifier's, without ``head``).
* Images smaller than 3 pixels on a side are zero-padded bottom/right to 3
  (the original's embedding cannot run on them); every other size runs as in
  the original.
"""
import re

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log

from ...registry import MODELS
from ...utils.errors import ModelArgumentError
from ..layers import (CycleFC, cycle_stack, cycle_stack_grouped,
                      cycle_stack_rows, cycle_stack_sum)
from ..layers.tracing import exporting
from .base import RepBackbone, record_build_args
from .family import (CheckpointFamily, Source, indices, register_family,
                     rename_args, split_classifier)


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` over the last (channel) dimension."""

    def __init__(self, in_features, hidden_features, out_features=None):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class CycleTokenMixer(nn.Module):
    """The original's ``CycleMLP`` mixer: a channel FC and two Cycle FCs
    (pseudo-kernels ``(1, 3)`` and ``(3, 1)``), mixed by softmax weights
    computed from their averaged sum, then projected.

    Computed as one matrix product per sample: the softmax weights scale the
    output channels of the three FCs, and ``proj`` is linear, so
    ``proj(h * a_0 + w * a_1 + c * a_2)`` is the product of the stacked
    inputs ``[shift_w(x), shift_h(x), x, 1]`` (:func:`cycle_stack`) with the
    per-sample matrix of :meth:`mixing_matrix`. The averages that give the
    softmax weights come from the input's channel sums
    (:func:`cycle_stack_sum`), so the three FC outputs are never formed.

    Args:
        dim (int): channels.
        qkv_bias (bool): bias of the channel FC ``mlp_c``. Default: False.
    """

    def __init__(self, dim, qkv_bias=False):
        super().__init__()
        self.mlp_c = nn.Linear(dim, dim, bias=qkv_bias)
        self.sfc_h = CycleFC(dim, dim, (1, 3))
        self.sfc_w = CycleFC(dim, dim, (3, 1))
        self.reweight = Mlp(dim, dim // 4, dim * 3)
        self.proj = nn.Linear(dim, dim)

    @property
    def kernel_sizes(self):
        """Pseudo-kernels of the stacked inputs, in stacking order."""
        return self.sfc_h.kernel_size, self.sfc_w.kernel_size

    def mixing_matrix(self, x):
        """The per-sample matrix that maps the stacked inputs of ``x`` to the
        mixer's output.

        Args:
            x (Tensor): the mixer's input ``(N, H, W, C)``.

        Returns:
            Tensor: ``(N, 3 * C + 1, C)``; ``cycle_stack(x, kernel_sizes)``
            times it is ``forward(x)``.
        """
        n, c = x.shape[0], x.shape[-1]
        weight = torch.cat([
            self.sfc_h.weight.view(c, c).t(), self.sfc_w.weight.view(c, c).t(),
            self.mlp_c.weight.t()
        ]).view(3, c, c)
        biases = [self.sfc_h.bias, self.sfc_w.bias, self.mlp_c.bias]
        bias = torch.stack([b if b is not None else x.new_zeros(c)
                            for b in biases])
        mean = cycle_stack_sum(x, self.kernel_sizes)[:, :3 * c] / (
            x.shape[1] * x.shape[2])
        mean = mean @ weight.view(3 * c, c) + bias.sum(0)
        # The original lays the reweight output out as (C, 3).
        a = self.reweight(mean).reshape(n, c, 3).permute(0, 2, 1).softmax(1)
        mix = (weight * a[:, :, None, :]).view(n, 3 * c, c)
        mix_bias = (bias * a).sum(1, keepdim=True)
        proj = self.proj.weight.t()
        return torch.cat([mix @ proj, mix_bias @ proj + self.proj.bias], 1)

    def forward(self, x):
        """``x``: ``(N, H, W, C)``; returns the same shape."""
        stack = cycle_stack(x, self.kernel_sizes)
        return torch.bmm(stack.flatten(1, 2),
                         self.mixing_matrix(x)).view_as(x)


# Bytes of a piece's widest intermediate (stacked mixer inputs or MLP hidden
# activation) when a block runs without autograd: a piece stays in the CPU
# caches.
_PIECE_BYTES = 8 * 2**20
# Bytes of the MLP's hidden activation per piece under autograd: below
# glibc's 32 MiB ceiling for serving allocations from the reused heap.
_MLP_PIECE_BYTES = 16 * 2**20


class CycleBlock(nn.Module):
    """``x + mixer(LN(x)) / skip_lam``, then ``y + MLP(LN(y)) / skip_lam``
    (channels-last).

    Unless stochastic depth is active, the first residual is added by the
    mixer's matrix product itself; without autograd the block runs over
    pieces of rows (:data:`_PIECE_BYTES` of the widest intermediate; the
    ``(3, 1)`` shift reads the rows around a piece from the whole normalized
    map), so that large maps are read and written once per block instead of
    once per operation; under autograd the MLP runs over pieces of pixels
    (:data:`_MLP_PIECE_BYTES` of hidden activation each).
    """

    def __init__(self, dim, mlp_ratio=4., qkv_bias=False, drop_path=0.,
                 skip_lam=1.0):
        # (mmcv.cnn, imported when a block is built: it imports
        # mmengine.runner, which ``import mmrep`` does not need)
        from mmcv.cnn.bricks import DropPath

        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = CycleTokenMixer(dim, qkv_bias=qkv_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0. \
            else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.skip_lam = skip_lam

    def _scaled(self, x):
        return x if self.skip_lam == 1. else x / self.skip_lam

    def _mlp_residual(self, x):
        """``x + MLP(LN(x)) / skip_lam``."""
        return x + self._scaled(self.mlp(self.norm2(x)))

    def _mixer_and_mlp(self, x, stack, mix, mlp_pieces=False):
        """Both residual steps of the pixels ``x`` (``(N, P, C)``) whose
        stacked mixer inputs are ``stack`` (``(N, P, 3C + 1)``); the MLP
        over pieces (:meth:`_mlp_by_pieces`) when ``mlp_pieces``."""
        x = torch.baddbmm(x, stack, mix, alpha=1. / self.skip_lam)
        return self._mlp_by_pieces(x) if mlp_pieces else \
            self._mlp_residual(x)

    def _mlp_by_pieces(self, x):
        """``x + MLP(LN(x)) / skip_lam`` for ``(N, P, C)`` pixels, over
        pieces of pixels whose hidden activations stay below
        :data:`_MLP_PIECE_BYTES` (one piece while tracing): under autograd
        the saved activations are then many small tensors that the
        allocator reuses, not fresh pages for each large one."""
        if exporting():  # no size-dependent Python numbers
            return self._mlp_residual(x)
        n, pixels = x.shape[:2]
        hidden = self.mlp.fc1.out_features * x.element_size()
        rows = max(1, _MLP_PIECE_BYTES // (n * hidden))
        if pixels <= rows:
            return self._mlp_residual(x)
        return torch.cat([self._mlp_residual(p)
                          for p in x.split(rows, dim=1)], dim=1)

    def forward(self, x):
        if self.training and not isinstance(self.drop_path, nn.Identity):
            x = x + self.drop_path(self._scaled(self.attn(self.norm1(x))))
            return x + self.drop_path(self._scaled(self.mlp(self.norm2(x))))
        y = self.norm1(x)
        mix = self.attn.mixing_matrix(y)
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or any(
            p.requires_grad for p in self.parameters()))
        if exporting():  # ONNX: reorder the matrix, not the stack
            stack, order = cycle_stack_grouped(y, self.attn.kernel_sizes)
            return self._mixer_and_mlp(x.flatten(1, 2), stack.flatten(1, 2),
                                       mix.index_select(1, order),
                                       mlp_pieces=True).view_as(x)
        if needs_grad:
            stack = cycle_stack(y, self.attn.kernel_sizes)
            return self._mixer_and_mlp(x.flatten(1, 2), stack.flatten(1, 2),
                                       mix, mlp_pieces=True).view_as(x)
        out = torch.empty_like(x)
        n, height, width, _ = x.shape
        widest = max(mix.shape[1], self.mlp.fc1.out_features)
        rows = max(1, _PIECE_BYTES // (n * width * widest * x.element_size()))
        for top in range(0, height, rows):
            end = min(top + rows, height)
            stack = cycle_stack_rows(y, self.attn.kernel_sizes, top, end)
            stack = stack.flatten(1, 2)
            piece = self._mixer_and_mlp(x[:, top:end].flatten(1, 2), stack,
                                        mix)
            out[:, top:end] = piece.view(n, end - top, width, -1)
        return out


class PatchEmbed(nn.Module):
    """7x7 stride-4 padding-2 conv embedding (NCHW in, contiguous NHWC
    out: the convolution runs channels-last)."""

    def __init__(self, in_channels, embed_dim):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, 7, stride=4, padding=2)

    def forward(self, x):
        x = self.proj(x.contiguous(memory_format=torch.channels_last))
        return x.permute(0, 2, 3, 1).contiguous()


class Downsample(nn.Module):
    """3x3 stride-2 padding-1 conv between stages (NHWC in and out)."""

    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.proj = nn.Conv2d(in_dim, out_dim, 3, stride=2, padding=1)

    def forward(self, x):
        return self.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


@MODELS.register_module()
class CycleMLP(RepBackbone):
    """CycleMLP backbone.

    Args:
        arch (str | dict): a preset name (``'B1'`` .. ``'B5'``, also as
            ``'CycleMLP_B1'``) or a dict with ``channels``, ``num_blocks``
            and ``mlp_ratios`` (one entry per stage) and optionally
            ``qkv_bias`` (False) and ``skip_lam`` (1.0).
            (``tools/convert_checkpoint.py`` translates the original
            constructor's arguments into such a dict.)
        in_channels (int): image channels. Default: 3.
        final_norm (bool): normalize the last stage's output with ``norm``
            (the original classifier's final norm) instead of a per-output
            norm; the last stage must then be in ``out_indices``. With
            ``out_indices=(-1, )`` the model holds the original classifier's
            weights minus its head. Default: False.
        drop_path_rate (float): stochastic depth, rising linearly over all
            blocks from 0 to this value, as in the original. Default: 0.
        out_indices, frozen_stages, norm_eval, with_cp, deploy, init_cfg: the
            OpenMMLab switches, as
            :class:`~mmrep.models.backbones.base.RepBackbone` describes them.

    CycleMLP has no BatchNorm (its norms are LayerNorms, as in the original):
    it takes no ``norm_cfg`` (SyncBN settings apply to the neck and heads of
    a CycleMLP model), ``norm_eval`` keeps the LayerNorms in eval mode (which
    changes no number), and ``deploy`` is accepted so deploy configs build
    (both forms are the same). A classification checkpoint fits a
    dense-prediction model through ``init_cfg``: the per-output norms it
    lacks keep their initialization and its unused ``norm`` is dropped (both
    logged), as the original's detection and segmentation setups do.
    """

    arch_zoo = {
        'B1': dict(channels=(64, 128, 320, 512), num_blocks=(2, 2, 4, 2),
                   mlp_ratios=(4, 4, 4, 4)),
        'B2': dict(channels=(64, 128, 320, 512), num_blocks=(2, 3, 10, 3),
                   mlp_ratios=(4, 4, 4, 4)),
        'B3': dict(channels=(64, 128, 320, 512), num_blocks=(3, 4, 18, 3),
                   mlp_ratios=(8, 8, 4, 4)),
        'B4': dict(channels=(64, 128, 320, 512), num_blocks=(3, 8, 27, 3),
                   mlp_ratios=(8, 8, 4, 4)),
        'B5': dict(channels=(96, 192, 384, 768), num_blocks=(3, 4, 24, 3),
                   mlp_ratios=(4, 4, 4, 4)),
    }
    arch_keys = ('channels', 'num_blocks', 'mlp_ratios')
    arch_defaults = dict(qkv_bias=False, skip_lam=1.0)
    # CycleMLP's norms are LayerNorms (no BatchNorm at all).
    norm_eval_types = (nn.LayerNorm, nn.GroupNorm)

    @record_build_args
    def __init__(self, arch='B1', in_channels=3, out_indices=(0, 1, 2, 3),
                 final_norm=False, drop_path_rate=0., frozen_stages=-1,
                 norm_eval=False, with_cp=False, deploy=False, init_cfg=None):
        super().__init__(arch, out_indices, frozen_stages, norm_eval,
                         with_cp, deploy, None, init_cfg, in_channels)
        a, num_stages = self.arch, self.num_stages
        if final_norm and num_stages - 1 not in self.out_indices:
            raise ModelArgumentError(
                f'final_norm normalizes the last stage, which is '
                f'not in out_indices {tuple(out_indices)}')
        if not 0. <= drop_path_rate < 1.:
            raise ModelArgumentError(f'drop_path_rate must be in [0, 1), got '
                             f'{drop_path_rate}')
        self.final_norm = final_norm

        self.patch_embed = PatchEmbed(in_channels, a['channels'][0])
        total = sum(a['num_blocks'])
        network, start = [], 0
        for i in range(num_stages):
            dim = a['channels'][i]
            network.append(nn.Sequential(*[
                CycleBlock(dim, a['mlp_ratios'][i], a['qkv_bias'],
                           drop_path_rate * (start + j) / max(total - 1, 1),
                           a['skip_lam'])
                for j in range(a['num_blocks'][i])]))
            start += a['num_blocks'][i]
            if i < num_stages - 1:
                network.append(Downsample(dim, a['channels'][i + 1]))
        self.network = nn.ModuleList(network)
        for i in self.out_indices:
            self.add_module(self._out_norm_name(i),
                            nn.LayerNorm(a['channels'][i]))
        self.apply(self._init_like_original)
        self._freeze_stages()

    def _out_norm_name(self, stage):
        if self.final_norm and stage == len(self.arch['channels']) - 1:
            return 'norm'
        return f'norm{2 * stage}'

    @staticmethod
    def _init_like_original(m):
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, CycleFC):
            nn.init.trunc_normal_(m.weight, std=.02)
            nn.init.zeros_(m.bias)

    @classmethod
    def check_arch(cls, arch):
        """Validate a complete arch dict (see the class docstring).

        Returns:
            dict: channels, num_blocks, mlp_ratios (tuples, one entry per
            stage), qkv_bias, skip_lam.

        Raises:
            ModelArgumentError: non-positive values.
        """
        out = dict(arch)
        for k in ('channels', 'num_blocks'):
            out[k] = tuple(int(v) for v in out[k])
        out['mlp_ratios'] = tuple(float(v) for v in out['mlp_ratios'])
        if (min(out['channels']) < 1 or min(out['num_blocks']) < 0
                or min(out['mlp_ratios']) <= 0):
            raise ModelArgumentError(
                f'arch needs positive channels and mlp_ratios '
                f'and non-negative num_blocks, got {out}')
        if min(c // 4 for c in out['channels']) < 1:
            raise ModelArgumentError(f'channels must be at least 4 (the mixer '
                                     f'reweights through channels // 4), got '
                                     f'{out["channels"]}')
        out['qkv_bias'] = bool(out['qkv_bias'])
        out['skip_lam'] = float(out['skip_lam'])
        return out

    def forward(self, x):
        """Return the stage outputs selected by ``out_indices``.

        Args:
            x (Tensor): images ``(N, C, H, W)`` of any size.

        Returns:
            tuple[Tensor]: normalized NCHW maps of stage ``i`` at stride
            ``4 * 2 ** i`` (sizes ``floor((H + 1) / 4)``, then halved
            rounding up).
        """
        if x.dim() != 4:
            raise ValueError(f'CycleMLP expects (N, C, H, W) images, got '
                             f'shape {tuple(x.shape)}')
        pad_h, pad_w = max(0, 3 - x.shape[-2]), max(0, 3 - x.shape[-1])
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = self.patch_embed(x)
        outs = []
        for i in range(len(self.arch['channels'])):
            if i > 0:
                x = self.network[2 * i - 1](x)
            for block in self.network[2 * i]:
                x = self.run_block(block, x)
            if i in self.out_indices:
                norm = getattr(self, self._out_norm_name(i))
                outs.append(norm(x).permute(0, 3, 1, 2).contiguous())
        return tuple(outs)

    def stem_and_stages(self):
        stages = []
        for i in range(len(self.arch['channels'])):
            group = [self.network[2 * i]]
            if i > 0:
                group.insert(0, self.network[2 * i - 1])
            if i in self.out_indices:
                group.append(getattr(self, self._out_norm_name(i)))
            stages.append(group)
        return [self.patch_embed], stages


# ---------------------------------------------------------------------------
# checkpoint source: the original release
# ShoufaChen/CycleMLP ``cycle_mlp.py``: ``CycleNet(...)`` and its
# checkpoints (classification, and the dense-prediction backbones' per-output
# norms ``norm0`` .. ``norm6``). mmrep keeps its names; its classifier is
# ``head``, after ``norm``.
# ---------------------------------------------------------------------------
#: The original's arch arguments -> mmrep's arch keys.
ORIGINAL_ARCH_NAMES = dict(embed_dims='channels', layers='num_blocks')
#: The original's arguments that belong to the classifier or the input
#: pipeline, not to the backbone's arch.
ORIGINAL_DROPPED = ('img_size', 'patch_size', 'in_chans', 'segment_dim',
                    'qk_scale', 'drop_rate', 'attn_drop_rate')
#: The top-level output norms: ``norm`` (a classifier's) and ``norm{2i}``
#: (per returned stage).
_OUT_NORM = re.compile(r'^norm(\d*)\.')


def from_original_kwargs(kwargs):
    """The mmrep settings of an original ``CycleNet(...)``:
    ``embed_dims`` -> ``channels``, ``layers`` -> ``num_blocks``;
    ``transitions`` must downsample after every stage but the last (mmrep's
    only layout) and is dropped, as are :data:`ORIGINAL_DROPPED`;
    ``num_classes`` goes to the classifier.

    Args:
        kwargs (dict): the original's constructor arguments.

    Returns:
        tuple[dict, int | None]: ``dict(arch=...)`` and the number of
        classes (None where not given).

    Raises:
        ModelArgumentError: an argument under both names, or a
            ``transitions`` list that does not downsample between every two
            stages.
    """
    arch = rename_args(kwargs, ORIGINAL_ARCH_NAMES, ORIGINAL_DROPPED)
    num_classes = arch.pop('num_classes', None)
    if 'transitions' in arch:
        transitions = arch.pop('transitions')
        num_stages = len(arch.get('channels', arch.get('num_blocks', ())))
        if (len(transitions) < num_stages - 1
                or not all(transitions[:num_stages - 1])):
            raise ModelArgumentError(
                f'transitions {list(transitions)}: every stage but the '
                f'last must end with a (stride-2) downsampling, as the '
                f'original requires')
    return dict(arch=arch), num_classes


def read_arch(state):
    """The arch dict of converted CycleMLP weights, from their names and
    shapes (``skip_lam`` takes mmrep's default, 1.0).

    Args:
        state (dict[str, Tensor]): converted backbone weights.

    Returns:
        dict: the arch.

    Raises:
        KeyError | ValueError: the weights are not laid out as CycleMLP's.
    """
    stages = indices(state, r'network\.(\d+)\.0\.norm1\.weight$')
    channels, blocks, ratios = [], [], []
    for i in stages:
        c = int(state[f'network.{i}.0.norm1.weight'].shape[0])
        channels.append(c)
        blocks.append(len(indices(state, rf'network\.{i}\.(\d+)\.norm1\.')))
        ratios.append(int(state[f'network.{i}.0.mlp.fc1.weight'].shape[0]
                          // c))
    if not stages or stages != list(range(0, 2 * len(stages), 2)):
        raise ValueError('stages')
    return dict(channels=tuple(channels), num_blocks=tuple(blocks),
                mlp_ratios=tuple(ratios),
                qkv_bias='network.0.0.attn.mlp_c.bias' in state)


def classifier_kwargs(backbone_state=None, num_stages=4):
    """Backbone arguments of a CycleMLP classifier: the last stage through
    ``norm``; weights with per-output norms and no ``norm`` (the original's
    dense-prediction form) describe a backbone returning every stage."""
    if backbone_state is None or 'norm.weight' in backbone_state:
        return dict(final_norm=True)
    return dict(out_indices=tuple(range(num_stages)))


def reconcile_output_norms(backbone, state):
    """Reconcile CycleMLP's output norms of a checkpoint with the model's.

    Top-level norms the model does not have (a classifier's ``norm`` in a
    dense-prediction model, or per-output norms of stages it does not
    return) are dropped; per-output norms ``norm{2i}`` the checkpoint
    lacks (a classification checkpoint in a dense-prediction model) keep
    the model's current values. Both are logged. Everything else must fit
    as it is.

    Args:
        backbone (CycleMLP): the model.
        state (dict[str, Tensor]): converted backbone weights.

    Returns:
        dict[str, Tensor]: the adapted weights.
    """
    expected = backbone.state_dict()
    dropped = sorted(k for k in state
                     if _OUT_NORM.match(k) and k not in expected)
    kept = sorted(k for k in expected
                  if k not in state and _OUT_NORM.match(k)
                  and _OUT_NORM.match(k).group(1))
    if not dropped and not kept:
        return state
    state = {k: v for k, v in state.items() if k not in dropped}
    state.update({k: expected[k] for k in kept})
    name = type(backbone).__name__
    if dropped:
        print_log(f'{name}: dropped checkpoint norms the model does not '
                  f'use: {dropped}', logger='current')
    if kept:
        print_log(f'{name}: the checkpoint has no {kept}; these output '
                  f'norms keep their initialization', logger='current')
    return state
# ------------------- end of checkpoint source: the original release --------


# ---------------------------------------------------------------------------
# checkpoint source: Paddle-CycleMLP
# huangshenneng/Paddle-CycleMLP ``cycle_mlp.py`` (at 6728f3e), its
# ``CycleNet(...)`` and its ``paddle.save(model.state_dict())`` files.
#
# The port computes what the original release computes: the same model,
# line for line, with Paddle's ``deform_conv2d`` for Cycle FC (the same
# fixed integer offsets, one deformable group per channel, and the same
# zero reads outside the map, so the same per-channel shifts), Paddle's
# exact GELU and LayerNorm eps 1e-5: no option is needed. Its names are the
# original's; its Linear weights are stored (in, out).
# ---------------------------------------------------------------------------
#: The port's (the original's) arch arguments -> mmrep's arch keys.
PADDLE_ARCH_NAMES = dict(layers='num_blocks', embed_dims='channels',
                         mlp_ratios='mlp_ratios', skip_lam='skip_lam',
                         qkv_bias='qkv_bias')
#: The port's arguments that change no number in eval mode, are ignored by
#: its code (``img_size``, ``patch_size``, ``in_chans``, ``segment_dim``,
#: ``qk_scale``) or are classes, not data.
PADDLE_DROPPED = ('num_classes', 'img_size', 'patch_size', 'in_chans',
                  'segment_dim', 'qk_scale', 'drop_rate', 'attn_drop_rate',
                  'drop_path_rate', 'norm_layer', 'mlp_fn', 'fork_feat',
                  'transitions')


def from_paddle_kwargs(port_kwargs):
    """The mmrep settings of a Paddle-CycleMLP ``CycleNet(...)``.

    The port's names are the original's (translated as
    :data:`mmrep.checkpoints.conversion.ORIGINAL_ARCH_NAMES` does:
    :data:`PADDLE_ARCH_NAMES`); :data:`PADDLE_DROPPED` leave the arch. Like
    the original, the port's embedding always takes 3 image channels,
    whatever ``in_chans`` says. ``fork_feat=True`` (per-stage norms, no
    classifier) gives a backbone returning every stage.

    Args:
        port_kwargs (dict): the port's constructor arguments.

    Returns:
        tuple[dict, int | None]: the :class:`CycleMLP` constructor arguments
        (a classifier's backbone: the last stage through ``norm``) and the
        number of classes (None for ``fork_feat``).

    Raises:
        ModelArgumentError: a stage but the last without a (stride-2)
            transition (mmrep's only layout), or an argument the port does
            not take.
    """
    fork_feat = bool(port_kwargs.get('fork_feat', False))
    num_classes = None if fork_feat else \
        int(port_kwargs.get('num_classes', 1000))
    unknown = sorted(set(port_kwargs) - set(PADDLE_ARCH_NAMES) -
                     set(PADDLE_DROPPED))
    if unknown:
        raise ModelArgumentError(
            f'Paddle-CycleMLP CycleNet takes no {unknown}')
    arch = {new: port_kwargs[old] for old, new in PADDLE_ARCH_NAMES.items()
            if old in port_kwargs}
    arch = {k: tuple(v) if isinstance(v, list) else v
            for k, v in arch.items()}
    num_stages = len(arch['num_blocks'])
    transitions = list(port_kwargs.get('transitions') or ())
    if len(transitions) < num_stages - 1 or \
            not all(transitions[:num_stages - 1]):
        raise ModelArgumentError(
            f'transitions {transitions}: every stage but the '
            f'last must end with a (stride-2) downsampling')
    if fork_feat:
        outputs = dict(out_indices=tuple(range(num_stages)))
    else:
        outputs = dict(out_indices=(-1, ), final_norm=True)
    return dict(arch=arch, **outputs), num_classes


def from_paddle_state_dict(port_state):
    """Paddle-CycleMLP weights as mmrep backbone and classifier weights.

    Every name is the original's, which mmrep keeps (Cycle FC ``offset``
    buffers included; they hold the original's offsets); ``head.*`` becomes
    the classifier's ``fc.*``. Every 2-D ``weight`` is a Linear layer's,
    stored (in, out) by Paddle, and is transposed. Entries that are not
    arrays (Paddle's ``StructuredToParameterName@@`` name table) are
    dropped.

    Args:
        port_state (dict[str, Tensor | numpy.ndarray]): the port's weights.

    Returns:
        tuple[dict, dict]: backbone weights and head weights (``fc.weight``,
        ``fc.bias``, mmpretrain's ``LinearClsHead`` names).
    """
    backbone, head = {}, {}
    for key, value in port_state.items():
        if not hasattr(value, 'shape'):
            continue
        value = torch.as_tensor(value)
        if key.endswith('.weight') and value.dim() == 2:
            value = value.t().contiguous()
        if key.startswith('head.'):
            head['fc.' + key[len('head.'):]] = value
        else:
            backbone[key] = value
    return backbone, head
# ------------------------ end of checkpoint source: Paddle-CycleMLP ----------


register_family(CheckpointFamily(
    name='cyclemlp', model=CycleMLP, display='CycleMLP-{}',
    sources=(
        Source('original', split_classifier, from_original_kwargs),
        Source('paddle', from_paddle_state_dict, from_paddle_kwargs,
               framework='paddle', label='Paddle-CycleMLP', port=True),
    ),
    train_only_markers=(),
    classifier_kwargs=classifier_kwargs, read_arch=read_arch,
    adapt=reconcile_output_norms))
