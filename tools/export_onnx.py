"""Export the fused (deploy) form of a trained model to ONNX.

Usage:
    python tools/export_onnx.py CONFIG CHECKPOINT --out FILE [--shape H W]
        [--batch N] [--dynamic] [--opset 17] [--verify]
        [--verify-shapes HxW ...] [--cfg-options key=value ...]

The checkpoint (train-time or already fused) is loaded into the config's
model, which is fused (:func:`mmrep.reparameterize_model`: mmrep modules and
the conv + BN pairs of necks and heads), and the model's tensor forward is
exported, traced on an input ``(N, 3, H, W)`` (``--shape``, default: the
config's ``crop_size``, else 224x224):

* classifier (mmpretrain ``ImageClassifier``): the class logits;
* segmentor (mmseg ``EncoderDecoder``): the decode head's logits at its
  output stride (``mode='tensor'``, no resizing or argmax);
* one-stage detector (mmdet): the raw head outputs (``mode='tensor'``: per
  level class scores and box deltas, flattened in order), without
  post-processing;
* two-stage detector (Faster / Mask R-CNN): what runs without proposals,
  the backbone + neck features and the RPN head's class scores and box
  deltas per level (the RoI heads are not exported).

Without ``--dynamic`` the input shape is fixed and onnxruntime refuses any
other. With ``--dynamic`` the batch, height and width are free
(``dynamic_axes``): padding to partitions and strides, partition reshapes,
crops and adaptive pooling follow the input's shape at run time.

The input is the image after the data preprocessor (normalized, padded), as
the model's ``mode='tensor'`` forward takes it. torch's TorchScript-based
exporter is used (``dynamo=False``). ``--verify`` runs the file with
onnxruntime at the export shape (and with ``--dynamic`` at the
``--verify-shapes``, by default 200x333, twice and about half the export
size, the last at batch 2) and exits with status 2 when it differs from the
fused torch model by more than 1e-4 (relative to the largest output
magnitude, at least 1). Bad input is refused with one ``error:`` line and
nothing is written.
"""
import argparse
import os
import os.path as osp
import sys
import warnings

import torch
import torch.nn as nn
from mmengine.config import DictAction

import mmrep  # noqa: F401
from mmrep.apis import build_model, load_config, load_fused
from mmrep.checkpoints import CheckpointMismatchError
from mmrep.deploy import NonFiniteWeightsError, onnx_pooling, tensor_outputs
from mmrep.utils import atomic_write
from mmrep.utils import (CheckpointLoadError, MissingCustomImportsError,
                         enforce_weights_only)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out', required=True, help='the .onnx file')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help="input size (default: the config's crop_size, "
                        'else 224x224)')
    parser.add_argument('--batch', type=int, default=1,
                        help='batch size of the exported input (default 1)')
    parser.add_argument('--dynamic', action='store_true',
                        help='free batch, height and width (ONNX '
                        'dynamic_axes); --shape is then only the tracing '
                        'example')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--verify', action='store_true',
                        help='compare onnxruntime with torch (needs '
                        'onnxruntime)')
    parser.add_argument('--verify-shapes', nargs='+', metavar='HxW',
                        type=parse_shape,
                        help='with --dynamic: the other input sizes --verify '
                        'checks (default: 200x333, twice and about half the '
                        'export size)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def parse_shape(text):
    """``'200x333' -> (200, 333)``."""
    try:
        h, w = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'expected HxW (e.g. 200x333), got {text!r}') from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f'sizes must be positive: {text!r}')
    return h, w


def default_verify_shapes(shape):
    """Other sizes ``--verify --dynamic`` checks: 200x333 (a multiple of no
    partition or stride), twice the export size and about half of it, off
    the multiples of 32."""
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


def export(model, x, out, opset=17, dynamic=False):
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
                              dynamo=False)
    atomic_write(out, write)
    return names


def run_onnx(path, x):
    """Run an exported file with onnxruntime on the CPU.

    Args:
        path (str): the .onnx file.
        x (Tensor): the input.

    Returns:
        list[Tensor]: the outputs.
    """
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    feed = {session.get_inputs()[0].name: x.numpy()}
    return [torch.from_numpy(o) for o in session.run(None, feed)]


def max_difference(expected, actual):
    """Largest absolute difference over matching outputs, and the scale.

    Args:
        expected (list[Tensor]): reference outputs.
        actual (list[Tensor]): outputs to compare.

    Returns:
        tuple[float, float]: max abs difference and
        ``max(1, largest |expected|)``.
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


def run(args):
    """Export (and verify); see the module docstring.

    Args:
        args (argparse.Namespace): parsed arguments.

    Returns:
        int: exit status (0: written; 2: ``--verify`` failed).
    """
    cfg = load_config(args.config, args.cfg_options)
    if args.batch < 1:
        raise ValueError(f'--batch must be positive, got {args.batch}')
    if args.verify_shapes and not args.dynamic:
        raise ValueError('--verify-shapes needs --dynamic (a file exported '
                         'without it runs at its export shape only)')
    shape = tuple(args.shape or cfg.get('crop_size', (224, 224)))
    model = load_fused(cfg, args.checkpoint)
    x = random_input(args.batch, shape)
    export(model, x, args.out, args.opset, args.dynamic)
    size = 'dynamic (N, 3, H, W) input, traced at ' if args.dynamic else ''
    print(f'ONNX model ({size}{args.batch}x3x{shape[0]}x{shape[1]} input, '
          f'opset {args.opset}): {args.out}')
    if not args.verify:
        return 0
    inputs = [x]
    if args.dynamic:
        others = args.verify_shapes or default_verify_shapes(shape)
        inputs += [random_input(2 if i == len(others) - 1 else 1, s)
                   for i, s in enumerate(others)]
    failed = False
    for inp in inputs:
        diff, scale = verify(model, args.out, inp)
        n, _, h, w = inp.shape
        print(f'verify with onnxruntime at {n}x3x{h}x{w}: max abs diff '
              f'{diff:.3g} (output scale {scale:.3g})')
        failed = failed or diff > 1e-4 * scale
    if failed:
        print('error: onnxruntime differs from torch by more than 1e-4',
              file=sys.stderr)
        return 2
    return 0


def random_input(batch, shape):
    """A seeded ``(batch, 3, H, W)`` normal input."""
    return torch.randn(batch, 3, *shape,
                       generator=torch.Generator().manual_seed(0))


def verify(model, path, x):
    """Max difference between the torch model and the ONNX file on ``x``.

    Returns:
        tuple[float, float]: as :func:`max_difference`.
    """
    with torch.no_grad():
        ref = tensor_outputs(model, x)
    return max_difference(ref, run_onnx(path, x))


def main(argv=None):
    """Run the tool.

    Args:
        argv (list[str], optional): command-line arguments.

    Returns:
        int: exit status (0: written; 1: bad input, nothing written;
        2: ``--verify`` failed).
    """
    args = parse_args(argv)
    enforce_weights_only()
    try:
        return run(args)
    except (CheckpointLoadError, CheckpointMismatchError, FileNotFoundError,
            MissingCustomImportsError, NonFiniteWeightsError,
            ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
