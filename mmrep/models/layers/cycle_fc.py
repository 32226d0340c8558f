"""Cycle FC (Chen et al., "CycleMLP: A MLP-like Architecture for Dense
Prediction", ICLR 2022) without deformable convolution.

The original layer is a deformable 1x1 convolution whose offsets never
change: input channel ``c`` is sampled at a fixed integer displacement along
one axis, cycling through ``-(k // 2) .. k // 2`` with the channel index
(``k`` is the non-unit side of the "pseudo-kernel" ``(1, k)`` or ``(k, 1)``).
Bilinear sampling at integer positions reads single pixels, and positions
outside the map read zero, so the layer is exactly

1. a per-channel spatial shift with zero fill, then
2. a 1x1 projection (``weight`` of shape ``(out, in, 1, 1)`` and ``bias``).

The shift is done here with one slice copy per distinct displacement (at
most ``k``), and its gradient is the opposite shift, so forward and backward
each read and write the map once.

The original keeps its offsets in a buffer named ``offset``, which its
checkpoints carry. :class:`CycleFC` keeps the same persistent buffer so that
state dicts have the original's keys, and refuses (on load) an ``offset``
that differs from the fixed offsets the layer computes: the forward pass
always uses the computed shifts, never the buffer's contents.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...utils.errors import ModelArgumentError
from ...utils.serialization import CheckpointMismatchError
from .tracing import exporting


def _check_kernel_size(kernel_size):
    """Return ``(kh, kw)`` for a pseudo-kernel with at least one unit side.

    Raises:
        ModelArgumentError: not an int or a pair of positive ints, or both
            sides larger than 1.
    """
    if isinstance(kernel_size, int):
        kernel_size = (kernel_size, kernel_size)
    try:
        kh, kw = (int(k) for k in kernel_size)
    except (TypeError, ValueError):
        raise ModelArgumentError(
            f'kernel_size must be an int or a pair of ints, got '
            f'{kernel_size!r}') from None
    if kh < 1 or kw < 1:
        raise ModelArgumentError(
            f'kernel_size must be positive, got {(kh, kw)}')
    if kh != 1 and kw != 1:
        raise ModelArgumentError(
            f'a Cycle FC pseudo-kernel is (1, k) or (k, 1), got '
            f'{(kh, kw)}')
    return kh, kw


def cycle_shifts(kernel_size):
    """Displacements of the channel residues of a pseudo-kernel.

    Input channel ``c`` is displaced by ``shifts[c % k]`` along ``dim``
    (``-1``: width for ``(1, k)``, ``-2``: height for ``(k, 1)``); the output
    at position ``p`` reads the input at ``p + shift``.

    Args:
        kernel_size (int | tuple[int, int]): the pseudo-kernel.

    Returns:
        tuple[int, tuple[int, ...]]: ``(dim, shifts)`` with ``len(shifts) ==
        k``, ``shifts[j] = (j + k // 2) % k - k // 2``.
    """
    kh, kw = _check_kernel_size(kernel_size)
    k, dim = (kw, -1) if kh == 1 else (kh, -2)
    return dim, tuple((j + k // 2) % k - k // 2 for j in range(k))


def _rows_contiguous(t):
    """Whether the last two dims of ``t`` flatten into one without a copy."""
    return t.stride(-2) == t.shape[-1] * t.stride(-1)


def _shift_channels(x, shifts, dim):
    """``out[:, c, ..., p, ...] = x[:, c, ..., p + shifts[c % k], ...]``,
    zero where ``p + shift`` falls outside the map (``dim`` is the axis,
    2 or 3 of an NCHW tensor)."""
    k = len(shifts)
    if not any(shifts):
        return x.clone()
    out = torch.empty_like(x)
    height, width = x.shape[-2:]
    # A width shift of row-contiguous planes is one copy over the flattened
    # plane, plus zeroing the |d| columns that crossed a row boundary.
    flat = dim == x.dim() - 1 and _rows_contiguous(x) \
        and _rows_contiguous(out)
    size = height * width if flat else x.shape[dim]
    for j, d in enumerate(shifts):
        if j >= x.shape[1]:
            break
        src = x[:, j::k] if k > 1 else x
        dst = out[:, j::k] if k > 1 else out
        if abs(d) >= x.shape[dim]:  # every position reads outside the map
            dst.zero_()
            continue
        s_src, s_dst = (src.flatten(-2), dst.flatten(-2)) if flat \
            else (src, dst)
        axis = -1 if flat else dim
        n = size - abs(d)  # positions that read inside the map
        if d >= 0:
            s_dst.narrow(axis, 0, n).copy_(s_src.narrow(axis, d, n))
            s_dst.narrow(axis, n, d).zero_()
            if flat and d:
                dst.narrow(-1, width - d, d).zero_()
        else:
            s_dst.narrow(axis, -d, n).copy_(s_src.narrow(axis, 0, n))
            s_dst.narrow(axis, 0, -d).zero_()
            if flat:
                dst.narrow(-1, 0, -d).zero_()
    return out


def _residue_slice(x, j, k, cdim):
    """Channels ``j, j + k, ...`` of ``x`` along ``cdim``."""
    index = [slice(None)] * x.dim()
    index[cdim] = slice(j, None, k)
    return x[tuple(index)]


def _shifted_residues(x, shifts, dim, cdim):
    """Each residue class of channels (along ``cdim``) shifted along ``dim``
    with zero fill, from out-of-place ops only: a pad of ``|d|`` on both
    sides and a narrow back to the map's size, the same ops at any size (a
    graph traced on a map no larger than a shift holds that shift too).

    Returns:
        tuple[list[Tensor], list[int]]: the shifted classes, and the channel
        of each of their channels when concatenated in that order.
    """
    size, k, c = x.shape[dim], len(shifts), x.shape[cdim]
    parts, order = [], []
    for j, d in enumerate(shifts[:c]):
        part = _residue_slice(x, j, k, cdim)
        if d:
            # F.pad lists the last dim first, a (before, after) pair each;
            # position p of the result reads position p + d of the map.
            pad = [0] * (2 * (x.dim() - dim))
            side = 2 * (x.dim() - 1 - dim)
            pad[side] = pad[side + 1] = abs(d)
            part = F.pad(part, pad).narrow(dim, abs(d) + d, size)
        parts.append(part)
        order.extend(range(j, c, k))
    return parts, order


def _inverse(order, device):
    """The permutation that puts columns concatenated in ``order`` back."""
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return inverse.to(device)


def _shift_channels_functional(x, shifts, dim):
    """The same as :func:`_shift_channels`, from out-of-place ops only.

    Used while tracing (ONNX export), where the slice copies of
    :func:`_shift_channels` would not be recorded faithfully: each residue
    class of channels is shifted by a narrow and a zero pad, and the classes
    are put back in channel order by one gather.

    Args:
        x (Tensor): ``(N, C, H, W)``.
        shifts (tuple[int]): displacement of each channel residue.
        dim (int): 2 (height) or 3 (width).

    Returns:
        Tensor: the shifted map.
    """
    parts, order = _shifted_residues(x, shifts, dim, 1)
    return torch.cat(parts, dim=1).index_select(1, _inverse(order, x.device))


class _CycleShift(torch.autograd.Function):
    """Per-channel shift with zero fill; its adjoint is the opposite shift,
    applied through this same function so higher derivatives work too."""

    @staticmethod
    def forward(ctx, x, shifts, dim):
        ctx.shifts, ctx.dim = shifts, dim
        return _shift_channels(x, shifts, dim)

    @staticmethod
    def backward(ctx, grad):
        neg = tuple(-d for d in ctx.shifts)
        return _CycleShift.apply(grad, neg, ctx.dim), None, None


def cycle_shift(x, kernel_size):
    """Shift each channel of ``x`` as a Cycle FC with ``kernel_size`` does.

    Args:
        x (Tensor): ``(N, C, H, W)``, any memory format and size (maps
            smaller than the pseudo-kernel included).
        kernel_size (int | tuple[int, int]): the pseudo-kernel ``(1, k)``
            (shifts along the width) or ``(k, 1)`` (along the height).

    Returns:
        Tensor: the shifted map, same shape; differentiable.
    """
    if x.dim() != 4:
        raise ValueError(f'cycle_shift expects an (N, C, H, W) tensor, got '
                         f'shape {tuple(x.shape)}')
    dim, shifts = cycle_shifts(kernel_size)
    if exporting():  # ONNX export: out-of-place ops only
        return _shift_channels_functional(x, shifts, x.dim() + dim)
    return _CycleShift.apply(x, shifts, x.dim() + dim)


def _stack_plan(kernel_sizes):
    """``(dim, shifts)`` of each pseudo-kernel in an ``(N, H, W, C)`` map: a
    ``(1, k)`` kernel shifts along W (dim 2), a ``(k, 1)`` along H (dim 1)."""
    return tuple((2 if d == -1 else 1, s)
                 for d, s in map(cycle_shifts, kernel_sizes))


def _stack_shifts(x, plan, out, top=0):
    """Write rows ``top .. top + out.shape[1]`` of ``[shift_1(x), ...,
    shift_m(x), x, 1]`` into ``out`` (see :func:`cycle_stack`); ``plan``
    holds ``(dim, shifts)`` per shift. Shifts along H read the rows around
    the window from ``x`` itself."""
    c, rows = x.shape[-1], out.shape[1]
    window = x.narrow(1, top, rows)
    for i, (dim, shifts) in enumerate(plan):
        part, k = out[..., i * c:(i + 1) * c], len(shifts)
        src_all, offset = (x, top) if dim == 1 else (window, 0)
        for j, d in enumerate(shifts[:c]):
            src = _residue_slice(src_all, j, k, -1)
            dst = _residue_slice(part, j, k, -1)
            # dst[p] = src[p + offset + d] where both exist, else 0.
            size, read = dst.shape[dim], offset + d
            start = min(max(-read, 0), size)
            stop = max(min(size, src.shape[dim] - read), start)
            if stop > start:
                dst.narrow(dim, start, stop - start).copy_(
                    src.narrow(dim, start + read, stop - start))
            dst.narrow(dim, 0, start).zero_()
            dst.narrow(dim, stop, size - stop).zero_()
    m = len(plan)
    out[..., m * c:(m + 1) * c].copy_(window)
    out[..., (m + 1) * c:].fill_(1.)
    return out


def _stack_grouped(x, plan):
    """The columns of the stack (see :func:`cycle_stack`) with each shift's
    channels grouped by residue class, from out-of-place ops only (for
    tracing: no gather puts them back in order).

    Returns:
        tuple[Tensor, list[int]]: the stack, and the column of
        :func:`cycle_stack` that each of its columns is.
    """
    c = x.shape[-1]
    parts, order = [], []
    for i, (dim, shifts) in enumerate(plan):
        shifted, channels = _shifted_residues(x, shifts, dim, -1)
        parts += shifted
        order += [i * c + ch for ch in channels]
    m = len(plan)
    parts += [x, x.new_ones(x.shape[:-1] + (1, ))]
    order += list(range(m * c, (m + 1) * c + 1))
    return torch.cat(parts, dim=-1), order


class _CycleStack(torch.autograd.Function):
    """:func:`cycle_stack`; the gradient of each shifted copy is added back
    into the input's gradient at the positions it was read from."""

    @staticmethod
    def forward(ctx, x, plan):
        ctx.plan = plan
        c = x.shape[-1]
        out = x.new_empty(x.shape[:-1] + ((len(plan) + 1) * c + 1, ))
        return _stack_shifts(x, plan, out)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        plan = ctx.plan
        m = len(plan)
        c = (grad.shape[-1] - 1) // (m + 1)
        gx = grad[..., m * c:(m + 1) * c].contiguous()
        for i, (dim, shifts) in enumerate(plan):
            part, size, k = grad[..., i * c:(i + 1) * c], gx.shape[dim], \
                len(shifts)
            for j, d in enumerate(shifts[:c]):
                n = size - abs(d)
                if n > 0:
                    dst = _residue_slice(gx, j, k, -1)
                    src = _residue_slice(part, j, k, -1)
                    dst.narrow(dim, max(d, 0), n).add_(
                        src.narrow(dim, max(-d, 0), n))
        return gx, None


def cycle_stack(x, kernel_sizes):
    """The inputs of several Cycle FCs and a channel FC side by side, for one
    matrix product over channels-last maps.

    For pseudo-kernels ``k_1 .. k_m`` the result holds, per pixel, the
    channels of ``cycle_shift(x, k_i)`` for each ``i``, then ``x`` itself,
    then a constant 1 (so that a product with the stacked weights also adds
    the biases). Cycle FC ``i`` with ``weight`` ``W_i`` and ``bias`` ``b_i``
    is then ``stack[..., i * C:(i + 1) * C] @ W_i.T + b_i``.

    Args:
        x (Tensor): channels-last ``(N, H, W, C)`` map, contiguous.
        kernel_sizes (Sequence[int | tuple[int, int]]): the pseudo-kernels.

    Returns:
        Tensor: ``(N, H, W, (m + 1) * C + 1)``; differentiable with respect
        to ``x``.
    """
    if x.dim() != 4:
        raise ValueError(f'cycle_stack expects an (N, H, W, C) tensor, got '
                         f'shape {tuple(x.shape)}')
    plan = _stack_plan(kernel_sizes)
    if exporting():
        stack, order = _stack_grouped(x, plan)
        return stack.index_select(-1, _inverse(order, x.device))
    return _CycleStack.apply(x.contiguous(), plan)


def cycle_stack_grouped(x, kernel_sizes):
    """The columns of :func:`cycle_stack` in another order, each shift's
    channels grouped by residue class, from out-of-place ops only: what
    exports to ONNX without a gather over the whole stack (the weights
    that multiply it are reordered instead).

    Args:
        x (Tensor): channels-last ``(N, H, W, C)`` map.
        kernel_sizes (Sequence[int | tuple[int, int]]): the pseudo-kernels.

    Returns:
        tuple[Tensor, Tensor]: the stack, and ``order`` (long) with
        ``stack[..., i] == cycle_stack(x, kernel_sizes)[..., order[i]]``.
    """
    stack, order = _stack_grouped(x, _stack_plan(kernel_sizes))
    return stack, torch.tensor(order, device=x.device)


def cycle_stack_rows(x, kernel_sizes, top, end):
    """Rows ``top .. end`` of ``cycle_stack(x, kernel_sizes)``, built from
    those rows of ``x`` and the rows their vertical shifts read; without
    autograd.

    Args:
        x (Tensor): channels-last ``(N, H, W, C)`` map, contiguous.
        kernel_sizes (Sequence[int | tuple[int, int]]): the pseudo-kernels.
        top (int): first row.
        end (int): one past the last row.

    Returns:
        Tensor: ``(N, end - top, W, (m + 1) * C + 1)``.
    """
    plan = _stack_plan(kernel_sizes)
    out = x.new_empty((x.shape[0], end - top, x.shape[2],
                       (len(plan) + 1) * x.shape[-1] + 1))
    return _stack_shifts(x.contiguous(), plan, out, top)


def cycle_stack_sum(x, kernel_sizes):
    """``cycle_stack(x, kernel_sizes).sum(dim=(1, 2))`` without building the
    stack: the sum of a shifted channel is the sum of the rows or columns
    that the shift reads. Computed from the map's row and column sums, with
    out-of-place ops only (so the ONNX export keeps it at every input size),
    and its gradient is two broadcasts.

    Args:
        x (Tensor): channels-last ``(N, H, W, C)`` map.
        kernel_sizes (Sequence[int | tuple[int, int]]): the pseudo-kernels.

    Returns:
        Tensor: ``(N, (m + 1) * C + 1)``; differentiable.
    """
    c = x.shape[-1]
    lines = {2: x.sum(dim=1), 1: x.sum(dim=2)}  # (N, W, C) and (N, H, C)
    total = lines[2].sum(dim=1)
    parts, order = [], []
    for i, (dim, shifts) in enumerate(_stack_plan(kernel_sizes)):
        line, k = lines[dim], len(shifts)
        for j, d in enumerate(shifts[:c]):
            part = _residue_slice(line, j, k, -1)
            n = line.shape[1] - abs(d)  # lines the shift reads
            parts.append(part.narrow(1, max(d, 0), n).sum(dim=1) if n > 0
                         else torch.zeros_like(part[:, 0]))
            order += [i * c + ch for ch in range(j, c, k)]
    sums = torch.cat(parts, dim=1).index_select(1, _inverse(order, x.device))
    if exporting():  # the pixel count at the run's input size
        count = torch.ones_like(x[..., :1]).sum(dim=(1, 2))
    else:
        count = total.new_full((x.shape[0], 1),
                               float(x.shape[1] * x.shape[2]))
    return torch.cat([sums, total, count], dim=1)


def cycle_offset(in_channels, kernel_size, device=None):
    """The original's deform-conv offset tensor for a Cycle FC.

    Args:
        in_channels (int): input channels.
        kernel_size (int | tuple[int, int]): the pseudo-kernel.
        device (torch.device, optional): where to build it; default: the
            current default device.

    Returns:
        Tensor: ``(1, 2 * in_channels, 1, 1)`` float32, ``(dy, dx)`` per
        input channel, as the original stores in its ``offset`` buffer.
    """
    dim, shifts = cycle_shifts(kernel_size)
    k = len(shifts)
    offset = torch.zeros(in_channels, 2, device=device)
    offset[:, 1 if dim == -1 else 0] = torch.tensor(
        [float(shifts[c % k]) for c in range(in_channels)], device=device)
    return offset.reshape(1, 2 * in_channels, 1, 1)


class CycleFC(nn.Module):
    """Cycle FC as a per-channel shift followed by a 1x1 projection.

    Numerically the original ``CycleFC`` (a deformable 1x1 convolution with
    fixed integer offsets), for any map size, forward and backward.

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels.
        kernel_size (int | tuple[int, int]): the pseudo-kernel, ``(1, k)`` or
            ``(k, 1)`` (an int only as 1).
        stride (int): must be 1 (as in the original). Default: 1.
        padding (int): must be 0 (as in the original). Default: 0.
        bias (bool): add a learnable bias. Default: True.

    Attributes:
        weight (Parameter): ``(out_channels, in_channels, 1, 1)``.
        bias (Parameter | None): ``(out_channels, )``.
        offset (Tensor): persistent buffer ``(1, 2 * in_channels, 1, 1)``,
            the original's offsets, kept for checkpoint compatibility; a
            state dict whose ``offset`` differs is refused on load.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1,
                 padding=0, bias=True):
        super().__init__()
        if int(in_channels) < 1 or int(out_channels) < 1:
            raise ModelArgumentError(
                f'CycleFC needs positive channel counts, got '
                f'{in_channels} -> {out_channels}')
        if stride not in (1, (1, 1)):
            raise ModelArgumentError(
                f'CycleFC supports only stride 1, got {stride}')
        if padding not in (0, (0, 0)):
            raise ModelArgumentError(f'CycleFC supports only padding 0, got '
                                     f'{padding}')
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = _check_kernel_size(kernel_size)
        self.weight = nn.Parameter(
            torch.empty(self.out_channels, self.in_channels, 1, 1))
        if bias:
            self.bias = nn.Parameter(torch.empty(self.out_channels))
        else:
            self.register_parameter('bias', None)
        self.register_buffer('offset',
                             cycle_offset(self.in_channels, self.kernel_size))
        self.reset_parameters()

    def reset_parameters(self):
        """The original's initialization (that of ``nn.Conv2d``)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_channels)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        """Apply the layer.

        Args:
            x (Tensor): ``(N, in_channels, H, W)``, any ``H, W >= 1``.

        Returns:
            Tensor: ``(N, out_channels, H, W)``.
        """
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'CycleFC expects (N, {self.in_channels}, H, W) '
                             f'input, got shape {tuple(x.shape)}')
        return F.conv2d(cycle_shift(x, self.kernel_size), self.weight,
                        self.bias)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              strict, missing_keys, unexpected_keys,
                              error_msgs):
        key = prefix + 'offset'
        value = state_dict.get(key)
        if (torch.is_tensor(value) and value.shape == self.offset.shape
                and not value.is_meta):
            expected = cycle_offset(self.in_channels, self.kernel_size,
                                    device='cpu')
            if not torch.equal(value.detach().float().cpu(), expected):
                raise CheckpointMismatchError(
                    f'{key}: the checkpoint holds offsets that differ from '
                    f'the fixed Cycle FC offsets of kernel_size '
                    f'{self.kernel_size} with {self.in_channels} channels; '
                    f'this layer computes its shifts and cannot use other '
                    f'offsets')
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def extra_repr(self):
        s = (f'{self.in_channels}, {self.out_channels}, '
             f'kernel_size={self.kernel_size}')
        return s + (', bias=False' if self.bias is None else '')
