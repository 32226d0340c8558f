"""RepMLPNet (Ding et al., "RepMLPNet: Hierarchical Vision MLP with
Re-parameterized Locality", CVPR 2022) as a dense-prediction backbone.

Structure, parameter names and numbers follow the original release
(DingXiaoH/RepMLP ``repmlpnet.py``): a 4x4 conv embedding, four stages of
``RepMLPNetUnit`` (pre-BN -> RepMLP block, pre-BN -> conv FFN, both residual)
joined by 2x2 conv embeddings, and ``head_norm`` before a classifier.

A RepMLP block (:class:`RepMLPBlock`) mixes information at three ranges:

* global perceptron: a squeeze-and-excitation style channel gate from the
  average of the whole map;
* partition perceptron ``fc3``: a fully-connected layer over each ``h x w``
  partition, with weights shared by channel groups (``num_sharesets`` sets);
* local perceptron: depthwise ``k x k`` conv + BN branches inside each
  partition, which Locality Injection (:meth:`RepMLPBlock.reparameterize`)
  merges into ``fc3`` after training.

Any input size runs. A map whose height or width is not a multiple of the
partition is zero-padded on the bottom and right to the next multiple (a map
smaller than one partition becomes one partition), processed, and cropped
back. The global perceptron always averages the unpadded map.

Differences from the original:

* Partition order (``partition_order``). The original block's
  ``partition_affine`` (and mmpretrain's copy) reads the partition FC's
  output rows, ordered ``(N, h_parts, w_parts, C/S)``, as if they were
  ordered ``(N, C/S, h_parts, w_parts)``: on a stage map of several
  partitions, with more than one channel per share set, one partition's
  result (for one channel group) is moved to another partition's place.
  mmrep keeps every partition's result in place (``'spatial'``, the default,
  the block the paper describes and what dense prediction needs);
  ``partition_order='original'`` reproduces the release's order exactly, in
  the train-time and fused forms, with padding and at any input size, for
  weights trained with the original code on multi-partition maps. With one
  partition per stage map (every ImageNet preset at its own resolution) both
  orders compute exactly what the original does.
* ``partition_sizes`` is a setting of its own. Inputs of any size run: the
  image and each embedding input are zero-padded on the bottom/right to a
  multiple of the stride, and each RepMLP block pads its map to a multiple of
  its partition (see above). ``embed_rounding='floor'`` makes the embeddings
  drop that remainder instead, as the original's unpadded strided
  convolutions do.
* Stage outputs (before the next embedding) are returned as NCHW maps for
  ``out_indices``; ``final_norm=True`` applies ``head_norm`` to the last one,
  which is what a classifier needs.
* The partition FC runs as matrix products, not a grouped convolution, and
  the fused form also folds every conv-BN pair and each unit's ``prebn2``
  into ``ffn_fc1`` (so the fused form has no ``prebn2``;
  fused checkpoints that keep it are folded on load). For inference on the
  CPU those products, and the fused FFN's, run on oneDNN
  (:mod:`mmrep.models.layers.linear`).

MindCV's port (``mindcv/models/repmlp.py``) computes the FFN's GELU in its
tanh approximation (MindSpore's default), which ``gelu_approximate='tanh'``
reproduces; :func:`from_mindcv_kwargs` and :func:`from_mindcv_state_dict`
(end of this file) translate its arguments and weights.
"""
import logging
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.utils import to_2tuple

from ...registry import MODELS
from ...utils.errors import ModelArgumentError
from ..layers import (ConvBN, Reparameterizable, build_bn, conv_to_fc,
                      fold_input_bn, fuse_bn, fused_conv, pad_to_partition,
                      pop_bn_state)
from ..layers.linear import grouped_linear, linear, onednn_usable
from ..layers.resample import resample_fc3_state
from ..layers.tracing import exporting
from .base import (RepBackbone, is_positive_int, positive_ints,
                   record_build_args)
from .family import (CheckpointFamily, Source, has_key_prefix, indices,
                     register_family, rename_args, renamer,
                     split_classifier, torch_bn_name)


PARTITION_ORDERS = ('spatial', 'original')


class GlobalPerceptron(nn.Module):
    """Channel gate: ``sigmoid(fc2(relu(fc1(mean(x)))))``.

    Args:
        channels (int): input and output channels.
        reduce (int): squeeze ratio; ``fc1`` has ``channels // reduce``
            outputs (the original's width).
        hidden (int, optional): ``fc1``'s outputs instead (mmpretrain rounds
            ``channels // reduce`` to a multiple of 8).
    """

    def __init__(self, channels, reduce=4, hidden=None):
        super().__init__()
        hidden = channels // reduce if hidden is None else hidden
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x):
        # Linear layers on (N, C): the 1x1 convs on a 1x1 map, cheaper.
        v = x.mean((2, 3))
        v = F.relu(F.linear(v, self.fc1.weight.flatten(1), self.fc1.bias))
        v = F.linear(v, self.fc2.weight.flatten(1), self.fc2.bias)
        return torch.sigmoid(v).reshape(*v.shape, 1, 1)


class RepMLPBlock(Reparameterizable, nn.Module):
    """RepMLP block with global, partition and local perceptrons.

    Args:
        channels (int): input and output channels.
        partition (int | tuple[int, int]): partition size ``(h, w)``.
        num_sharesets (int): channel groups sharing one ``fc3``; must
            divide ``channels``.
        conv_kernels (Sequence[int] | None): kernel sizes of the local
            perceptron branches (odd). Default: ``(1, 3)``.
        gp_reduce (int): squeeze ratio of the global perceptron.
        deploy (bool): build the fused form (``fc3`` with bias, no BN and no
            conv branches) directly.
        norm_cfg (dict, optional): config of ``fc3_bn`` and the conv
            branches' BNs. Default: ``dict(type='BN')``.
        partition_order (str): ``'spatial'`` (every partition's result stays
            in place) or ``'original'`` (the original release's row order,
            see the module docstring). Default: ``'spatial'``.
        gp_channels (int, optional): the global perceptron's hidden width;
            None: ``channels // gp_reduce``.
    """

    def __init__(self, channels, partition, num_sharesets=1,
                 conv_kernels=(1, 3), gp_reduce=4, deploy=False,
                 norm_cfg=None, partition_order='spatial', gp_channels=None):
        super().__init__()
        if partition_order not in PARTITION_ORDERS:
            raise ModelArgumentError(
                f'partition_order must be one of '
                f'{PARTITION_ORDERS}, got {partition_order!r}')
        self.partition_order = partition_order
        self.h, self.w = to_2tuple(partition)
        if channels % num_sharesets:
            raise ModelArgumentError(
                f'num_sharesets={num_sharesets} must divide '
                f'channels={channels}')
        for k in conv_kernels or ():
            if k % 2 == 0:
                raise ModelArgumentError(
                    f'conv kernel sizes must be odd, got {k}')
        self.channels = channels
        self.num_sharesets = num_sharesets
        self.conv_kernels = tuple(conv_kernels or ())
        self.deploy = deploy
        self.gp = GlobalPerceptron(channels, gp_reduce, gp_channels)
        hw = self.h * self.w
        # Stored as the original's grouped 1x1 convolution so that original
        # checkpoints load unchanged; applied as S matrix products
        # (:func:`~mmrep.models.layers.linear.grouped_linear`).
        self.fc3 = nn.Conv2d(num_sharesets * hw, num_sharesets * hw, 1,
                             groups=num_sharesets, bias=deploy)
        if not deploy:
            self.fc3_bn = build_bn(norm_cfg, num_sharesets)
            for k in self.conv_kernels:
                self.add_module(f'repconv{k}',
                                ConvBN(num_sharesets, num_sharesets, k,
                                       padding=k // 2, groups=num_sharesets,
                                       norm_cfg=norm_cfg))

    def forward(self, x, identity=None):
        """Apply the block; ``identity`` (the unit's residual) is added in
        the same pass as the gate.

        Args:
            x (Tensor): ``(N, C, H, W)`` input.
            identity (Tensor, optional): ``(N, C, H, W)`` tensor to add.

        Returns:
            Tensor: ``identity + block(x)``, or ``block(x)``.
        """
        N, C, H, W = x.shape
        h, w, S = self.h, self.w, self.num_sharesets
        gate = self.gp(x)
        x = pad_to_partition(x, h, w)
        Hp, Wp = x.shape[-2:]
        hp, wp = Hp // h, Wp // w
        # (N, C, Hp, Wp) -> (N, hp, wp, C, h, w): one row per partition; a
        # view when the map is one partition.
        parts = x.reshape(N, C, hp, h, wp, w).permute(0, 2, 4, 1, 3, 5)
        rows = parts.reshape(-1, S, h * w).transpose(0, 1)  # (S, M, hw)
        # Channel s of every row uses fc3 group s.
        weight = self.fc3.weight.reshape(S, h * w, h * w)
        if self.deploy:
            out = grouped_linear(rows, weight,
                                 self.fc3.bias.reshape(S, h * w))
            out = out.transpose(0, 1)  # (M, S, hw), a view
        else:
            # weight @ rows^T: the weight's gradient is then computed in
            # the parameter's own layout, not as a transposed copy.
            out = torch.bmm(weight, rows.transpose(1, 2)).permute(2, 0, 1)
            out = self.fc3_bn(out.reshape(-1, S, h, w))
            if self.conv_kernels:
                out = out.reshape(-1, C, h, w) + self.local_perceptron(
                    x, hp, wp)
        out = self.partitions_to_map(out, N, hp, wp)
        if exporting() or Hp != H or Wp != W:
            out = out.reshape(N, C, Hp, Wp)[:, :, :H, :W]
        else:  # stay in the blocked layout; the result is NCHW-contiguous
            gate = gate.reshape(N, C // S, S, 1, 1, 1, 1)
            if identity is not None:
                identity = identity.reshape(out.shape)
        out = out * gate if identity is None else \
            torch.addcmul(identity, out, gate)
        return out.reshape(N, C, H, W)

    def local_perceptron(self, x, hp, wp):
        """The conv branches (each conv with its BN) summed, per partition.

        Computed on the partitions as channels-last images of all ``C``
        channels: the depthwise kernel of share set ``s`` is repeated for
        the channels ``c`` with ``c % S == s``, and each BN (its own module,
        so SyncBN synchronizes) normalizes its ``S`` share sets over a
        channels-last ``(1, S, pixels * C/S, 1)`` view, so
        every statistic is the one the ``(M, S, h, w)`` branch input gives
        (the original's layout, in which the convolutions see ``M`` images
        of ``S`` channels and run many times slower on the CPU).

        Args:
            x (Tensor): the padded ``(N, C, hp*h, wp*w)`` map.
            hp (int): partitions per column.
            wp (int): partitions per row.

        Returns:
            Tensor: ``(N*hp*wp, C, h, w)``, channels-last.
        """
        # C from the module, not the input: a traced export then sees a
        # kernel of known shape (TorchScript's exporter refuses others).
        N, C = x.shape[0], self.channels
        h, w, S = self.h, self.w, self.num_sharesets
        local = x.reshape(N, C, hp, h, wp, w).permute(0, 2, 4, 3, 5, 1)
        local = local.reshape(-1, h, w, C).permute(0, 3, 1, 2)
        out = 0
        for k in self.conv_kernels:
            branch = getattr(self, f'repconv{k}')
            y = F.conv2d(local, branch.conv.weight.repeat(C // S, 1, 1, 1),
                         padding=k // 2, groups=C)
            # (P, h, w, C) rows of S share sets, R = P*h*w*C/S of them, as
            # a channels-last (1, S, R, 1) map: the branch's own BN (BN or
            # SyncBN) normalizes it with its channels-last kernel, which
            # reduces the rows many times faster than an (R, S, 1, 1) batch.
            rows = y.permute(0, 2, 3, 1)
            y = branch.bn(rows.reshape(1, -1, 1, S).permute(0, 3, 1, 2))
            out = out + y.permute(0, 2, 3, 1).reshape(rows.shape).permute(
                0, 3, 1, 2)
        return out

    def partitions_to_map(self, out, N, hp, wp):
        """Put the partition FC's output rows back in place.

        Args:
            out (Tensor): ``(M, S, h, w)`` (or ``(M, S, h*w)``), rows ordered
                ``(N, hp, wp, C/S)``.
            N (int): batch size.
            hp (int): partitions per column.
            wp (int): partitions per row.

        Returns:
            Tensor: ``(N, C/S, S, hp, h, wp, w)``, which reshapes to the
            ``(N, C, hp*h, wp*w)`` map; rows are read in the order
            :attr:`partition_order` names (see the module docstring).
        """
        h, w, S = self.h, self.w, self.num_sharesets
        groups = self.channels // S
        if self.partition_order == 'original':
            out = out.reshape(N, groups, hp, wp, S, h, w)
            return out.permute(0, 1, 4, 2, 5, 3, 6)
        out = out.reshape(N, hp, wp, groups, S, h, w)
        return out.permute(0, 3, 4, 1, 5, 2, 6)

    def fused_weights(self):
        """Locality Injection: the single ``fc3`` equivalent to the branches
        (differentiable; BN running statistics, i.e. eval mode).

        Returns:
            tuple[Tensor, Tensor]: weight ``(S*h*w, h*w, 1, 1)``, bias
            ``(S*h*w,)``.
        """
        if self.deploy:
            return self.fc3.weight, self.fc3.bias
        weight, bias = fuse_bn(self.fc3.weight, self.fc3_bn)
        weight = weight.reshape(weight.size(0), -1)
        for k in self.conv_kernels:
            kernel, k_bias = getattr(self, f'repconv{k}').fused_weights()
            fc_w, fc_b = conv_to_fc(kernel, k_bias, kernel.size(0), self.h,
                                    self.w)
            weight = weight + fc_w
            bias = bias + fc_b
        return weight.reshape(*self.fc3.weight.shape), bias

    def fuse_own(self):
        """Merge BN and conv branches into ``fc3`` in place (deploy form)."""
        if self.deploy:
            return
        self.fc3 = fused_conv(self.fc3, *self.fused_weights())
        del self.fc3_bn
        for k in self.conv_kernels:
            delattr(self, f'repconv{k}')
        self.deploy = True


class FFNBlock(nn.Module):
    """1x1 conv-BN -> GELU -> 1x1 conv-BN.

    The fused form runs on the CPU as two products over the pixels' channel
    vectors (:func:`~mmrep.models.layers.linear.linear`, GELU in the first):
    a 1x1 convolution on an NCHW map is slower there than transposing the
    map, multiplying and transposing back.

    ``gelu_approximate`` is ``nn.GELU``'s ``approximate``: ``'none'`` (the
    exact, erf form, the original's) or ``'tanh'``.
    """

    def __init__(self, channels, hidden, deploy=False, norm_cfg=None,
                 gelu_approximate='none'):
        super().__init__()
        self.ffn_fc1 = ConvBN(channels, hidden, 1, deploy=deploy,
                              norm_cfg=norm_cfg)
        self.ffn_fc2 = ConvBN(hidden, channels, 1, deploy=deploy,
                              norm_cfg=norm_cfg)
        self.act = nn.GELU(approximate=gelu_approximate)

    def forward(self, x, identity=None):
        """Apply the FFN; ``identity`` (the unit's residual) is added.

        Args:
            x (Tensor): ``(N, C, H, W)`` input.
            identity (Tensor, optional): ``(N, C, H, W)`` tensor to add.

        Returns:
            Tensor: ``identity + ffn(x)``, or ``ffn(x)``.
        """
        fc1, fc2 = self.ffn_fc1.conv, self.ffn_fc2.conv
        if (self.ffn_fc1.deploy and self.ffn_fc2.deploy
                and onednn_usable(x, fc1.weight)):
            N, C, H, W = x.shape
            rows = x.permute(0, 2, 3, 1).reshape(-1, C)
            act = 'gelu' if self.act.approximate == 'none' else 'gelu_tanh'
            rows = linear(rows, fc1.weight.flatten(1), fc1.bias, act=act)
            rows = linear(rows, fc2.weight.flatten(1), fc2.bias)
            y = rows.reshape(N, H, W, C).permute(0, 3, 1, 2)
        else:
            y = self.ffn_fc2(self.act(self.ffn_fc1(x)))
        # identity first: the sum then takes its (NCHW-contiguous) layout.
        return y if identity is None else identity + y


class RepMLPNetUnit(Reparameterizable, nn.Module):
    """``x + RepMLP(BN(x))`` followed by ``y + FFN(BN(y))``.

    In the fused form ``prebn2`` is folded into ``ffn_fc1`` (a 1x1 conv
    without padding, so the fold is exact) and becomes an identity.
    ``prebn1`` stays: the partition FC shares its weights across the channels
    of a share set (a per-channel scale cannot enter them) and sees the zero
    padding of partial partitions, where a folded BN shift would be wrong.
    """

    def __init__(self, channels, partition, num_sharesets, conv_kernels,
                 gp_reduce, ffn_expand=4, deploy=False, norm_cfg=None,
                 partition_order='spatial', gelu_approximate='none',
                 gp_channels=None):
        super().__init__()
        self.repmlp_block = RepMLPBlock(
            channels, partition, num_sharesets, conv_kernels, gp_reduce,
            deploy, norm_cfg=norm_cfg, partition_order=partition_order,
            gp_channels=gp_channels)
        self.ffn_block = FFNBlock(channels, channels * ffn_expand, deploy,
                                  norm_cfg, gelu_approximate)
        self.prebn1 = build_bn(norm_cfg, channels)
        self.prebn2 = nn.Identity() if deploy else build_bn(norm_cfg,
                                                            channels)

    def forward(self, x):
        x = self.repmlp_block(self.prebn1(x), identity=x)
        return self.ffn_block(self.prebn2(x), identity=x)

    @property
    def deploy(self):
        """Whether ``prebn2`` is folded (the unit's own fused form)."""
        return isinstance(self.prebn2, nn.Identity)

    def fuse_own(self):
        """Fold ``prebn2`` into ``ffn_fc1``, in place; the RepMLP block and
        the FFN's conv-BN pairs below are fused by then
        (:meth:`~mmrep.models.layers.Reparameterizable.reparameterize`)."""
        if self.deploy:
            return
        conv = self.ffn_block.ffn_fc1.conv
        conv.weight.data, conv.bias.data = (
            t.detach() for t in fold_input_bn(conv.weight, conv.bias,
                                              self.prebn2))
        self.prebn2 = nn.Identity()


def _preset(channels, num_blocks, sharesets, partition_sizes):
    return dict(channels=channels, num_blocks=num_blocks, sharesets=sharesets,
                partition_sizes=partition_sizes)


# Stage partitions of the 224 and 256 presets: the stage maps at that size.
_P224, _P256 = (56, 28, 14, 7), (64, 32, 16, 8)


def _pad_to_stride(x, stride):
    """Zero-pad bottom/right so a ``stride x stride`` conv drops no pixel."""
    sh, sw = stride
    pad_h, pad_w = -x.shape[-2] % sh, -x.shape[-1] % sw
    traced = exporting()  # ONNX export: pad at any size
    return F.pad(x, (0, pad_w, 0, pad_h)) if traced or pad_h or pad_w else x


def _crop_to_stride(x, stride):
    """Drop the bottom rows / right columns that do not fill a stride (what
    a ``stride x stride`` conv without padding leaves unread)."""
    sh, sw = stride
    return x[..., :x.shape[-2] // sh * sh, :x.shape[-1] // sw * sw]


#: How the embeddings treat a map that is not a multiple of their stride.
EMBED_ROUNDINGS = {'ceil': _pad_to_stride, 'floor': _crop_to_stride}


def stage_maps(image_size, patch_size, num_stages, floor=False):
    """The map size of each stage of a RepMLPNet for an image size.

    Args:
        image_size (tuple[int, int]): ``(H, W)``.
        patch_size (tuple[int, int]): the conv embedding's stride.
        num_stages (int): the number of stages (2x2 embeddings between).
        floor (bool): round maps down (``embed_rounding='floor'``) instead
            of up. Default: False.

    Returns:
        list[tuple[int, int]]: ``(h, w)`` per stage.
    """
    def div(n, d):
        return n // d if floor else -(-n // d)

    h, w = div(image_size[0], patch_size[0]), div(image_size[1], patch_size[1])
    sizes = []
    for i in range(num_stages):
        if i:
            h, w = div(h, 2), div(w, 2)
        sizes.append((h, w))
    return sizes


def fitted_partitions(map_sizes, limits):
    """The partitions of ``partition_sizes='auto'``: each stage map split
    into the fewest equal partitions no larger than a limit.

    Along each side ``n`` with limit ``l``: ``k = ceil(n / l)`` partitions of
    ``ceil(n / k)``, so a block pads its map by fewer than ``k`` rows or
    columns (none where ``k`` divides ``n``), and a map no larger than the
    limit is one partition.

    Args:
        map_sizes (Sequence[tuple[int, int]]): ``(h, w)`` of each stage map.
        limits (Sequence[tuple[int, int]]): the largest ``(h, w)`` partition
            per stage (the arch's partitions).

    Returns:
        tuple[tuple[int, int]]: ``(h, w)`` per stage.
    """
    def fit(n, limit):
        parts = -(-n // limit)
        return -(-n // parts)

    return tuple((fit(h, lh), fit(w, lw))
                 for (h, w), (lh, lw) in zip(map_sizes, limits))


@MODELS.register_module()
class RepMLPNet(RepBackbone):
    """RepMLPNet backbone.

    Args:
        arch (str | dict): a preset name (``'T224'``, ``'B224'``, ``'T256'``,
            ``'B256'``, ``'D256'``, ``'L256'``) or a dict with ``channels``,
            ``num_blocks``, ``sharesets`` and ``partition_sizes`` (one entry
            per stage) and optionally ``conv_kernels`` (default ``(1, 3)``),
            ``gp_reduce`` (4), ``ffn_expand`` (4), ``patch_size`` (4) and
            ``gp_channels`` (the global perceptron's hidden width per stage;
            None, the default: the original's ``channels // gp_reduce``;
            mmpretrain's models round that to a multiple of 8, which
            ``tools/convert_checkpoint.py`` reads from their weights).
            (``tools/convert_checkpoint.py`` translates the original
            constructor's arguments into such a dict.)
        in_channels (int): image channels. Default: 3.
        partition_sizes (Sequence[int | tuple[int, int]] | str, optional):
            the partition ``(h, w)`` of each stage, overriding the preset's
            (which equals the stage's map size at the preset's image
            resolution). ``'auto'``: fitted to ``input_size``, each stage
            map there split into the fewest equal partitions no larger than
            the arch's (:func:`fitted_partitions`); the choice is logged.
            Default: None (the arch's).
        input_size (tuple[int, int], optional): the ``(H, W)`` of the
            training crops, which ``partition_sizes='auto'`` needs (and
            nothing else reads). Default: None.
        final_norm (bool): apply ``head_norm`` to the last stage's output.
            Default: False.
        pad (bool): zero-pad inputs whose size does not fit (see the module
            docstring). False: refuse them instead, with a ValueError naming
            the stage, its map size and the image size multiple that fits
            (:meth:`input_multiple`). Default: True.
        partition_order (str): how the partition FC's outputs are put back
            in place: ``'spatial'`` (each partition's result at its own
            place) or ``'original'`` (the original release's and
            mmpretrain's order, which on stage maps of several partitions
            moves results between partitions; see the module docstring).
            Both are the same computation when every stage map is one
            partition. Default: ``'spatial'``.
        gelu_approximate (str): the FFN's GELU: ``'none'`` (exact, erf form:
            the original release's) or ``'tanh'`` (the tanh approximation,
            which MindCV's port computes: MindSpore's ``nn.GELU()`` defaults
            to it; its logits differ from the exact form's by about 1e-3).
            Default: ``'none'``.
        embed_rounding (str): an image or stage map that is not a multiple
            of the embedding's stride: ``'ceil'`` zero-pads it bottom/right
            (see the module docstring); ``'floor'`` drops the remainder, as
            the original release's and MindCV's unpadded strided convs do
            (then stage maps are rounded down). Default: ``'ceil'``.
        out_indices, frozen_stages, norm_eval, with_cp, deploy, init_cfg,
            norm_cfg: the OpenMMLab switches, as
            :class:`~mmrep.models.backbones.base.RepBackbone` describes them.
    """

    arch_zoo = {  # channels, blocks and share sets per stage; partitions
        'T224': _preset((64, 128, 256, 512), (2, 2, 6, 2), (1, 4, 16, 128),
                        _P224),
        'T256': _preset((64, 128, 256, 512), (2, 2, 6, 2), (1, 4, 16, 128),
                        _P256),
        'B224': _preset((96, 192, 384, 768), (2, 2, 12, 2), (1, 4, 32, 128),
                        _P224),
        'B256': _preset((96, 192, 384, 768), (2, 2, 12, 2), (1, 4, 32, 128),
                        _P256),
        'D256': _preset((80, 160, 320, 640), (2, 2, 18, 2), (1, 4, 16, 128),
                        _P256),
        'L256': _preset((96, 192, 384, 768), (2, 2, 18, 2), (1, 4, 32, 256),
                        _P256),
    }
    arch_keys = ('channels', 'num_blocks', 'sharesets', 'partition_sizes')
    arch_defaults = dict(conv_kernels=(1, 3), gp_reduce=4, ffn_expand=4,
                         patch_size=4, gp_channels=None)

    @record_build_args
    def __init__(self, arch='T224', in_channels=3, partition_sizes=None,
                 out_indices=(0, 1, 2, 3), final_norm=False, frozen_stages=-1,
                 norm_eval=False, with_cp=False, deploy=False, init_cfg=None,
                 pad=True, norm_cfg=dict(type='BN'),
                 partition_order='spatial', gelu_approximate='none',
                 embed_rounding='ceil', input_size=None):
        super().__init__(arch, out_indices, frozen_stages, norm_eval,
                         with_cp, deploy, norm_cfg, init_cfg, in_channels)
        if gelu_approximate not in ('none', 'tanh'):
            raise ModelArgumentError(
                f"gelu_approximate must be 'none' or 'tanh', "
                f'got {gelu_approximate!r}')
        if embed_rounding not in EMBED_ROUNDINGS:
            raise ModelArgumentError(f'embed_rounding must be one of '
                                     f'{tuple(EMBED_ROUNDINGS)}, got '
                                     f'{embed_rounding!r}')
        self.embed_rounding = embed_rounding
        self.pad = bool(pad)
        if partition_sizes == 'auto':
            partition_sizes = self.auto_partition_sizes(input_size)
        if partition_sizes is not None:
            self.arch['partition_sizes'] = self.check_partition_sizes(
                'RepMLPNet partition_sizes', partition_sizes, self.num_stages)
        self._padding_checked = False  # see warn_if_mostly_padding
        self.final_norm = final_norm
        a, num_stages = self.arch, self.num_stages
        self.patch_size = to_2tuple(a['patch_size'])

        self.conv_embedding = ConvBN(in_channels, a['channels'][0],
                                     self.patch_size, self.patch_size,
                                     act=nn.ReLU(), deploy=deploy,
                                     norm_cfg=norm_cfg)
        self.stages = nn.ModuleList()
        self.embeds = nn.ModuleList()
        for i in range(num_stages):
            self.stages.append(nn.ModuleList(
                RepMLPNetUnit(a['channels'][i], a['partition_sizes'][i],
                              a['sharesets'][i], a['conv_kernels'],
                              a['gp_reduce'], a['ffn_expand'], deploy,
                              norm_cfg, partition_order, gelu_approximate,
                              None if a['gp_channels'] is None
                              else a['gp_channels'][i])
                for _ in range(a['num_blocks'][i])))
            if i < num_stages - 1:
                self.embeds.append(ConvBN(a['channels'][i],
                                          a['channels'][i + 1], 2, 2,
                                          act=nn.ReLU(), deploy=deploy,
                                          norm_cfg=norm_cfg))
        # Kept whether or not it is applied, so checkpoints keep one layout.
        self.head_norm = build_bn(norm_cfg, a['channels'][-1])
        if not final_norm:  # unused: DDP must not wait for its gradients
            self.head_norm.requires_grad_(False)
        self._freeze_stages()

    def auto_partition_sizes(self, input_size):
        """``partition_sizes='auto'``: the partitions fitted to the crop
        ``input_size`` (:func:`fitted_partitions` of the stage maps, the
        arch's partitions as limits), logged.

        Args:
            input_size (tuple[int, int] | int | None): the training crop.

        Returns:
            tuple[tuple[int, int]]: ``(h, w)`` per stage.

        Raises:
            ModelArgumentError: without a valid ``input_size``.
        """
        size = to_2tuple(input_size) if input_size is not None else None
        if size is None or len(size) != 2 or \
                not all(map(is_positive_int, size)):
            raise ModelArgumentError(
                f"RepMLPNet partition_sizes='auto' needs input_size=(H, W), "
                f'the training crop; got input_size={input_size!r}')
        maps = stage_maps(size, to_2tuple(self.arch['patch_size']),
                          self.num_stages, self.embed_rounding == 'floor')
        limits = self.check_partition_sizes(
            'RepMLPNet arch partition_sizes', self.arch['partition_sizes'],
            self.num_stages)
        sizes = fitted_partitions(maps, limits)
        print_log(f"RepMLPNet partition_sizes='auto' for input "
                  f'{size[0]}x{size[1]}: stage maps '
                  f'{", ".join(f"{h}x{w}" for h, w in maps)} -> partitions '
                  f'{", ".join(f"{h}x{w}" for h, w in sizes)}',
                  logger='current', level=logging.INFO)
        return sizes

    @staticmethod
    def check_partition_sizes(what, sizes, num_stages):
        """Validate partition sizes: one positive int or ``(h, w)`` pair of
        them per stage.

        Args:
            what (str): the argument, as the message names it.
            sizes (Sequence[int | Sequence[int]]): the sizes.
            num_stages (int): the number of stages.

        Returns:
            tuple[tuple[int, int]]: ``(h, w)`` per stage.

        Raises:
            ModelArgumentError: naming ``what``, its value and the bad entry.
        """
        if not isinstance(sizes, (list, tuple)) or len(sizes) != num_stages:
            raise ModelArgumentError(
                f'{what}={sizes!r}: needs one entry per stage '
                f'({num_stages})')
        pairs = []
        for size in sizes:
            pair = tuple(size) if isinstance(size, (list, tuple)) \
                else (size, size)
            if len(pair) != 2 or not all(map(is_positive_int, pair)):
                raise ModelArgumentError(
                    f'{what}={sizes!r}: {size!r} is not a '
                    f'positive int or an (h, w) pair of them')
            pairs.append(tuple(int(v) for v in pair))
        return tuple(pairs)

    @classmethod
    def check_arch(cls, arch):
        """Validate a complete arch dict (see the class docstring).

        Returns:
            dict: ``arch`` with ints, ``(h, w)`` partition pairs and a
            ``conv_kernels`` tuple.

        Raises:
            ModelArgumentError: naming the arch key, its value and the problem.
        """
        def name(key):
            return f"RepMLPNet arch['{key}']"

        out = dict(arch)
        for key in ('channels', 'num_blocks', 'sharesets'):
            out[key] = positive_ints(name(key), out[key])
        out['partition_sizes'] = cls.check_partition_sizes(
            name('partition_sizes'), out['partition_sizes'],
            len(out['channels']))
        for key in ('gp_reduce', 'ffn_expand'):
            out[key] = positive_ints(name(key), out[key])[0]
        if out['gp_channels'] is not None:
            out['gp_channels'] = positive_ints(name('gp_channels'),
                                               out['gp_channels'])
            if len(out['gp_channels']) != len(out['channels']):
                raise ModelArgumentError(
                    f"{name('gp_channels')}={arch['gp_channels']!r}: needs "
                    f"one entry per stage ({len(out['channels'])})")
        positive_ints(name('patch_size'), out['patch_size'])
        out['conv_kernels'] = positive_ints(
            name('conv_kernels'), tuple(out['conv_kernels'] or ()), odd=True)
        for i, (c, s) in enumerate(zip(out['channels'], out['sharesets'])):
            if c % s:
                raise ModelArgumentError(
                    f"{name('sharesets')}={arch['sharesets']!r}: stage {i}'s "
                    f'{s} share sets do not divide its {c} channels')
            if c < out['gp_reduce']:
                raise ModelArgumentError(
                    f"{name('gp_reduce')}={out['gp_reduce']}: more than stage "
                    f"{i}'s {c} channels")
        return out

    def forward(self, x):
        """Return the stage outputs selected by ``out_indices``.

        Args:
            x (Tensor): images ``(N, C, H, W)`` of any size.

        Returns:
            tuple[Tensor]: NCHW maps at strides 4, 8, 16, 32 (rounded up).
        """
        if not self.pad:
            self._check_fits(x)
        elif not self._padding_checked and not exporting():
            self.warn_if_mostly_padding(x.shape[-2:])
        fit = EMBED_ROUNDINGS[self.embed_rounding]
        x = self.conv_embedding(fit(x, self.patch_size))
        outs = []
        last = len(self.stages) - 1
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = self.embeds[i - 1](fit(x, (2, 2)))
            for unit in stage:
                x = self.run_block(unit, x)
            if i in self.out_indices:
                outs.append(self.head_norm(x)
                            if self.final_norm and i == last else x)
        return tuple(outs)

    def input_multiple(self):
        """The image size multiple that needs no padding anywhere.

        Returns:
            tuple[int, int]: ``(mh, mw)``; an image whose height and width
            are multiples of these is split evenly into patches and every
            stage map into whole partitions.
        """
        ph, pw = self.patch_size
        mh, mw = ph, pw
        for i, (h, w) in enumerate(self.arch['partition_sizes']):
            mh = math.lcm(mh, ph * 2**i * h)
            mw = math.lcm(mw, pw * 2**i * w)
        return mh, mw

    def stage_map_sizes(self, image_size):
        """The map size of each stage for an image of ``image_size``.

        Args:
            image_size (tuple[int, int]): ``(H, W)``.

        Returns:
            list[tuple[int, int]]: ``(h, w)`` per stage (rounded as
            :attr:`embed_rounding` says).
        """
        return stage_maps(image_size, self.patch_size, len(self.stages),
                          self.embed_rounding == 'floor')

    def warn_if_mostly_padding(self, image_size, threshold=0.5):
        """Warn (once) when the stage maps of ``image_size`` are mostly
        zero padding inside their partitions.

        A map smaller than its partition (the T224 preset's 56x56 partitions
        on the 32x32 first-stage map of a 128x128 crop) is padded to a whole
        partition, and every block computes on the padding. The warning
        names each such stage, its map and partition sizes and the padded
        fraction, and suggests ``partition_sizes`` fitted to the maps (what
        ``partition_sizes='auto'`` chooses for that input).

        Args:
            image_size (tuple[int, int]): the input's ``(H, W)``.
            threshold (float): warn when the padding is more than this
                fraction of a stage's padded map. Default: 0.5.

        Returns:
            bool: whether a warning was logged.
        """
        self._padding_checked = True

        maps = self.stage_map_sizes(image_size)
        stages = []
        for i, ((h, w), (sh, sw)) in enumerate(zip(
                maps, self.arch['partition_sizes'])):
            padded = (-(-h // sh) * sh) * (-(-w // sw) * sw)
            if 1 - h * w / padded > threshold:
                stages.append(f'stage {i} map {h}x{w} in {sh}x{sw} '
                              f'partitions is {1 - h * w / padded:.0%} '
                              f'padding')
        suggested = [dh if dh == dw else (dh, dw) for dh, dw in
                     fitted_partitions(maps, self.arch['partition_sizes'])]
        if stages:
            print_log(
                f'RepMLPNet at input {image_size[0]}x{image_size[1]}: '
                f'{"; ".join(stages)}; every block computes on that padding '
                f'and the partition FCs are sized for the partitions: '
                f'partition_sizes={tuple(suggested)} fit these maps',
                logger='current', level=logging.WARNING)
        return bool(stages)

    def _check_fits(self, x):
        """With ``pad=False``: refuse an image that needs padding."""
        H, W = x.shape[-2:]
        mh, mw = self.input_multiple()
        if H % mh == 0 and W % mw == 0:
            return
        ph, pw = self.patch_size
        what = f'the image {H}x{W} does not fit'
        if H % ph or W % pw:
            what = f'the image {H}x{W} is not a multiple of the patch size ' \
                   f'{ph}x{pw}'
        else:
            h, w = H // ph, W // pw
            for i, (sh, sw) in enumerate(self.arch['partition_sizes']):
                if i:
                    if h % 2 or w % 2:
                        what = f'stage {i - 1} map {h}x{w} is not a ' \
                               f'multiple of the 2x2 embedding stride'
                        break
                    h, w = h // 2, w // 2
                if h % sh or w % sw:
                    what = f'stage {i} map {h}x{w} is not a multiple of ' \
                           f'its partition {sh}x{sw}'
                    break
        raise ModelArgumentError(
            f'RepMLPNet(pad=False): {what}; the image size must be a '
            f'multiple of {mh}x{mw} (or build with pad=True to zero-pad)')

    def unused_state_prefixes(self):
        """Without ``final_norm``, ``head_norm`` is never applied: a
        checkpoint saved without a final norm (mmpretrain's
        ``final_norm=False``) loads, and ``head_norm`` keeps its
        initialization."""
        return () if self.final_norm else ('head_norm.', )

    def stem_and_stages(self):
        return [self.conv_embedding], [
            [stage] if i == 0 else [self.embeds[i - 1], stage]
            for i, stage in enumerate(self.stages)]


# ---------------------------------------------------------------------------
# checkpoint source: the original release
# DingXiaoH/RepMLP ``repmlpnet.py``: ``create_RepMLPNet_*`` and its
# train-time and fused (``locality_injection``) checkpoints. mmrep keeps its
# names; its classifier is ``head``, after ``head_norm``.
# ---------------------------------------------------------------------------
#: The original's constructor arguments -> mmrep's arch keys (``hs`` /
#: ``ws`` make ``partition_sizes``).
ORIGINAL_ARCH_NAMES = dict(sharesets_nums='sharesets',
                           reparam_conv_k='conv_kernels',
                           globalperceptron_reduce='gp_reduce')


def from_original_kwargs(kwargs):
    """The mmrep settings of an original ``RepMLPNet(**kwargs)``.

    ``hs`` / ``ws`` -> ``partition_sizes`` (``(h, w)`` per stage), the rest
    by :data:`ORIGINAL_ARCH_NAMES`; ``num_class`` goes to the classifier;
    mmrep's own names pass through (the model checks them).

    Args:
        kwargs (dict): the original's constructor arguments.

    Returns:
        tuple[dict, int | None]: ``dict(arch=...)`` and the number of
        classes (None where not given).

    Raises:
        ModelArgumentError: an argument under both names, or ``hs`` without
            ``ws`` (or of another length).
    """
    arch = rename_args(kwargs, ORIGINAL_ARCH_NAMES)
    num_classes = arch.pop('num_class', None)
    if 'hs' in arch or 'ws' in arch:
        hs, ws = arch.pop('hs', None), arch.pop('ws', None)
        if hs is None or ws is None or len(hs) != len(ws):
            raise ModelArgumentError(
                'arch needs both hs and ws, of equal length')
        arch['partition_sizes'] = tuple(zip(hs, ws))
    return dict(arch=arch), num_classes


def read_arch(state):
    """The arch dict of converted RepMLPNet weights (train-time or fused),
    from their names and shapes. Partitions are taken as square (``h * w``
    positions is all ``fc3`` holds) and a fused model's conv kernels as
    ``(1, 3)`` (they leave no weight); the global perceptron widths become
    ``gp_reduce``, or ``gp_channels`` where no ratio gives them all
    (mmpretrain rounds them to multiples of 8).

    Args:
        state (dict[str, Tensor]): converted backbone weights.

    Returns:
        dict: the arch.

    Raises:
        KeyError | ValueError | IndexError: the weights are not laid out as
            RepMLPNet's.
    """
    stages = indices(state, r'stages\.(\d+)\.0\.prebn1\.weight$')
    if not stages or stages != list(range(len(stages))):
        raise ValueError('no stages')
    channels, blocks, sharesets, partitions, hidden = [], [], [], [], []
    for i in stages:
        c = int(state[f'stages.{i}.0.prebn1.weight'].shape[0])
        channels.append(c)
        blocks.append(len(indices(state, rf'stages\.{i}\.(\d+)\.prebn1\.')))
        fc3 = state[f'stages.{i}.0.repmlp_block.fc3.weight'].shape
        sharesets.append(int(fc3[0] // fc3[1]))
        side = math.isqrt(int(fc3[1]))
        if side * side != int(fc3[1]):
            raise ValueError(f'stage {i}: {fc3[1]} positions are no square '
                             f'partition')
        partitions.append((side, side))
        hidden.append(int(
            state[f'stages.{i}.0.repmlp_block.gp.fc1.weight'].shape[0]))
    kernels = tuple(indices(
        state, r'stages\.0\.0\.repmlp_block\.repconv(\d+)\.'))
    fc1 = 'stages.0.0.ffn_block.ffn_fc1.'
    ffn = state[fc1 + 'conv.weight' if fc1 + 'conv.weight' in state
                else fc1 + 'weight'].shape[0]
    arch = dict(channels=tuple(channels), num_blocks=tuple(blocks),
                sharesets=tuple(sharesets),
                partition_sizes=tuple(partitions),
                conv_kernels=kernels,
                ffn_expand=int(ffn // channels[0]),
                patch_size=tuple(int(v) for v in state[
                    'conv_embedding.conv.weight'].shape[-2:]))
    if not kernels and not any('.fc3_bn.' in k for k in state):
        arch['conv_kernels'] = (1, 3)  # fused: no conv branch is left
    reduce = channels[0] // hidden[0] if hidden[0] else 0
    if reduce and all(c // reduce == h for c, h in zip(channels, hidden)):
        arch['gp_reduce'] = reduce
    else:  # mmpretrain's widths, rounded to multiples of 8
        arch['gp_channels'] = tuple(hidden)
    return arch


def fold_prebn2(state):
    """Fold the ``prebn2`` that a fused checkpoint keeps (the original
    release's, mmpretrain's and MindCV's fused form) into ``ffn_fc1``, as
    the unit's ``reparameterize()`` does; the loader folds the remaining
    conv-BN pairs.

    Args:
        state (dict[str, Tensor]): converted weights, meant for a fused
            model.

    Returns:
        dict[str, Tensor]: the weights with every ``prebn2`` folded; a
        train-time checkpoint (it has ``fc3_bn`` or ``repconv`` keys) is
        returned unchanged.
    """
    if any('fc3_bn.' in k or '.repconv' in k for k in state):
        return state
    state = dict(state)
    for key in [k for k in state if k.endswith('.prebn2.running_var')]:
        unit = key[:-len('prebn2.running_var')]
        fc1 = unit + 'ffn_block.ffn_fc1.conv.'
        if fc1 + 'weight' not in state:
            continue
        bn = pop_bn_state(state, unit + 'prebn2.')
        state[fc1 + 'weight'], state[fc1 + 'bias'] = fold_input_bn(
            state[fc1 + 'weight'], state.get(fc1 + 'bias'), bn)
    return state


def adapt_checkpoint(backbone, state):
    """Reconcile converted weights with a RepMLPNet: each block's ``fc3``
    built for another partition size is resampled (with its bias; its BN is
    per share set, not tied to the partition), and a fused model's kept
    ``prebn2`` is folded (:func:`fold_prebn2`).

    Args:
        backbone (RepMLPNet): the model.
        state (dict[str, Tensor]): converted backbone weights.

    Returns:
        dict[str, Tensor]: a new dict.
    """
    state = dict(state)
    for name, module in backbone.named_modules():
        if isinstance(module, RepMLPBlock):
            fc3 = name + '.fc3.'
            resample_fc3_state(state, fc3, module.num_sharesets,
                               (module.h, module.w), (fc3 + 'bias', ))
    return fold_prebn2(state) if backbone.deploy else state
# ------------------- end of checkpoint source: the original release --------


# ---------------------------------------------------------------------------
# checkpoint source: mmpretrain
# ``mmpretrain/models/backbones/repmlp.py``: ``patch_embed``,
# ``downsample_layers``, ``final_norm``, ``gp.conv1``/``gp.conv2`` and
# ``norm1``/``norm2``; classifier ``head.fc``. Its global perceptron widths
# are rounded up to multiples of 8 (arch key ``gp_channels``).
# ---------------------------------------------------------------------------
#: mmpretrain name fragment -> mmrep's, applied in order.
MMPRETRAIN_RENAMES = (
    ('patch_embed.projection.', 'conv_embedding.conv.'),
    ('patch_embed.norm.', 'conv_embedding.bn.'),
    ('downsample_layers.', 'embeds.'),
    ('final_norm.', 'head_norm.'),
    ('.gp.conv1.conv.', '.gp.fc1.'),
    ('.gp.conv2.conv.', '.gp.fc2.'),
    ('.norm1.', '.prebn1.'),
    ('.norm2.', '.prebn2.'),
)
#: Key prefixes only mmpretrain's RepMLPNet checkpoints have.
MMPRETRAIN_PREFIXES = ('patch_embed.projection.', 'downsample_layers.',
                       'final_norm.')


def is_mmpretrain_state(state):
    """Whether the key names are mmpretrain's RepMLPNet names."""
    return has_key_prefix(state, MMPRETRAIN_PREFIXES)


def from_mmpretrain_state_dict(state):
    """mmpretrain RepMLPNet weights as mmrep backbone and classifier weights
    (:data:`MMPRETRAIN_RENAMES`; ``head.fc.*`` -> ``fc.*``)."""
    return split_classifier(state, renamer(MMPRETRAIN_RENAMES))
# ----------------------- end of checkpoint source: mmpretrain --------------


# ---------------------------------------------------------------------------
# checkpoint source: MindCV
# mindspore-lab/mindcv ``mindcv/models/repmlp.py`` (at 51b0636), its
# ``RepMLPNet(**kwargs)`` and its checkpoints (MindSpore names).
#
# What the port computes differently from the original release: the FFN's
# activation is MindSpore's ``nn.GELU()``, whose default is the tanh
# approximation (``gelu_approximate='tanh'``). Like the original, it reads
# the partition FC's rows in the original order (``partition_order=
# 'original'``) and its unpadded strided convs drop the rows and columns
# that do not fill a stride (``embed_rounding='floor'``); it runs only maps
# that are whole partitions.
# ---------------------------------------------------------------------------
#: The port's constructor defaults for the arch (its own names), where an
#: argument is not given.
MINDCV_DEFAULTS = dict(patch_size=(4, 4), num_blocks=(2, 2, 6, 2),
                       channels=(192, 384, 768, 1536), hs=(64, 32, 16, 8),
                       ws=(64, 32, 16, 8), sharesets_nums=(4, 8, 16, 32),
                       reparam_conv_k=(3, ), globalperceptron_reduce=4)
#: The port's arch arguments (the original's names) -> mmrep's arch keys
#: (``hs`` / ``ws`` make ``partition_sizes``).
MINDCV_ARCH_NAMES = dict(channels='channels', num_blocks='num_blocks',
                         sharesets_nums='sharesets',
                         reparam_conv_k='conv_kernels',
                         globalperceptron_reduce='gp_reduce',
                         patch_size='patch_size')
#: What mmrep sets to compute what the port computes.
MINDCV_OPTIONS = dict(partition_order='original', gelu_approximate='tanh',
                      embed_rounding='floor')
#: Parameters the port holds but its forward never reads: ``conv2d``, an
#: image-to-stage-0 convolution built next to ``conv_embedding``.
MINDCV_UNUSED = ('conv2d.weight', 'conv2d.bias')


def _tuples(value):
    """Lists (from JSON) as tuples, nested."""
    if isinstance(value, (list, tuple)):
        return tuple(_tuples(v) for v in value)
    return value


def from_mindcv_kwargs(port_kwargs):
    """The mmrep classifier settings of a MindCV ``RepMLPNet(**kwargs)``.

    ``num_class`` goes to the classifier, ``in_channels`` and ``deploy`` to
    the backbone; ``use_checkpoint`` is dropped; ``hs`` / ``ws`` become
    ``partition_sizes`` and the other arguments (the original's names, as
    :data:`mmrep.checkpoints.conversion.ORIGINAL_ARCH_NAMES` translates
    them) the arch keys of :data:`MINDCV_ARCH_NAMES`, with the port's
    defaults where one is missing (``reparam_conv_k=(3, )``, not the
    original's ``(1, 3)``).

    Args:
        port_kwargs (dict): the port's constructor arguments.

    Returns:
        tuple[dict, int]: the :class:`RepMLPNet` constructor arguments of a
        classifier's backbone (with :data:`MINDCV_OPTIONS`, ``final_norm``
        and the last stage as output) and the number of classes.

    Raises:
        ModelArgumentError: an argument the port does not take.
    """
    kwargs = {k: _tuples(v) for k, v in
              dict(MINDCV_DEFAULTS, **port_kwargs).items()}
    num_classes = int(kwargs.pop('num_class', 1000))
    backbone = dict(in_channels=int(kwargs.pop('in_channels', 3)),
                    deploy=bool(kwargs.pop('deploy', False)),
                    out_indices=(-1, ), final_norm=True, **MINDCV_OPTIONS)
    kwargs.pop('use_checkpoint', None)
    partitions = tuple(zip(kwargs.pop('hs'), kwargs.pop('ws')))
    unknown = sorted(set(kwargs) - set(MINDCV_ARCH_NAMES))
    if unknown:
        raise ModelArgumentError(f'MindCV RepMLPNet takes no {unknown}')
    arch = {MINDCV_ARCH_NAMES[k]: v for k, v in kwargs.items()}
    arch['partition_sizes'] = partitions
    return dict(backbone, arch=arch), num_classes


def _mindcv_key(key):
    """A MindCV RepMLPNet key in mmrep's names: BN names, and the
    embeddings' ``conv.conv`` / ``conv.bn`` (a conv-BN cell inside a
    conv-BN-ReLU cell) as ``conv`` / ``bn``."""
    parts = torch_bn_name(key).split('.')
    # conv_embedding.conv.{conv,bn}.* and embeds.{i}.conv.{conv,bn}.*
    depth = {'conv_embedding': 1, 'embeds': 2}.get(parts[0])
    if depth and parts[depth:depth + 1] == ['conv'] and \
            parts[depth + 1:depth + 2] in (['conv'], ['bn']):
        del parts[depth]
    return '.'.join(parts)


def from_mindcv_state_dict(port_state):
    """MindCV RepMLPNet weights as mmrep backbone and classifier weights.

    ``conv_embedding.conv.conv.*`` -> ``conv_embedding.conv.*``,
    ``conv_embedding.conv.bn.*`` -> ``conv_embedding.bn.*`` (likewise
    ``embeds.{i}``), BN ``gamma`` / ``beta`` / ``moving_mean`` /
    ``moving_variance`` -> ``weight`` / ``bias`` / ``running_mean`` /
    ``running_var``, ``head.*`` -> the classifier's ``fc.*``; every other
    name is the original's, which mmrep keeps. :data:`MINDCV_UNUSED` is
    dropped. A ``deploy=True`` port's weights are the original's fused form
    (fused ``fc3``, the other conv-BN pairs kept): fold them into a deploy
    backbone with :func:`mmrep.checkpoints.release_fused_form`.

    Args:
        port_state (dict[str, Tensor]): the port's checkpoint.

    Returns:
        tuple[dict, dict]: backbone weights and head weights (``fc.weight``,
        ``fc.bias``, mmpretrain's ``LinearClsHead`` names).
    """
    return split_classifier(port_state, _mindcv_key, ('head.', ),
                            drop=MINDCV_UNUSED)
# ------------------------ end of checkpoint source: MindCV -------------------


register_family(CheckpointFamily(
    name='repmlpnet', model=RepMLPNet, display='RepMLPNet-{}',
    sources=(
        Source('original', split_classifier, from_original_kwargs),
        Source('mmpretrain', from_mmpretrain_state_dict, from_original_kwargs,
               detect=is_mmpretrain_state,
               key_marks=('patch_embed.projection', 'downsample_layers',
                          'final_norm')),
        Source('mindcv', from_mindcv_state_dict, from_mindcv_kwargs,
               framework='mindspore', options=MINDCV_OPTIONS,
               label='MindCV', port=True),
    ),
    train_only_markers=('.bn.', 'fc3_bn.', '.repconv'),
    input_weights=('conv_embedding.conv.weight', ),
    classifier_kwargs=lambda backbone_state=None, num_stages=4: dict(
        final_norm=True),
    read_arch=read_arch, adapt=adapt_checkpoint, release_fused=fold_prebn2,
    preset_size=lambda arch: int(arch[1:])))
