"""Export the fused (deploy) form of a trained model to ONNX.

Usage:
    python tools/export_onnx.py CONFIG CHECKPOINT --out FILE [--shape H W]
        [--batch N] [--opset 17] [--verify] [--cfg-options key=value ...]

The checkpoint (train-time or already fused) is loaded into the config's
model, every mmrep module is fused (:func:`mmrep.reparameterize_model`) and
the model's tensor forward is exported with a fixed input shape
``(N, 3, H, W)`` (default: the config's ``crop_size``, else 224x224):

* classifier (mmpretrain ``ImageClassifier``): the class logits;
* segmentor (mmseg ``EncoderDecoder``): the decode head's logits at its
  output stride (``mode='tensor'``, no resizing or argmax);
* detector (mmdet): the raw head outputs (``mode='tensor'``: per level class
  scores and box deltas, flattened in order), without post-processing.

The input is the image after the data preprocessor (normalized, padded), as
the model's ``mode='tensor'`` forward takes it. torch's TorchScript-based
exporter is used (``dynamo=False``), which needs no extra packages.
``--verify`` runs the file with onnxruntime and exits with status 2 when it
differs from the fused torch model by more than 1e-4 (relative to the
largest output magnitude, at least 1). Bad input is refused with one
``error:`` line and nothing is written.
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
from mmrep.deploy import (NonFiniteWeightsError, make_deploy_config,
                          reparameterize_model)
from mmrep.deploy.hook import atomic_write
from mmrep.models.checkpoint import (CheckpointMismatchError, _fits,
                                     describe_mismatch, read_state_dict)
from mmrep.utils import (CheckpointLoadError, MissingCustomImportsError,
                         enforce_weights_only)
# tools/reparam.py, beside this file
from reparam import build_model, load_config, tensors  # noqa: E402


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
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--verify', action='store_true',
                        help='compare onnxruntime with torch (needs '
                        'onnxruntime)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


class TensorForward(nn.Module):
    """``model(x, mode='tensor')`` with its outputs flattened to a tuple.

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
        return tuple(tensors(self.model(x, mode='tensor')))


def load_fused(cfg, checkpoint):
    """Build the config's model with the checkpoint's weights, fused.

    Args:
        cfg (Config): the (train-time) config.
        checkpoint (str): a train-time or fused checkpoint of that model.

    Returns:
        nn.Module: the fused model in eval mode.

    Raises:
        CheckpointMismatchError: the checkpoint fits neither form.
        NonFiniteWeightsError: NaN or Inf among the weights to fuse.
    """
    state = read_state_dict(checkpoint)
    model = build_model(cfg)
    if _fits(state, model.state_dict()):
        model.load_state_dict(state, strict=True)
        return reparameterize_model(model, inplace=True)
    fused = build_model(make_deploy_config(cfg))
    if _fits(state, fused.state_dict()):
        fused.load_state_dict(state, strict=True)
        return fused.eval()
    raise CheckpointMismatchError(
        f'{checkpoint} does not fit the config: '
        + describe_mismatch(state, model.state_dict()))


def export(model, x, out, opset=17):
    """Write ``model``'s tensor forward on inputs shaped like ``x`` to ONNX.

    The file is written beside ``out`` and renamed into place, so a failed
    export leaves nothing behind.

    Args:
        model (nn.Module): the (fused) model.
        x (Tensor): an example input; its shape is fixed in the graph.
        out (str): the .onnx file.
        opset (int): ONNX opset version. Default: 17.

    Returns:
        list[str]: the output names (``output0``, ``output1``, ...).
    """
    wrapper = TensorForward(model).eval()
    with torch.no_grad():
        num_outputs = len(wrapper(x))
    names = [f'output{i}' for i in range(num_outputs)]
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)

    def write(tmp):
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            torch.onnx.export(wrapper, (x, ), tmp, input_names=['input'],
                              output_names=names, opset_version=opset,
                              do_constant_folding=True, dynamo=False)
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
    shape = tuple(args.shape or cfg.get('crop_size', (224, 224)))
    model = load_fused(cfg, args.checkpoint)
    x = torch.randn(args.batch, 3, *shape,
                    generator=torch.Generator().manual_seed(0))
    export(model, x, args.out, args.opset)
    print(f'ONNX model ({args.batch}x3x{shape[0]}x{shape[1]} input, opset '
          f'{args.opset}): {args.out}')
    if args.verify:
        with torch.no_grad():
            ref = list(TensorForward(model)(x))
        diff, scale = max_difference(ref, run_onnx(args.out, x))
        print(f'verify with onnxruntime: max abs diff {diff:.3g} '
              f'(output scale {scale:.3g})')
        if diff > 1e-4 * scale:
            print('error: onnxruntime differs from torch by more than 1e-4',
                  file=sys.stderr)
            return 2
    return 0


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
