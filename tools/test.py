"""Evaluate a checkpoint with an mmseg, mmdet or mmpretrain config.

Usage:
    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR]
        [--out-metrics FILE] [--show-dir DIR [--show-interval N]]
        [--cfg-options key=value ...]
        [--launcher {none,pytorch,slurm,mpi}]

The metrics configured as ``test_evaluator`` are printed by mmengine's
logger and written to ``<work-dir>/<timestamp>/<timestamp>.json``.

The checkpoint must fit the config's model exactly (every key and shape).
Fused weights (``ReparamCheckpointHook``'s ``<checkpoint>_deploy.pth``, or
``tools/reparam.py``'s output) are evaluated with every mmrep module of the
config in deploy form, which is logged; anything else is refused with one
``error:`` line naming the first mismatching keys and shapes, before
anything is written.
"""
import argparse
import json
import os
import os.path as osp

from mmengine.config import DictAction
from mmengine.model import is_model_wrapper

import mmrep  # noqa: F401
from mmrep.apis import (REFUSED, build_config, build_runner,
                        finish_distributed, fitting_form,
                        setup_cpu_distributed)
from mmrep.checkpoints import load_state_strict
from mmrep.deploy import make_deploy_config
from mmrep.utils import check_custom_imports, enforce_weights_only, safe_load
from mmrep.utils.config_check import build_model_state


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
    parser.add_argument(
        '--show-dir', metavar='DIR',
        help="draw predictions into DIR with the config's visualization "
        'hook (mmseg: DIR/vis_data/vis_image, mmdet and mmpretrain: DIR)')
    parser.add_argument(
        '--show-interval', type=int, default=1, metavar='N',
        help='with --show-dir, draw every N-th test batch (default: 1, '
        'all)')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if args.show_interval < 1:
        parser.error(f'--show-interval must be at least 1, got '
                     f'{args.show_interval}')
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def enable_visualization(cfg, show_dir, interval=1):
    """Make the config's visualization hook draw test predictions into
    ``show_dir``, as mmseg's, mmdet's and mmpretrain's test tools do.

    Args:
        cfg (Config): the config; changed in place.
        show_dir (str): the folder for the drawings.
        interval (int): draw every ``interval``-th batch. Default: 1.

    Raises:
        SystemExit: the config has no visualization hook that draws test
            predictions.
    """
    hook = cfg.get('default_hooks', {}).get('visualization')
    kind = str(hook.get('type', '')).split('.')[-1] if hook else ''
    show_dir = osp.abspath(show_dir)
    if kind == 'SegVisualizationHook':  # mmseg: the visualizer saves
        hook['draw'] = True
        cfg.visualizer['save_dir'] = show_dir
    elif kind == 'DetVisualizationHook':
        hook['draw'] = True
        hook['test_out_dir'] = show_dir
    elif kind == 'VisualizationHook':  # mmpretrain
        hook['enable'] = True
        hook['out_dir'] = show_dir
    else:
        raise SystemExit(
            'error: --show-dir needs default_hooks.visualization of type '
            'SegVisualizationHook, DetVisualizationHook or VisualizationHook '
            f'(mmpretrain) in the config; it has {kind or "none"}')
    hook['interval'] = interval


def prepare(cfg, args):
    """Check the config and the checkpoint; pick the model's form.

    Args:
        cfg (Config): the config; its model is switched to the deploy form
            when the checkpoint holds fused weights.
        args (argparse.Namespace): parsed arguments.

    Returns:
        tuple[dict[str, Tensor], str]: the weights, and the line to log
        about them.

    Raises:
        SystemExit: with a message starting ``error:``; nothing has been
            created.
    """
    try:
        check_custom_imports(cfg, args.config)
        checkpoint = safe_load(args.checkpoint)
        form, state = fitting_form(
            checkpoint, cfg, build_model_state(cfg, args.config),
            args.checkpoint, args.config)
    except REFUSED as e:
        raise SystemExit(f'error: {e}') from None
    if form == 'config':
        return state, f'evaluating {args.checkpoint} with the model as ' \
            f'configured'
    cfg.model = make_deploy_config(cfg).model
    return state, (f'{args.checkpoint} holds fused (deploy) weights: '
                   f'evaluating {args.config} with its mmrep modules in '
                   f'deploy form')


def main(argv=None):
    args = parse_args(argv)
    enforce_weights_only()
    cfg = build_config(args)
    # The weights are loaded below, strictly, not by the runner.
    cfg.load_from = None
    cfg.resume = False
    if args.show_dir:
        enable_visualization(cfg, args.show_dir, args.show_interval)
    state, note = prepare(cfg, args)
    setup_cpu_distributed(cfg)
    runner = build_runner(cfg)
    runner.logger.info(note)
    model = runner.model.module if is_model_wrapper(runner.model) \
        else runner.model
    load_state_strict(model, state)
    metrics = runner.test()
    finish_distributed()
    if args.out_metrics and runner.rank == 0:
        os.makedirs(osp.dirname(osp.abspath(args.out_metrics)), exist_ok=True)
        with open(args.out_metrics, 'w') as f:
            json.dump({k: _to_json(v) for k, v in metrics.items()}, f,
                      indent=2)
    return metrics


if __name__ == '__main__':
    main()
