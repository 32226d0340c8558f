"""What ONNX export needs beyond the fused model.

* :func:`tensor_outputs`: the tensors a model computes from an image alone
  (``mode='tensor'``, or backbone + neck features and RPN outputs for a
  two-stage detector, whose ``mode='tensor'`` needs proposals).
* :func:`onnx_pooling`: adaptive average pooling written as products with
  pooling matrices computed from the input size, swapped in while a model
  is exported. torch's exporter refuses ``adaptive_avg_pool2d`` whose output
  size does not divide the input size (mmseg's pyramid pooling in PSPNet and
  UperNet, RepMLP-Res50's global perceptron on another grid), and would fix
  the pooling windows to the export size otherwise; the matrices follow the
  input size at run time. PyTorch's own forward is not changed.
"""
import contextlib

import torch
import torch.nn.functional as F


def pooling_matrix(size, bins, dtype=torch.float32, device=None):
    """The ``(bins, size)`` matrix of 1-D adaptive average pooling.

    Row ``i`` averages input positions ``floor(i * size / bins)`` to
    ``ceil((i + 1) * size / bins) - 1``, as ``F.adaptive_avg_pool2d`` does.

    Args:
        size (int | Tensor): input length (a 0-dim tensor while tracing, so
            the exported graph computes the matrix from the input's shape).
        bins (int): output length.
        dtype (torch.dtype): dtype of the matrix.
        device (torch.device, optional): device of the matrix.

    Returns:
        Tensor: ``(bins, size)``, rows summing to one.
    """
    i = torch.arange(bins, device=device)
    start = i * size // bins
    end = ((i + 1) * size + bins - 1) // bins
    j = torch.arange(size, device=device)
    inside = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    weight = inside.to(dtype)
    return weight / weight.sum(1, keepdim=True)


def adaptive_avg_pool2d_by_matrices(x, output_size):
    """``F.adaptive_avg_pool2d(x, output_size)`` as two matrix products.

    Args:
        x (Tensor): ``(..., H, W)``.
        output_size (int | tuple): ``(oh, ow)``; an int or ``None`` entries
            as ``F.adaptive_avg_pool2d`` takes them.

    Returns:
        Tensor: ``(..., oh, ow)``.
    """
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    oh, ow = output_size
    H, W = x.shape[-2:]
    if oh is not None:
        x = torch.matmul(pooling_matrix(H, oh, x.dtype, x.device), x)
    if ow is not None:
        x = torch.matmul(x, pooling_matrix(W, ow, x.dtype, x.device).t())
    return x


@contextlib.contextmanager
def onnx_pooling():
    """Within the block, ``F.adaptive_avg_pool2d`` (and so
    ``nn.AdaptiveAvgPool2d``) computes through
    :func:`adaptive_avg_pool2d_by_matrices`; outside it, as always.

    Used by ``tools/export_onnx.py`` around ``torch.onnx.export``.
    """
    original = F.adaptive_avg_pool2d
    F.adaptive_avg_pool2d = adaptive_avg_pool2d_by_matrices
    try:
        yield
    finally:
        F.adaptive_avg_pool2d = original


def flatten_tensors(output):
    """Flatten a (nested) model output into a list of tensors."""
    if torch.is_tensor(output):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for o in output for t in flatten_tensors(o)]
    return []


def is_two_stage(model):
    """Whether ``model`` is a detector with an RPN (Faster / Mask R-CNN)."""
    return bool(getattr(model, 'with_rpn', False))


def tensor_outputs(model, x):
    """The tensors ``model`` computes from a batch of images alone.

    ``model(x, mode='tensor')`` for classifiers, segmentors and one-stage
    detectors. A two-stage detector's second stage needs proposals, which
    its ``mode='tensor'`` takes from data samples; without them, its
    backbone + neck features and the RPN head's raw outputs (class scores
    and box deltas per level) are returned.

    Args:
        model (nn.Module): an OpenMMLab model.
        x (Tensor): preprocessed images ``(N, 3, H, W)``.

    Returns:
        list[Tensor]: the outputs, flattened in order.
    """
    if is_two_stage(model):
        feats = model.extract_feat(x)
        return flatten_tensors(feats) + flatten_tensors(model.rpn_head(feats))
    return flatten_tensors(model(x, mode='tensor'))
