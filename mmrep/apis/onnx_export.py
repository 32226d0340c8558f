"""Exporting a (fused) model's tensor forward to ONNX and checking the file
with onnxruntime, for tools/export_onnx.py."""
import os
import os.path as osp
import warnings

import torch
import torch.nn as nn

from ..deploy import onnx_pooling, tensor_outputs
from ..deploy.runtime import run_session, session
from ..utils import atomic_write


def default_verify_shapes(shape):
    """Other sizes ``--verify --dynamic`` checks: 200x333 (a multiple of no
    partition or stride), twice the export size and about half of it, off
    the multiples of 32.

    Args:
        shape (tuple[int, int]): the export size ``(H, W)``.

    Returns:
        list[tuple[int, int]]: the sizes.
    """
    h, w = shape
    return [(200, 333), (2 * h, 2 * w), (h // 2 + 7, w // 2 + 13)]


class TensorForward(nn.Module):
    """:func:`mmrep.deploy.tensor_outputs` as a module, for export.

    Args:
        model (nn.Module): an OpenMMLab model whose forward takes ``mode``.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        """Run the model.

        Args:
            x (Tensor): preprocessed images ``(N, 3, H, W)``.

        Returns:
            tuple[Tensor]: the model's tensor outputs, in order.
        """
        return tuple(tensor_outputs(self.model, x))


def dynamic_axes(outputs):
    """ONNX ``dynamic_axes``: batch, height and width of the input and every
    axis but the channels (axis 1) of each output.

    Args:
        outputs (list[Tensor]): the model's outputs on the example input.

    Returns:
        dict: ``{name: {axis: axis name}}``.
    """
    axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
    for i, out in enumerate(outputs):
        axes[f'output{i}'] = {d: 'batch' if d == 0 else f'output{i}_dim{d}'
                              for d in range(out.dim()) if d != 1}
    return axes


def exporter_options(dynamo):
    """What the chosen exporter needs beyond the common arguments: the
    ``torch.export`` one writes its weights into the one file and does not
    print its report."""
    return dict(external_data=False, verbose=False) if dynamo else {}


def export(model, x, out, opset=17, dynamic=False, dynamo=False):
    """Write ``model``'s tensor forward on inputs shaped like ``x`` to ONNX.

    The file is written beside ``out`` and renamed into place, so a failed
    export leaves nothing behind. Adaptive average pooling is exported as
    products with pooling matrices (:func:`mmrep.deploy.onnx_pooling`).

    Args:
        model (nn.Module): the (fused) model.
        x (Tensor): an example input; its shape is fixed in the graph
            unless ``dynamic``.
        out (str): the .onnx file.
        opset (int): ONNX opset version. Default: 17.
        dynamic (bool): free batch, height and width. Default: False.
        dynamo (bool): torch's ``torch.export``-based exporter (needs
            onnxscript) instead of the TorchScript one; mmrep models
            export exactly through both. Default: False.

    Returns:
        list[str]: the output names (``output0``, ``output1``, ...).
    """
    wrapper = TensorForward(model).eval()
    with torch.no_grad():
        outputs = wrapper(x)
    names = [f'output{i}' for i in range(len(outputs))]
    axes = dynamic_axes(outputs) if dynamic else None
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)

    def write(tmp):
        with torch.no_grad(), warnings.catch_warnings(), onnx_pooling():
            warnings.simplefilter('ignore')
            torch.onnx.export(wrapper, (x, ), tmp, input_names=['input'],
                              output_names=names, opset_version=opset,
                              dynamic_axes=axes, do_constant_folding=True,
                              dynamo=dynamo, **exporter_options(dynamo))
    atomic_write(out, write)
    return names


def run_onnx(path, x):
    """Run an exported file with onnxruntime on the CPU
    (:func:`~mmrep.deploy.runtime.session`).

    Args:
        path (str): the .onnx file.
        x (Tensor): the input.

    Returns:
        list[Tensor]: the outputs.
    """
    return [torch.from_numpy(o) for o in run_session(session(path), x)]


def max_difference(expected, actual):
    """Largest absolute difference over matching outputs, and the scale.

    Args:
        expected (list[Tensor]): reference outputs.
        actual (list[Tensor]): outputs to compare.

    Returns:
        tuple[float, float]: max abs difference and
        ``max(1, largest |expected|)``.

    Raises:
        ValueError: the number or the shapes of the outputs differ.
    """
    if len(expected) != len(actual):
        raise ValueError(f'{len(actual)} outputs, expected {len(expected)}')
    diff, scale = 0., 1.
    for a, b in zip(expected, actual):
        if a.shape != b.shape:
            raise ValueError(f'output shape {tuple(b.shape)}, expected '
                             f'{tuple(a.shape)}')
        diff = max(diff, (a.float() - b.float()).abs().max().item())
        scale = max(scale, a.abs().max().item())
    return diff, scale


def random_input(batch, shape):
    """A seeded ``(batch, 3, H, W)`` normal input.

    Args:
        batch (int): the batch size.
        shape (tuple[int, int]): ``(H, W)``.

    Returns:
        Tensor: the input (seed 0).
    """
    return torch.randn(batch, 3, *shape,
                       generator=torch.Generator().manual_seed(0))


def verify(model, path, x):
    """Max difference between the torch model and the ONNX file on ``x``.

    Args:
        model (nn.Module): the (fused) torch model.
        path (str): the .onnx file.
        x (Tensor): the input.

    Returns:
        tuple[float, float]: as :func:`max_difference`.
    """
    with torch.no_grad():
        ref = tensor_outputs(model, x)
    return max_difference(ref, run_onnx(path, x))
