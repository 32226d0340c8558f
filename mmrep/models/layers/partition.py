"""Partitions: cutting a map into ``h x w`` partitions, and a convolution
written as the fully-connected layer over a partition that computes the same
thing (RepMLPNet's and RepMLP-Res50's Locality Injection)."""
import torch
import torch.nn.functional as F

from .tracing import exporting


def pad_to_partition(x, h, w):
    """Zero-pad ``x`` on the bottom and right to multiples of ``(h, w)``.

    While tracing (ONNX export) the pad is always recorded, with amounts
    computed from the input's shape, so the graph runs at any size.
    """
    H, W = x.shape[-2:]
    pad_h, pad_w = -H % h, -W % w
    if exporting() or pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    return x


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
