"""Resolution transfer: resample the weights that are tied to a partition
size or to a grid of partitions.

Two kinds of RepMLP weights depend on the resolution a model was built for:

* the partition perceptron ``fc3`` (RepMLPNet's :class:`~mmrep.models.
  layers.RepMLPBlock` and RepMLP v1's :class:`~mmrep.models.layers.
  RepMLPUnit`), an FC from the ``h x w`` pixels of a partition to the
  ``h x w`` pixels of the output partition, with its bias and, in the v1
  unit's train-time form, the per-output-pixel ``fc3_bn``;
* the v1 unit's global perceptron ``fc1_fc2``, an MLP whose input and output
  are the ``C x (H/h) x (W/w)`` grid of partition averages.

When a checkpoint was trained with another partition size or grid (e.g.
ImageNet weights at 224x224 loaded into a Cityscapes model built for
512x1024 crops), these tensors are resampled to the model's sizes.

**Method.** A weight over pixel grids is seen as a linear operator between
images. Let ``U`` be the bilinear resampling from the checkpoint's output
grid to the model's and ``D`` the bilinear resampling from the model's input
grid to the checkpoint's (``F.interpolate`` semantics, ``align_corners=
False``, anti-aliased when shrinking; every row of ``U`` and ``D`` sums to
one). The new weight is ``W' = U W D``: on the model's grid it computes
exactly "resample the input to the checkpoint's grid, apply the checkpoint's
layer, resample the result to the model's grid". On the output side this is
bilinear interpolation of the weight over its output pixels; on the input
side it is the adjoint, ``D^T``, which spreads each of the checkpoint's input
pixels over about ``h'w' / hw`` model pixels with weights of about
``hw / h'w'`` each (the ``hw / h'w'`` scaling that keeps the response to a
smooth input unchanged when more input pixels sum in). Unlike scaling an
interpolated weight by ``hw / h'w'``, ``D`` reproduces a constant input
exactly (its rows sum to one), so the only deviation for a smooth input is
the bilinear interpolation error of the input. Biases and the per-pixel BN
statistics and affine parameters are interpolated with ``U`` (they live on
the output grid); per-channel tensors, the conv branches and everything
else are left alone.

``fc1_fc2`` is resampled the same way on its grid sides (``fc1``'s input,
``fc2``'s output and bias). When its hidden width changes too (it is the
grid width divided by ``fc1_fc2_reduction``), hidden units are duplicated
(growing: ``fc1`` rows copied, ``fc2`` columns divided by the number of
copies, which leaves the MLP's function unchanged since ReLU commutes with
copying) or merged in contiguous groups (shrinking: ``fc1`` rows averaged,
``fc2`` columns summed, an approximation).

Every resampled tensor is logged with its key and its old and new shapes.
The family files walk their own modules and name their keys
(``adapt_checkpoint`` in ``repmlpnet.py`` and ``repmlp_resnet.py``); this
module holds the resampling.
"""
import math

import torch
from mmengine.logging import print_log



def resize_matrix(src, dst, dtype=torch.float64, device=None):
    """The matrix of 1-D linear resampling from ``src`` to ``dst`` samples.

    The weights of ``F.interpolate(mode='bilinear', align_corners=False,
    antialias=True)`` along one axis, written out: sample ``j`` sits at
    ``c = (j + 0.5) * src / dst`` in input coordinates (pixel ``i`` covers
    ``[i, i + 1)``) and takes the input pixels ``i`` with the triangle
    weights ``max(0, 1 - |i + 0.5 - c| / s)``, normalized to sum to one, where
    ``s = max(src / dst, 1)``: linear interpolation between the two nearest
    pixels when growing (edge pixels repeat outside), a triangle filter as
    wide as the step when shrinking, so every input pixel contributes.

    Args:
        src (int): input length.
        dst (int): output length.
        dtype (torch.dtype): dtype of the matrix. Default: float64.
        device (torch.device, optional): device of the matrix.

    Returns:
        Tensor: ``(dst, src)`` matrix ``R`` with ``y = R @ x``; its entries
        are non-negative and its rows sum to one.
    """
    if src == dst:
        return torch.eye(src, dtype=dtype, device=device)
    scale = src / dst
    support = max(scale, 1.0)
    centre = (torch.arange(dst, dtype=torch.float64) + 0.5) * scale
    if scale < 1:  # growing: clamp so edge pixels repeat
        centre = centre.clamp(0.5, src - 0.5)
    pixel = torch.arange(src, dtype=torch.float64) + 0.5
    weight = (1 - (pixel[None, :] - centre[:, None]).abs() / support)
    weight = weight.clamp(min=0)
    weight = weight / weight.sum(1, keepdim=True)
    return weight.to(dtype=dtype, device=device)


def _apply(x, mat, dim):
    """Contract axis ``dim`` of ``x`` with ``mat`` (``(new, old)``)."""
    return torch.movedim(torch.tensordot(x, mat, dims=([dim], [1])), -1, dim)


def resample_grid(x, old_size, new_size, dims, side='output'):
    """Resample two axes of ``x`` that index an ``old_size`` pixel grid.

    Args:
        x (Tensor): any tensor whose axes ``dims`` have lengths
            ``old_size``.
        old_size (tuple[int, int]): the grid ``(h, w)`` of ``x``.
        new_size (tuple[int, int]): the grid ``(h', w')`` wanted.
        dims (tuple[int, int]): the row and column axes.
        side (str): ``'output'``: the axes index values (outputs of a layer,
            biases, statistics), which are interpolated, ``x' = U x``;
            ``'input'``: the axes index the inputs a weight sums over, which
            get the adjoint of the resampling from the new grid to the old,
            ``x' = x D`` (see the module docstring).

    Returns:
        Tensor: ``x`` with axes ``dims`` of lengths ``new_size``, in
        ``x``'s dtype (computed in float64).
    """
    if side not in ('output', 'input'):
        raise ValueError(f"side must be 'output' or 'input', got {side!r}")
    y = x.to(torch.float64)
    for dim, old, new in zip(dims, old_size, new_size):
        if side == 'output':
            mat = resize_matrix(old, new, device=x.device)
        else:
            mat = resize_matrix(new, old, device=x.device).t()
        y = _apply(y, mat, dim)
    return y.to(x.dtype)


def resample_fc3_weight(weight, out_sets, old_size, new_size):
    """Resample a partition FC weight to another partition size.

    The weight is read as ``(out_sets, h, w, in_per_group, h, w)``: the
    layout of RepMLPNet's ``fc3`` (``out_sets`` = share sets, one input
    channel per group) and of RepMLP v1's grouped ``fc3`` (``out_sets`` = the
    output channels ``O``, ``in_per_group`` = ``C / groups``). Output pixels
    are interpolated, input pixels get the adjoint resampling (module
    docstring).

    Args:
        weight (Tensor): ``(out_sets*h*w, in_per_group*h*w[, 1, 1])``.
        out_sets (int): the leading channel factor of the rows.
        old_size (tuple[int, int]): the checkpoint's partition ``(h, w)``.
        new_size (tuple[int, int]): the model's partition ``(h', w')``.

    Returns:
        Tensor: ``(out_sets*h'*w', in_per_group*h'*w'[, 1, 1])``.
    """
    (h, w), (nh, nw) = old_size, new_size
    trailing = weight.shape[2:]
    in_per_group = weight.size(1) // (h * w)
    x = weight.reshape(out_sets, h, w, in_per_group, h, w)
    x = resample_grid(x, old_size, new_size, (1, 2), 'output')
    x = resample_grid(x, old_size, new_size, (4, 5), 'input')
    return x.reshape(out_sets * nh * nw, in_per_group * nh * nw, *trailing)


def resample_pixel_vector(vec, channels, old_size, new_size):
    """Interpolate a per-output-pixel vector (``fc3`` bias, RepMLP v1's
    ``fc3_bn`` weight, bias and running statistics).

    Args:
        vec (Tensor): ``(channels*h*w,)``, channel-major.
        channels (int): the channel factor.
        old_size (tuple[int, int]): ``(h, w)``.
        new_size (tuple[int, int]): ``(h', w')``.

    Returns:
        Tensor: ``(channels*h'*w',)``. Non-negative inputs (variances) stay
        non-negative: the interpolation weights are.
    """
    x = vec.reshape(channels, *old_size)
    x = resample_grid(x, old_size, new_size, (1, 2), 'output')
    return x.reshape(-1)


def hidden_mapping(old, new):
    """How hidden units of an MLP are duplicated or merged.

    Args:
        old (int): the checkpoint's hidden width.
        new (int): the model's hidden width.

    Returns:
        Tensor: ``(new, old)`` matrix ``M`` with ``fc1' = M fc1`` (rows) and
        ``fc2' = fc2 M^+`` where ``M^+`` is ``M`` transposed with each
        column divided by its sum when growing (copies), and with ones
        where ``M`` is non-zero when shrinking (groups summed). Growing
        (``new >= old``): row ``j`` of ``M`` selects old unit
        ``floor(j * old / new)``; shrinking: row ``j`` averages old units
        ``i`` with ``floor(i * new / old) == j``.
    """
    m = torch.zeros(new, old, dtype=torch.float64)
    if new >= old:
        m[torch.arange(new), torch.arange(new) * old // new] = 1
    else:
        m[torch.arange(old) * new // old, torch.arange(old)] = 1
        m = m / m.sum(1, keepdim=True)
    return m


def _fc2_hidden_matrix(m):
    """The ``(old, new)`` matrix applied to ``fc2``'s columns."""
    new, old = m.shape
    if new >= old:  # copies: split each old unit's outgoing weight
        return m.t() / m.sum(0, keepdim=True).t()
    return (m > 0).to(m.dtype).t()  # groups: the merged unit sums them


def resample_fc1_fc2(params, channels, old_grid, new_grid, hidden):
    """Resample the global perceptron ``fc1_fc2`` to another grid.

    Args:
        params (dict[str, Tensor]): ``fc1.weight`` ``(hid, C*gh*gw)``,
            ``fc1.bias`` ``(hid,)``, ``fc2.weight`` ``(C*gh*gw, hid)``,
            ``fc2.bias`` ``(C*gh*gw,)``, inputs and outputs flattened
            C-major; missing entries are skipped.
        channels (int): ``C``.
        old_grid (tuple[int, int]): the checkpoint's grid ``(gh, gw)``.
        new_grid (tuple[int, int]): the model's grid.
        hidden (int): the model's hidden width.

    Returns:
        dict[str, Tensor]: the same keys, resampled.
    """
    out = {}
    old_hidden = None
    for key in ('fc1.weight', 'fc1.bias', 'fc2.weight'):
        if key in params:
            t = params[key]
            old_hidden = t.size(1) if key == 'fc2.weight' else t.size(0)
            break
    m = None if old_hidden is None else hidden_mapping(old_hidden, hidden)
    for key, t in params.items():
        dtype = t.dtype
        x = t.to(torch.float64)
        if key == 'fc1.weight':
            x = x.reshape(x.size(0), channels, *old_grid)
            x = resample_grid(x, old_grid, new_grid, (2, 3), 'input')
            x = m.to(x.device) @ x.reshape(x.size(0), -1)
        elif key == 'fc1.bias':
            x = m.to(x.device) @ x
        elif key == 'fc2.weight':
            x = x.reshape(channels, *old_grid, x.size(1))
            x = resample_grid(x, old_grid, new_grid, (1, 2), 'output')
            x = x.reshape(-1, x.size(-1)) @ _fc2_hidden_matrix(m).to(x.device)
        elif key == 'fc2.bias':
            x = resample_pixel_vector(x, channels, old_grid, new_grid)
        else:
            raise KeyError(f'unexpected global perceptron parameter '
                           f'{key!r}')
        out[key] = x.to(dtype)
    return out


def infer_grid_size(n, like):
    """Split ``n`` cells into ``(rows, cols)``.

    A perfect square is taken as square (the released checkpoints were
    trained on square images); otherwise the factor pair whose aspect ratio
    is closest to ``like``'s.

    Args:
        n (int): number of cells (``h*w``).
        like (tuple[int, int]): a grid whose shape to follow.

    Returns:
        tuple[int, int]: ``(rows, cols)`` with ``rows * cols == n``.
    """
    root = math.isqrt(n)
    if root * root == n:
        return (root, root)
    target = math.log(like[0] / like[1])
    pairs = [(a, n // a) for a in range(1, n + 1) if n % a == 0]
    return min(pairs, key=lambda p: abs(math.log(p[0] / p[1]) - target))


def _log(key, old, new, what):
    print_log(f'resolution transfer: {key} {tuple(old.shape)} -> '
              f'{tuple(new.shape)} ({what})', logger='current')


def resample_fc3_state(state, prefix, out_sets, size, pixel_vector_keys):
    """Resample a partition perceptron's ``prefix + 'weight'`` (and the
    per-output-pixel tensors ``pixel_vector_keys``) in place, where the
    checkpoint's was built for another partition size; each resampled
    tensor is logged.

    Args:
        state (dict[str, Tensor]): converted weights, changed in place.
        prefix (str): the partition perceptron's key prefix.
        out_sets (int): its output sets (share sets, or channels).
        size (tuple[int, int]): the model's partition ``(h, w)``.
        pixel_vector_keys (tuple[str]): keys of per-output-pixel tensors
            (its bias, a per-pixel BN).
    """
    key = prefix + 'weight'
    if key not in state:
        return
    weight = state[key]
    hw = size[0] * size[1]
    if weight.size(0) == out_sets * hw or weight.size(0) % out_sets:
        return  # fits, or not a checkpoint of this layer at all
    old_hw = weight.size(0) // out_sets
    if weight.size(1) % old_hw:
        return
    old = infer_grid_size(old_hw, size)
    what = f'partition {old[0]}x{old[1]} -> {size[0]}x{size[1]}'
    state[key] = resample_fc3_weight(weight, out_sets, old, size)
    _log(key, weight, state[key], what)
    for k in pixel_vector_keys:
        if k in state and state[k].numel() == out_sets * old_hw:
            new = resample_pixel_vector(state[k], out_sets, old, size)
            _log(k, state[k], new, what)
            state[k] = new


def resample_grid_mlp_state(state, p, channels, grid, hidden):
    """Resample a global perceptron over a grid of partition averages
    (``p + 'fc1.weight'`` .. ``p + 'fc2.bias'``, :func:`resample_fc1_fc2`)
    in place, where the checkpoint's was built for another grid or hidden
    width; each resampled tensor is logged.

    Args:
        state (dict[str, Tensor]): converted weights, changed in place.
        p (str): the perceptron's key prefix.
        channels (int): channels ``C`` of the grid.
        grid (tuple[int, int]): the model's grid.
        hidden (int): the model's hidden width.
    """
    names = ('fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias')
    if p + 'fc1.weight' not in state:
        return
    params = {n: state[p + n] for n in names if p + n in state}
    C = channels
    width = params['fc1.weight'].size(1)
    cells = grid[0] * grid[1]
    if width % C or (width == C * cells
                     and params['fc1.weight'].size(0) == hidden):
        return
    old = grid if width == C * cells else infer_grid_size(width // C, grid)
    new_params = resample_fc1_fc2(params, C, old, grid, hidden)
    what = (f'grid {old[0]}x{old[1]} -> {grid[0]}x{grid[1]}, '
            f'hidden {params["fc1.weight"].size(0)} -> {hidden}')
    for n, t in new_params.items():
        _log(p + n, params[n], t, what)
        state[p + n] = t
