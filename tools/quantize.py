"""Quantize a trained model to INT8 (ONNX, QDQ) and measure its metric and
latency against float32.

Usage:
    python tools/quantize.py CONFIG CHECKPOINT --out MODEL_int8.onnx
        [--calib-batches N] [--calib-method {minmax,entropy,percentile}]
        [--per-channel | --per-tensor] [--keep-float PATTERN ...]
        [--auto-keep-float K] [--op-types Conv MatMul Gemm]
        [--threads N] [--latency-shape H W] [--latency-runs N]
        [--runtimes onnxruntime openvino] [--eval-batches N]
        [--out-float FILE]
        [--out-metrics FILE] [--cfg-options key=value ...]

The checkpoint (train-time or fused) is fused, its tensor forward exported
with dynamic batch, height and width, calibrated on N batches of the
config's data (training images through the test pipeline and the data
preprocessor), and written as a QDQ graph (``QuantizeLinear`` /
``DequantizeLinear`` pairs; activations uint8, weights int8). float32 and
INT8 are then evaluated with the config's test dataloader and evaluator
and timed (median, interleaved, same threads); the JSON (``--out-metrics``,
default ``MODEL_int8.json``) holds ``float32``, ``int8``, ``drop``,
``speedup`` and the ``runtime`` chosen by that timing. The logic is in
:func:`mmrep.apis.quantize.quantize_config`.

Exit status: 0 when written; 1 for a refused input (missing or unreadable
config or checkpoint, a checkpoint that is not the config's model or holds
NaN or Inf weights, a config without test dataloader or evaluator, a
calibration set smaller than ``--calib-batches``, ``--keep-float`` matching
nothing, an output that cannot be written, checked before the work): one
``error:`` line on stderr, nothing written; 2 for arguments argparse
rejects.
"""
import argparse
import sys

from mmengine.config import DictAction

import mmrep  # noqa: F401
from mmrep.apis import load_config, note_replacing, refusals_as_errors
from mmrep.apis.quantize import quantize_config
from mmrep.deploy.quantize import CALIBRATION_METHODS, DEFAULT_OP_TYPES
from mmrep.utils import enforce_weights_only


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out', required=True, help='the INT8 .onnx file')
    parser.add_argument('--calib-batches', type=int, default=8)
    parser.add_argument('--calib-method', default='minmax',
                        choices=sorted(CALIBRATION_METHODS))
    granularity = parser.add_mutually_exclusive_group()
    granularity.add_argument('--per-channel', dest='per_channel',
                             action='store_true', default=True,
                             help='one weight scale per output channel '
                             '(default)')
    granularity.add_argument('--per-tensor', dest='per_channel',
                             action='store_false')
    parser.add_argument('--keep-float', nargs='+', default=[],
                        metavar='PATTERN',
                        help='nodes left float32: fnmatch patterns (or '
                        'substrings) of ONNX node or weight names, e.g. '
                        "'*fc3*'")
    parser.add_argument('--auto-keep-float', type=int, default=0,
                        metavar='K', help='also keep the K nodes INT8 hurts '
                        'most in float32 (one quantization per node)')
    parser.add_argument('--op-types', nargs='+',
                        default=list(DEFAULT_OP_TYPES))
    parser.add_argument('--threads', type=int,
                        help="threads of every runtime (default: torch's)")
    parser.add_argument('--latency-shape', type=int, nargs=2,
                        metavar=('H', 'W'))
    parser.add_argument('--latency-runs', type=int, default=5)
    parser.add_argument('--runtimes', nargs='+',
                        choices=['onnxruntime', 'openvino'],
                        help='runtimes timed (default: onnxruntime, and '
                        'openvino when installed); one other than '
                        'onnxruntime that cannot load the graphs is left '
                        'out with a log line, unless it is the only one')
    parser.add_argument('--eval-batches', type=int,
                        help='evaluate the first N test batches only')
    parser.add_argument('--out-float', metavar='FILE',
                        help='also write the float32 .onnx')
    parser.add_argument('--out-metrics', metavar='FILE')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


@refusals_as_errors()
def main(argv=None):
    """Run the tool; see the module docstring.

    Args:
        argv (list[str], optional): command-line arguments.

    Returns:
        dict: what the JSON holds.

    Raises:
        SystemExit: ``'error: ...'`` (exit status 1) for a refused input,
            nothing written.
    """
    args = parse_args(argv)
    enforce_weights_only()
    cfg = load_config(args.config, args.cfg_options)
    for path in (args.out, args.out_float, args.out_metrics):
        if path:
            note_replacing(path)
    result = quantize_config(
        cfg, args.checkpoint, args.out, calib_batches=args.calib_batches,
        calib_method=args.calib_method, per_channel=args.per_channel,
        keep_float=args.keep_float, auto_keep_float=args.auto_keep_float,
        op_types=tuple(args.op_types), threads=args.threads,
        latency_shape=args.latency_shape, latency_runs=args.latency_runs,
        runtimes=args.runtimes, out_metrics=args.out_metrics,
        out_float=args.out_float, eval_batches=args.eval_batches)
    m = result['metric']
    print(f'{m}: float32 {result["float32"][m]:.2f}, int8 '
          f'{result["int8"][m]:.2f} (drop {result["drop"]:.2f}); latency '
          f'{result["float32"]["latency_ms"]:.1f} -> '
          f'{result["int8"]["latency_ms"]:.1f} ms ({result["speedup"]:.2f}x,'
          f' int8 on {result["runtime"]}); INT8 model: {args.out}')
    return result


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
