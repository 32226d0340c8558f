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
magnitude, at least 1).

Exit status:
    0: written (and verified, with ``--verify``);
    1: refused input (missing or unreadable config or checkpoint, a
       checkpoint that fits the config in neither form, non-finite weights
       anywhere in the model, the first one named, missing
       ``custom_imports``, ``--batch`` below 1, ``--verify-shapes`` without
       ``--dynamic``, an ``--out`` that cannot be written, checked before
       the work): one ``error:`` line on stderr, nothing written;
    2: ``--verify`` failed (onnxruntime differs from torch; not a refused
       input; the file stays written); also for arguments argparse rejects.
"""
import argparse
import sys

from mmengine.config import DictAction

import mmrep  # noqa: F401
from mmrep.apis import (BadArgumentError, check_writable, load_config,
                        load_fused, note_replacing, refusals_as_errors)
from mmrep.apis.onnx_export import (default_verify_shapes, export,
                                    random_input, verify)
from mmrep.deploy.walker import check_finite_state
from mmrep.utils import enforce_weights_only


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
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


@refusals_as_errors()
def main(argv=None):
    """Run the tool: export (and verify); see the module docstring.

    Args:
        argv (list[str], optional): command-line arguments.

    Returns:
        int: exit status (0: written; 2: ``--verify`` failed).

    Raises:
        SystemExit: ``'error: ...'`` (exit status 1) for a refused input,
            nothing written.
    """
    args = parse_args(argv)
    enforce_weights_only()
    cfg = load_config(args.config, args.cfg_options)
    if args.batch < 1:
        raise BadArgumentError(f'--batch must be positive, got {args.batch}')
    if args.verify_shapes and not args.dynamic:
        raise BadArgumentError('--verify-shapes needs --dynamic (a file '
                               'exported without it runs at its export '
                               'shape only)')
    check_writable(args.out, '--out')
    shape = tuple(args.shape or cfg.get('crop_size', (224, 224)))
    model = load_fused(cfg, args.checkpoint).fused
    check_finite_state(model.state_dict(), f'in {args.checkpoint}',
                       'refusing to export it')
    x = random_input(args.batch, shape)
    note_replacing(args.out)
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


if __name__ == '__main__':
    sys.exit(main())
