"""Evaluate a checkpoint with an mmseg, mmdet or mmpretrain config.

Usage:
    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR]
        [--out-metrics FILE] [--cfg-options key=value ...]
        [--launcher {none,pytorch,slurm,mpi}]

The metrics configured as ``test_evaluator`` are printed by mmengine's
logger and written to ``<work-dir>/<timestamp>/<timestamp>.json``.
"""
import argparse
import json
import os
import os.path as osp

from mmengine.config import DictAction

import mmrep  # noqa: F401
from mmrep.utils import enforce_weights_only
from train import (build_config, build_runner,  # noqa: E402  (same folder)
                   preflight, setup_cpu_distributed)


def _to_json(value):
    """Metric values are Python or numpy numbers, or (rarely) other."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where logs and metrics go')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, key=value')
    parser.add_argument('--out-metrics', metavar='FILE',
                        help='also write the metrics as JSON to FILE')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None):
    args = parse_args(argv)
    enforce_weights_only()
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'checkpoint not found: {args.checkpoint}')
    cfg = build_config(args)
    cfg.load_from = args.checkpoint
    cfg.resume = False
    preflight(cfg, args.config)
    setup_cpu_distributed(cfg)
    runner = build_runner(cfg)
    metrics = runner.test()
    if args.out_metrics and runner.rank == 0:
        os.makedirs(osp.dirname(osp.abspath(args.out_metrics)), exist_ok=True)
        with open(args.out_metrics, 'w') as f:
            json.dump({k: _to_json(v) for k, v in metrics.items()}, f,
                      indent=2)
    return metrics


if __name__ == '__main__':
    main()
