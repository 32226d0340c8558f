"""Evaluate a checkpoint with an mmseg, mmdet or mmpretrain config.

Usage:
    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out PATH]
        [--out-metrics FILE] [--show-dir DIR [--show-interval N]] [--tta]
        [--cfg-options key=value ...]
        [--launcher {none,pytorch,slurm,mpi}]

The metrics configured as ``test_evaluator`` are printed by mmengine's
logger and written to ``<work-dir>/<timestamp>/<timestamp>.json``.

``--out PATH`` also writes the predictions, as the config's library's own
tools/test.py does (:func:`mmrep.apis.configure_prediction_output`): for
mmseg, PATH is a folder that gets one PNG label map per image (the test
metrics' ``output_dir``; the metrics are still computed); for mmdet, a
``.pkl`` of the predictions (``DumpDetResults``); for mmpretrain, a ``.pkl``
(mmengine's ``DumpResults``). ``--tta`` tests with the config's
``tta_model`` and ``tta_pipeline`` (:func:`mmrep.apis.use_tta`).

A CHECKPOINT ending in ``.onnx`` (``tools/export_onnx.py``'s float32 graph,
``tools/quantize.py``'s INT8 one) is evaluated with onnxruntime through the
config's test pipeline, data preprocessor and evaluator
(:func:`mmrep.apis.test_onnx`).

The checkpoint must fit the config's model exactly (every key and shape;
:func:`mmrep.apis.preflight_test`). Fused weights
(``ReparamCheckpointHook``'s ``<checkpoint>_deploy.pth``, or
``tools/reparam.py``'s output) are evaluated with every mmrep module of the
config in deploy form, which is logged.

Exit status: 0 when evaluated; 1 for a refused input (missing or
unreadable config or checkpoint, a checkpoint that fits neither form, with
the first mismatching keys and shapes named, weights holding NaN or Inf,
the first one named, a model that does not build, missing
``custom_imports``, ``--show-dir`` without a visualization hook, ``--tta``
without ``tta_model`` / ``tta_pipeline``, an ``--out`` that does not suit
the library's format, an ``--out``, ``--out-metrics``, ``--show-dir`` or
work dir that cannot be written): one ``error:`` line on stderr, before the
evaluation starts and with nothing written; 2 for arguments argparse
rejects.
"""
import argparse
import os

from mmengine.config import DictAction
from mmengine.model import is_model_wrapper

import mmrep  # noqa: F401
from mmrep.apis import (add_prediction_dump, build_config, build_runner,
                        check_writable, configure_prediction_output,
                        enable_visualization, finish_distributed,
                        preflight_test, refusals_as_errors,
                        setup_cpu_distributed, test_onnx, use_tta,
                        write_metrics)
from mmrep.checkpoints import load_state_strict
from mmrep.deploy.walker import check_finite_state
from mmrep.utils import enforce_weights_only


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where logs and metrics go')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, key=value')
    parser.add_argument(
        '--out', metavar='PATH',
        help="also write the predictions as the config's library does: "
        'mmseg, a folder of PNG label maps; mmdet and mmpretrain, a .pkl '
        'file')
    parser.add_argument('--out-metrics', metavar='FILE',
                        help='also write the metrics as JSON to FILE')
    parser.add_argument(
        '--show-dir', metavar='DIR',
        help="draw predictions into DIR with the config's visualization "
        'hook (mmseg: DIR/vis_data/vis_image, mmdet and mmpretrain: DIR)')
    parser.add_argument(
        '--show-interval', type=int, default=1, metavar='N',
        help='with --show-dir, draw every N-th test batch (default: 1, '
        'all)')
    parser.add_argument('--tta', action='store_true',
                        help="test-time augmentation with the config's "
                        'tta_model and tta_pipeline')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if args.show_interval < 1:
        parser.error(f'--show-interval must be at least 1, got '
                     f'{args.show_interval}')
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None):
    """Run the tool.

    Args:
        argv (list[str], optional): command-line arguments.

    Returns:
        dict: the metrics.

    Raises:
        SystemExit: ``'error: ...'`` (exit status 1) for a refused input,
            before anything is written.
    """
    args = parse_args(argv)
    enforce_weights_only()
    if args.checkpoint.endswith('.onnx'):  # an exported (float or INT8) graph
        return test_onnx(args)
    with refusals_as_errors():
        cfg = build_config(args)
        # The weights are loaded below, strictly, not by the runner.
        cfg.load_from = None
        cfg.resume = False
        check_writable(cfg.work_dir, '--work-dir' if args.work_dir else
                       'the work dir', folder=True)
        if args.out_metrics:
            check_writable(args.out_metrics, '--out-metrics')
        if args.show_dir:
            check_writable(args.show_dir, '--show-dir', folder=True)
            enable_visualization(cfg, args.show_dir, args.show_interval)
        if args.out:
            library = configure_prediction_output(cfg, args.out)
        state, note = preflight_test(cfg, args.config, args.checkpoint)
        check_finite_state(state, f'in {args.checkpoint}',
                           'refusing to evaluate it')
        if args.tta:
            use_tta(cfg, args.config)
    setup_cpu_distributed(cfg)
    runner = build_runner(cfg)
    runner.logger.info(note)
    model = runner.model.module if is_model_wrapper(runner.model) \
        else runner.model
    if args.tta:  # the TTA model wraps the configured one
        model = model.module
    load_state_strict(model, state)
    if args.out:
        add_prediction_dump(runner, library, args.out)
    metrics = runner.test()
    finish_distributed()
    if args.out_metrics and runner.rank == 0:
        write_metrics(args.out_metrics, metrics)
    return metrics


if __name__ == '__main__':
    main()
