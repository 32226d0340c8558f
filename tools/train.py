"""Train a model from an mmseg, mmdet or mmpretrain config with mmengine.

Usage:
    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--cfg-options key=value ...] [--launcher {none,pytorch,slurm,mpi}]

Before anything is created, the run is checked
(:func:`mmrep.apis.preflight_train`): the config reads and builds, imports
mmrep through ``custom_imports`` where it uses mmrep types, and the
checkpoints it loads read safely and fit (fused weights are refused).
``--amp`` (or an ``AmpOptimWrapper`` in the config) needs a CUDA, NPU, MLU
or MUSA device, as mmengine's ``AmpOptimWrapper`` does; without one it is
refused (:func:`mmrep.apis.check_amp`).

Exit status: 0 when training finished; 1 for a refused input (missing or
unreadable config or checkpoint, a checkpoint that does not fit, a model
that does not build, missing ``custom_imports``, ``--amp`` without a
CUDA, NPU, MLU or MUSA device, a work dir that cannot be written, a
checkpoint to resume whose ``meta['config']`` is not plain literals): one
``error:`` line on stderr and no work dir created; 2 for arguments
argparse rejects.
"""
import argparse
import os

from mmengine.config import DictAction

import mmrep  # noqa: F401  (registers mmrep)
from mmrep.apis import (build_config, build_runner, check_amp,
                        check_writable, finish_distributed, preflight_train,
                        refusals_as_errors, setup_cpu_distributed)
from mmrep.utils import enforce_weights_only


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument(
        '--resume', nargs='?', const='auto', default=None, metavar='CKPT',
        help='resume from CKPT; without a path, from the newest checkpoint '
        'of the work dir that loads (a truncated one is skipped), or from '
        'scratch when none does')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision training (needs a '
                        'CUDA, NPU, MLU or MUSA device)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, key=value')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None):
    """Run the tool.

    Args:
        argv (list[str], optional): command-line arguments.

    Raises:
        SystemExit: ``'error: ...'`` (exit status 1) for a refused input,
            before anything is created.
    """
    args = parse_args(argv)
    enforce_weights_only()
    with refusals_as_errors():
        cfg = build_config(args)
        check_writable(cfg.work_dir, '--work-dir' if args.work_dir else
                       'the work dir', folder=True)
        check_amp(cfg, '--amp' if args.amp else None)
        notes = preflight_train(cfg, args.config)
    setup_cpu_distributed(cfg)
    runner = build_runner(cfg)
    for note in notes:
        runner.logger.info(note)
    runner.train()
    finish_distributed()


if __name__ == '__main__':
    main()
