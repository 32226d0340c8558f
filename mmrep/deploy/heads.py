"""Deploy forms of decode heads: the same weights and outputs, fewer
multiply-adds.

mmseg's ``UPerHead`` ends in ``fpn_bottleneck``, a 3x3 convolution over the
concatenation of the finest FPN map and the three coarser maps resized to
it (bilinear). A convolution and a bilinear resize are both linear, so the
convolution's share of a resized map is, for each of its nine kernel taps,
a 1x1 product at the coarse map's own resolution followed by the resize
read at positions moved by the tap (zero where the tap reads the
convolution's padding). Both resizes are products with small interpolation
matrices (:func:`resize_matrix`), built from the input's size at run time,
so an ONNX export keeps any input size. At a Cityscapes crop with 512
channels this moves three quarters of the bottleneck's multiply-adds to
maps 4, 16 and 64 times smaller; the outputs equal mmseg's to float32
rounding.
"""
import torch
import torch.nn.functional as F

from ..dependencies import optional_library
from ..registry import MODELS

# Without a usable mmseg (absent, out of range, or failing its own import
# checks) there is no head to replace; an unusable one is logged once.
UPerHead = None
if optional_library('mmseg', needed_for='the deploy form of UPerHead'):
    from mmseg.models.decode_heads import UPerHead
    from mmseg.models.utils import resize


def resize_matrix(out_size, in_size, shift=0, dtype=torch.float32,
                  device=None):
    """The ``(out_size, in_size)`` matrix of 1-D bilinear resizing
    (``align_corners=False``, as ``F.interpolate`` with a target size),
    read at positions moved by ``shift``.

    Row ``p`` holds the weights with which the resized line's position
    ``p + shift`` reads the input line; the row is zero where ``p + shift``
    falls outside ``[0, out_size)`` (a convolution's zero padding).

    Args:
        out_size (int | Tensor): resized length (a 0-dim tensor while
            tracing, so the exported graph computes the matrix from the
            input's shape).
        in_size (int | Tensor): input length.
        shift (int): the position offset. Default: 0.
        dtype (torch.dtype): dtype of the matrix.
        device (torch.device, optional): device of the matrix.

    Returns:
        Tensor: ``(out_size, in_size)``.
    """
    p = torch.arange(out_size, device=device).to(dtype) + shift
    src = ((p + 0.5) * (in_size / out_size) - 0.5).clamp(min=0)
    low = src.floor()
    frac = src - low
    high = torch.clamp(low + 1, max=in_size - 1)
    j = torch.arange(in_size, device=device).to(dtype)[None, :]
    weight = (1 - frac)[:, None] * (j == low[:, None]).to(dtype) + \
        frac[:, None] * (j == high[:, None]).to(dtype)
    inside = (p >= 0) & (p <= out_size - 1)
    return weight * inside[:, None].to(dtype)


def conv3x3_of_resized(x, weight, size):
    """``F.conv2d(resize(x, size), weight, padding=1)`` (bilinear,
    ``align_corners=False``, no bias), computed at ``x``'s resolution.

    Args:
        x (Tensor): ``(N, C, h, w)``.
        weight (Tensor): ``(O, C, 3, 3)``.
        size (tuple): ``(H, W)`` of the resized map.

    Returns:
        Tensor: ``(N, O, H, W)``.
    """
    n, channels, h, w = x.shape
    out_channels = weight.shape[0]
    taps = weight.permute(2, 3, 0, 1).reshape(9 * out_channels, channels)
    products = torch.matmul(taps, x.flatten(2)).view(
        n, 3, 3, out_channels, h, w)
    cols = [resize_matrix(size[1], w, kx - 1, x.dtype, x.device).t()
            for kx in range(3)]
    out = None
    for ky in range(3):
        rows = sum(torch.matmul(products[:, ky, kx], cols[kx])
                   for kx in range(3))
        lines = resize_matrix(size[0], h, ky - 1, x.dtype, x.device)
        part = torch.matmul(lines, rows)
        out = part if out is None else out + part
    return out


if UPerHead is not None:

    @MODELS.register_module()
    class DeployUPerHead(UPerHead):
        """mmseg's ``UPerHead`` whose ``fpn_bottleneck`` convolution reads
        the three resized FPN maps at their own resolution
        (:func:`conv3x3_of_resized`); same parameters, same outputs.

        :func:`mmrep.reparameterize_model` turns a ``UPerHead`` into this
        class, and deploy configs name it (``mmrep.DeployUPerHead``). A
        bottleneck this form does not cover (not a 3x3, stride-1,
        padding-1 convolution first, or ``align_corners=True``) runs as
        mmseg's.
        """

        def _decomposable(self):
            module = self.fpn_bottleneck
            conv = module.conv
            return (not self.align_corners and module.order[0] == 'conv'
                    and not module.with_explicit_padding
                    and isinstance(conv, torch.nn.Conv2d)
                    and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
                    and conv.padding == (1, 1) and conv.dilation == (1, 1)
                    and conv.groups == 1 and conv.padding_mode == 'zeros')

        def _forward_feature(self, inputs):
            if not self._decomposable():
                return super()._forward_feature(inputs)
            inputs = self._transform_inputs(inputs)
            laterals = [conv(inputs[i])
                        for i, conv in enumerate(self.lateral_convs)]
            laterals.append(self.psp_forward(inputs))
            for i in range(len(laterals) - 1, 0, -1):
                laterals[i - 1] = laterals[i - 1] + resize(
                    laterals[i], size=laterals[i - 1].shape[2:],
                    mode='bilinear', align_corners=False)
            maps = [fpn_conv(lateral) for fpn_conv, lateral in zip(
                self.fpn_convs, laterals[:-1])] + [laterals[-1]]
            module = self.fpn_bottleneck
            weight = module.conv.weight.split(
                [m.shape[1] for m in maps], dim=1)
            size = maps[0].shape[2:]
            out = F.conv2d(maps[0], weight[0], module.conv.bias, padding=1)
            for x, w in zip(maps[1:], weight[1:]):
                out = out + conv3x3_of_resized(x, w, size)
            for layer in module.order[1:]:
                if layer == 'norm' and module.with_norm:
                    out = module.norm(out)
                elif layer == 'act' and module.with_activation:
                    out = module.activate(out)
            return out


def deploy_heads(model):
    """Turn every mmseg ``UPerHead`` in ``model`` into a
    :class:`DeployUPerHead` (in place; no parameter changes).

    Args:
        model (nn.Module): any model.

    Returns:
        int: how many heads were turned.
    """
    if UPerHead is None:
        return 0
    heads = [m for m in model.modules() if type(m) is UPerHead]
    for head in heads:
        head.__class__ = DeployUPerHead
    return len(heads)


def deploy_head_type(name):
    """The config ``type`` of a head's deploy form, or ``None`` when it
    keeps its type.

    Args:
        name (str): a config ``type`` (``'UPerHead'``, ``'mmseg.UPerHead'``).

    Returns:
        str | None: ``'mmrep.DeployUPerHead'`` for mmseg's ``UPerHead``.
    """
    if UPerHead is not None and name in ('UPerHead', 'mmseg.UPerHead'):
        return 'mmrep.DeployUPerHead'
    return None
