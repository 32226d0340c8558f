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

The class, :class:`~mmrep.deploy.uper_head.DeployUPerHead`, subclasses
mmseg's ``UPerHead`` and so needs all of ``mmseg.models`` (seconds to
import, mmdet's and mmpretrain's models with it). It is defined in
:mod:`mmrep.deploy.uper_head`, which mmrep's ``MODELS`` registry imports on
the first lookup of ``DeployUPerHead`` (``mmrep.registry.LazyRegistry``): a
config's ``type='mmrep.DeployUPerHead'``, or :func:`deploy_uper_head` here.
``import mmrep`` imports no mmseg.
"""
import torch

from ..dependencies import optional_library
from ..registry import MODELS

#: What an unusable mmseg (out of range, or failing its own import checks)
#: disables, in its one logged warning.
NEEDED_FOR = 'the deploy form of UPerHead'


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


def deploy_uper_head(load=True):
    """The deploy form of mmseg's ``UPerHead``.

    Args:
        load (bool): define it when it is not yet: import
            :mod:`mmrep.deploy.uper_head` and with it ``mmseg.models``,
            through mmrep's ``MODELS`` registry. With ``False`` it is
            returned only when already defined (a model can hold one only
            then), and nothing is imported. Default: True.

    Returns:
        type | None: :class:`~mmrep.deploy.uper_head.DeployUPerHead`, or
        ``None`` without a usable mmseg (absent, out of range or failing
        its own import checks; an unusable one is logged once).
    """
    if not load:
        return MODELS.module_dict.get('DeployUPerHead')
    return MODELS.get('DeployUPerHead')


def __getattr__(name):
    """``heads.DeployUPerHead`` and ``heads.UPerHead`` (mmseg's class, the
    one it replaces): defined on first access, ``None`` without a usable
    mmseg."""
    if name in ('DeployUPerHead', 'UPerHead'):
        deploy = deploy_uper_head()
        if deploy is None or name == 'DeployUPerHead':
            return deploy
        return deploy.__bases__[0]
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def deploy_heads(model):
    """Turn every mmseg ``UPerHead`` in ``model`` into a
    :class:`~mmrep.deploy.uper_head.DeployUPerHead` (in place; no parameter
    changes).

    Args:
        model (nn.Module): any model.

    Returns:
        int: how many heads were turned.
    """
    # Only a model with a head of that name makes mmseg's models imported.
    if not any(type(m).__name__ == 'UPerHead' for m in model.modules()):
        return 0
    deploy = deploy_uper_head()
    if deploy is None:
        return 0
    heads = [m for m in model.modules() if type(m) is deploy.__bases__[0]]
    for head in heads:
        head.__class__ = deploy
    return len(heads)


def plain_heads(model):
    """Turn every :class:`~mmrep.deploy.uper_head.DeployUPerHead` of ``model``
    back into mmseg's ``UPerHead`` (in place; same parameters, same
    outputs), the inverse of :func:`deploy_heads`.

    The deploy form moves most of ``fpn_bottleneck``'s work into products
    with resize matrices and per-tap sums, which suits float32 but stays
    float32 in an INT8 graph; the plain head's single 3x3 convolution
    quantizes.

    Args:
        model (nn.Module): a fused model.

    Returns:
        int: how many heads were turned back.
    """
    # Not defined yet (or no usable mmseg): the model holds none; nothing
    # of mmseg is imported for a model without one.
    deploy = deploy_uper_head(load=False)
    if deploy is None:
        return 0
    heads = [m for m in model.modules() if type(m) is deploy]
    for head in heads:
        head.__class__ = deploy.__bases__[0]
    return len(heads)


def deploy_head_type(name):
    """The config ``type`` of a head's deploy form, or ``None`` when it
    keeps its type.

    Args:
        name (str): a config ``type`` (``'UPerHead'``, ``'mmseg.UPerHead'``).

    Returns:
        str | None: ``'mmrep.DeployUPerHead'`` for mmseg's ``UPerHead``.
    """
    # (mmseg's own import only: the class is defined when the config is
    # built, through the registry)
    if name in ('UPerHead', 'mmseg.UPerHead') and \
            optional_library('mmseg', needed_for=NEEDED_FOR):
        return 'mmrep.DeployUPerHead'
    return None
