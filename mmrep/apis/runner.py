"""Runners for the training and testing tools."""
import torch
import torch.distributed as dist
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner


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


def finish_distributed():
    """Destroy the default process group, if any, once a run has finished.

    A process that exits with the group still alive leaves its gloo threads
    to the interpreter's teardown, which can abort the process
    (``terminate called without an active exception``) after training
    succeeded.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def build_runner(cfg):
    """Build the runner the config asks for (``runner_type``) or mmengine's.

    Args:
        cfg (Config): the config to run.

    Returns:
        Runner: the runner.
    """
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
