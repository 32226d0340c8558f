"""Train a model from an mmseg, mmdet or mmpretrain config with mmengine.

Usage:
    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--cfg-options key=value ...] [--launcher {none,pytorch,slurm,mpi}]
"""
import argparse
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.runner import Runner, find_latest_checkpoint

import mmrep  # noqa: F401  (registers mmrep; allow-lists resume objects)
from mmrep.utils import (CheckpointLoadError, MissingCustomImportsError,
                         check_custom_imports, enforce_weights_only,
                         safe_load)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument(
        '--resume', nargs='?', const='auto', default=None, metavar='CKPT',
        help='resume from CKPT, or from the latest checkpoint in the work '
        'dir when no path is given')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision training')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, key=value')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_config(args):
    """Load the config and apply the command-line overrides.

    Shared with tools/test.py, whose arguments lack the training options
    (``--amp``, ``--resume``).

    Args:
        args (argparse.Namespace): parsed arguments.

    Returns:
        Config: the config to run.
    """
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if getattr(args, 'amp', False):
        wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper == 'AmpOptimWrapper':
            print('AMP is already enabled in the config')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    resume = getattr(args, 'resume', None)
    if resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif resume:
        cfg.resume = True
        cfg.load_from = resume
    return cfg


def checkpoints_to_load(cfg):
    """The local checkpoint files the runner will load.

    Args:
        cfg (Config): the config to run.

    Returns:
        list[str]: ``cfg.load_from`` (a path, or with ``resume`` and no path
        the latest checkpoint of the work dir), when it is a local file.
    """
    path = cfg.get('load_from')
    if not path and cfg.get('resume') and cfg.get('work_dir'):
        path = find_latest_checkpoint(cfg.work_dir) \
            if osp.isdir(cfg.work_dir) else None
    if not path or '://' in str(path):
        return []
    return [str(path)]


def preflight(cfg, config_path):
    """Refuse a run that would fail or load unsafe data, before building it.

    Checks that a config using ``mmrep.*`` types imports mmrep through
    ``custom_imports``, and reads every checkpoint the run will load with
    the weights-only unpickler (mmrep's allow-list), so a crafted or corrupt
    file is refused with a clear message and nothing of it is executed.

    Args:
        cfg (Config): the config to run.
        config_path (str): its file, named in messages.

    Raises:
        SystemExit: with a message starting ``error:``.
    """
    try:
        check_custom_imports(cfg, config_path)
        for path in checkpoints_to_load(cfg):
            safe_load(path)
    except (MissingCustomImportsError, CheckpointLoadError,
            FileNotFoundError) as e:
        raise SystemExit(f'error: {e}') from None


def _replace_sync_bn(node):
    """``type='SyncBN'`` -> ``'BN'`` below ``node``; returns the count."""
    count = 0
    if isinstance(node, dict):
        if node.get('type') in ('SyncBN', 'MMSyncBN', 'TorchSyncBN'):
            node['type'] = 'BN'
            count += 1
        for value in node.values():
            count += _replace_sync_bn(value)
    elif isinstance(node, list):
        for value in node:
            count += _replace_sync_bn(value)
    return count


def setup_cpu_distributed(cfg):
    """Make a distributed config run on CPUs (gloo), where CUDA is absent.

    mmengine's ``init_dist`` always selects a CUDA device, torch's
    ``SyncBatchNorm`` runs on GPUs only, and mmengine wraps the model in
    DDP with ``device_ids``, which CPU modules refuse. Without CUDA this
    initializes the ``gloo`` process group itself (mmengine then skips its
    own initialization), turns every ``SyncBN`` norm config into ``BN``
    (per-process statistics; logged) and wraps the model in DDP without
    device ids. Does nothing when ``cfg.launcher`` is ``'none'`` or CUDA is
    available.

    Args:
        cfg (Config): the config to run; changed in place.

    Returns:
        bool: whether the CPU setup was applied.
    """
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return False
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    cfg.env_cfg.dist_cfg['backend'] = 'gloo'
    model = cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') \
        else dict(cfg.model)
    converted = _replace_sync_bn(model)
    cfg.model = model
    if cfg.get('sync_bn'):
        cfg.sync_bn = None
        converted += 1
    if converted and dist.get_rank() == 0:
        print_log(f'distributed training on CPU (gloo): converted '
                  f'{converted} SyncBN setting(s) to BN, since SyncBatchNorm '
                  f'runs on GPUs only; BN statistics are per process',
                  logger='current')
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel', device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    return True


def build_runner(cfg):
    """Build the runner the config asks for (``runner_type``) or mmengine's."""
    if 'runner_type' in cfg:
        from mmengine.registry import RUNNERS
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def main(argv=None):
    args = parse_args(argv)
    enforce_weights_only()
    cfg = build_config(args)
    preflight(cfg, args.config)
    setup_cpu_distributed(cfg)
    runner = build_runner(cfg)
    runner.train()


if __name__ == '__main__':
    main()
