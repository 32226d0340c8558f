"""The RepMLP block of RepMLPNet (Ding et al., CVPR 2022).

A RepMLP block mixes information at three ranges:

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

Partition order. The partition FC produces one row per partition and channel
group, ordered ``(N, h_parts, w_parts, C/S)``. The original release's
``partition_affine`` (and mmpretrain's copy of it) reads those rows back as if
they were ordered ``(N, C/S, h_parts, w_parts)``: with several partitions per
map and ``C/S > 1`` the result of one partition and channel group lands in
another partition's place. ``partition_order='spatial'`` (the default) keeps
every partition's result in place, the block the paper describes;
``partition_order='original'`` reproduces the release's order exactly, for
weights trained with the original code on maps of several partitions. With
one partition per map (every ImageNet preset at its own resolution) the two
orders are the same computation.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .conv_bn import ConvBN, build_bn, fuse_bn
from .linear import grouped_linear


def to_2tuple(value):
    """``7 -> (7, 7)``; a pair is returned as a tuple."""
    if isinstance(value, int):
        return (value, value)
    value = tuple(value)
    if len(value) != 2:
        raise ValueError(f'expected an int or a pair, got {value!r}')
    return value


class GlobalPerceptron(nn.Module):
    """Channel gate: ``sigmoid(fc2(relu(fc1(mean(x)))))``.

    Args:
        channels (int): input and output channels.
        reduce (int): squeeze ratio; ``fc1`` has ``channels // reduce``
            outputs.
    """

    def __init__(self, channels, reduce=4):
        super().__init__()
        hidden = channels // reduce
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x):
        # Linear layers on (N, C): the 1x1 convs on a 1x1 map, cheaper.
        v = x.mean((2, 3))
        v = F.relu(F.linear(v, self.fc1.weight.flatten(1), self.fc1.bias))
        v = F.linear(v, self.fc2.weight.flatten(1), self.fc2.bias)
        return torch.sigmoid(v).reshape(*v.shape, 1, 1)


def conv_to_fc(kernel, bias, groups, h, w):
    """Express a grouped ``k x k`` convolution on an ``h x w`` map as an FC.

    The convolution (zero padding ``k // 2``, ``groups`` groups) becomes the
    weight of a grouped partition FC, whose group ``j`` maps the
    ``C/groups`` input channels of group ``j`` (flattened with their
    ``h x w`` pixels) to its ``O/groups`` output channels: RepMLP v1's
    ``fc3``, and with ``groups == channels`` (one channel per group) the
    ``S`` blocks of RepMLPNet's per-share-set ``fc3``.

    Args:
        kernel (Tensor): ``(O, C/groups, kh, kw)`` convolution weight with
            odd ``kh`` and ``kw``.
        bias (Tensor): ``(O,)`` convolution bias.
        groups (int): convolution groups.
        h (int): partition height.
        w (int): partition width.

    Returns:
        tuple[Tensor, Tensor]: weight ``(O*h*w, C/groups*h*w)`` and bias
        ``(O*h*w,)``.
    """
    out_channels, group_in, kh, kw = kernel.shape
    n = group_in * h * w
    eye = torch.eye(n, dtype=kernel.dtype, device=kernel.device)
    # Basis input r sets element r of every group at once; groups do not mix.
    basis = eye.reshape(n, group_in, h, w).repeat(1, groups, 1, 1)
    out = F.conv2d(basis, kernel, padding=(kh // 2, kw // 2), groups=groups)
    return out.reshape(n, out_channels * h * w).t(), \
        bias.repeat_interleave(h * w)


PARTITION_ORDERS = ('spatial', 'original')


def pad_to_partition(x, h, w):
    """Zero-pad ``x`` on the bottom and right to multiples of ``(h, w)``.

    While tracing (ONNX export) the pad is always recorded, with amounts
    computed from the input's shape, so the graph runs at any size.
    """
    H, W = x.shape[-2:]
    pad_h, pad_w = -H % h, -W % w
    if torch.jit.is_tracing() or pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    return x


class RepMLPBlock(nn.Module):
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
    """

    def __init__(self, channels, partition, num_sharesets=1,
                 conv_kernels=(1, 3), gp_reduce=4, deploy=False,
                 norm_cfg=None, partition_order='spatial'):
        super().__init__()
        if partition_order not in PARTITION_ORDERS:
            raise ValueError(f'partition_order must be one of '
                             f'{PARTITION_ORDERS}, got {partition_order!r}')
        self.partition_order = partition_order
        self.h, self.w = to_2tuple(partition)
        if channels % num_sharesets:
            raise ValueError(f'num_sharesets={num_sharesets} must divide '
                             f'channels={channels}')
        for k in conv_kernels or ():
            if k % 2 == 0:
                raise ValueError(f'conv kernel sizes must be odd, got {k}')
        self.channels = channels
        self.num_sharesets = num_sharesets
        self.conv_kernels = tuple(conv_kernels or ())
        self.deploy = deploy
        self.gp = GlobalPerceptron(channels, gp_reduce)
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
            out = grouped_linear(rows, weight).transpose(0, 1)
            out = self.fc3_bn(out.reshape(-1, S, h, w))
            if self.conv_kernels:
                out = out.reshape(-1, C, h, w) + self.local_perceptron(
                    x, hp, wp)
        out = self.partitions_to_map(out, N, hp, wp)
        if torch.jit.is_tracing() or Hp != H or Wp != W:
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
        ``(pixels * C/S, S, 1, 1)`` view, so
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
        N, C = x.shape[:2]
        h, w, S = self.h, self.w, self.num_sharesets
        local = x.reshape(N, C, hp, h, wp, w).permute(0, 2, 4, 3, 5, 1)
        local = local.reshape(-1, h, w, C).permute(0, 3, 1, 2)
        out = 0
        for k in self.conv_kernels:
            branch = getattr(self, f'repconv{k}')
            y = F.conv2d(local, branch.conv.weight.repeat(C // S, 1, 1, 1),
                         padding=k // 2, groups=C)
            # (P, h, w, C) rows of S share sets as a (P*h*w*C/S, S, 1, 1)
            # batch: the branch's own BN (BN or SyncBN) normalizes it.
            rows = y.permute(0, 2, 3, 1)
            y = branch.bn(rows.reshape(-1, S, 1, 1)).view(rows.shape)
            out = out + y.permute(0, 3, 1, 2)
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

    def fused_fc3(self):
        """Locality Injection: the single ``fc3`` equivalent to the branches.

        Returns:
            tuple[Tensor, Tensor]: weight ``(S*h*w, h*w, 1, 1)``, bias
            ``(S*h*w,)``.
        """
        if self.deploy:
            return self.fc3.weight, self.fc3.bias
        weight, bias = fuse_bn(self.fc3.weight, self.fc3_bn)
        weight = weight.reshape(weight.size(0), -1)
        for k in self.conv_kernels:
            kernel, k_bias = getattr(self, f'repconv{k}').fused_kernel()
            fc_w, fc_b = conv_to_fc(kernel, k_bias, kernel.size(0), self.h,
                                    self.w)
            weight = weight + fc_w
            bias = bias + fc_b
        return weight.reshape(*self.fc3.weight.shape), bias

    def reparameterize(self):
        """Merge BN and conv branches into ``fc3`` in place (deploy form)."""
        if self.deploy:
            return
        weight, bias = self.fused_fc3()
        fc3 = nn.Conv2d(self.fc3.in_channels, self.fc3.out_channels, 1,
                        groups=self.num_sharesets, bias=True,
                        device=weight.device, dtype=weight.dtype)
        fc3.weight.data.copy_(weight.detach())
        fc3.bias.data.copy_(bias.detach())
        self.fc3 = fc3
        del self.fc3_bn
        for k in self.conv_kernels:
            delattr(self, f'repconv{k}')
        self.deploy = True
