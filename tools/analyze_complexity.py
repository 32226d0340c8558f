"""Parameters, FLOPs and CPU latency of a config's model, train-time and
fused.

Usage:
    python tools/analyze_complexity.py CONFIG [--shape H W]
        [--deploy | --both] [--checkpoint FILE] [--latency-iters N]
        [--out-json FILE] [--cfg-options key=value ...]

The model of any mmseg, mmdet or mmpretrain config is built (its
``init_cfg`` ignored; with ``--checkpoint``, loaded with those weights,
train-time or fused) and analysed on one input ``(1, 3, H, W)`` after the
data preprocessor (``--shape``, default: the config's ``crop_size``, else
224x224), through its tensor forward (a segmentor's decode-head logits, a
detector's raw head outputs, a two-stage detector's features and RPN
outputs, a classifier's logits). By default the model as configured is
measured; ``--deploy`` measures its fused form (every mmrep module fused and
the conv + BN pairs of necks and heads folded, as ``tools/reparam.py``
does), ``--both`` the two. FLOPs and activations are counted by mmengine's
analyzers, as ``mmengine.analysis.get_model_complexity_info`` counts them
(one multiply-add is one FLOP); operators they do not count are named.
``--latency-iters N`` also times N forward passes on the CPU (batch 1, after
one warm-up pass) and reports the median. ``--out-json FILE`` writes the
numbers (:func:`mmrep.apis.measure_complexity`).

Exit status: 0 when measured; 1 for a refused input (missing or
unreadable config or checkpoint, a model that does not build, a checkpoint
that fits neither form or holds NaN or Inf weights (the first one named),
fused weights with the train-time form asked for, missing
``custom_imports``, a shape below 1 or ``--latency-iters`` below 0, an
``--out-json`` that cannot be written, checked before the work): one
``error:`` line on stderr, nothing written; 2 for arguments argparse
rejects.
"""
import argparse
import json
import os
import os.path as osp

from mmengine.config import DictAction

import mmrep  # noqa: F401
from mmrep.apis import (check_writable, load_config, measure_complexity,
                        refusals_as_errors)
from mmrep.apis.complexity import complexity_table
from mmrep.checkpoints import read_state_dict
from mmrep.deploy.walker import check_finite_state
from mmrep.utils import atomic_write, enforce_weights_only


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    parser.add_argument('config', help='config file')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help="input size (default: the config's crop_size, "
                        'else 224x224)')
    form = parser.add_mutually_exclusive_group()
    form.add_argument('--deploy', action='store_true',
                      help='measure the fused form only')
    form.add_argument('--both', action='store_true',
                      help='measure the train-time and the fused form')
    parser.add_argument('--checkpoint', metavar='FILE',
                        help='load these weights (train-time or fused)')
    parser.add_argument('--latency-iters', type=int, default=0, metavar='N',
                        help='time N forward passes on the CPU (default: '
                        '0, no timing)')
    parser.add_argument('--out-json', metavar='FILE',
                        help='also write the numbers as JSON to FILE')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, key=value')
    return parser.parse_args(argv)


@refusals_as_errors()
def main(argv=None):
    """Run the tool; see the module docstring.

    Args:
        argv (list[str], optional): command-line arguments.

    Returns:
        dict: the numbers (:func:`mmrep.apis.measure_complexity`).

    Raises:
        SystemExit: ``'error: ...'`` (exit status 1) for a refused input,
            nothing written.
    """
    args = parse_args(argv)
    enforce_weights_only()
    cfg = load_config(args.config, args.cfg_options)
    forms = ('deploy', ) if args.deploy else \
        ('train', 'deploy') if args.both else ('train', )
    shape = tuple(args.shape or cfg.get('crop_size', (224, 224)))
    if args.out_json:
        check_writable(args.out_json, '--out-json')
    if args.checkpoint:
        check_finite_state(read_state_dict(args.checkpoint),
                           f'in {args.checkpoint}', 'refusing to measure it')
    result = measure_complexity(cfg, args.config, shape, forms,
                                args.checkpoint, args.latency_iters)
    print(complexity_table(result))
    if args.out_json:
        os.makedirs(osp.dirname(osp.abspath(args.out_json)), exist_ok=True)

        def write(path):
            with open(path, 'w') as f:
                json.dump(result, f, indent=2)
        atomic_write(args.out_json, write)
        print(f'written: {args.out_json}')
    return result


if __name__ == '__main__':
    main()
