"""Runners for the training and testing tools."""
import torch
import torch.distributed as dist
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import RUNNERS
from mmengine.runner.checkpoint import _load_checkpoint_to_model

from ..utils import safe_load
from .resume import defuse_resume_config


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
    succeeded; so can tearing the group down while another rank still
    communicates, hence the barrier first.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


class SafeLoadingRunner:
    """Makes a runner read local checkpoints (``load_from`` and resume)
    through :func:`~mmrep.utils.safe_load`, and defuse their
    ``meta['config']`` before mmengine's resume would execute it
    (:func:`~mmrep.apis.resume.defuse_resume_config`).

    Mixed in before the runner class by :func:`build_runner`; the rest of
    mmengine's ``Runner.load_checkpoint`` (the ``after_load_checkpoint``
    hooks, loading into the model, the log line) is unchanged. Remote
    checkpoints (``scheme://``) go to mmengine's loaders as before.
    """

    def load_checkpoint(self, filename, map_location='cpu', strict=False,
                        revise_keys=[(r'^module.', '')]):  # noqa: B006
        """Load a checkpoint as mmengine's ``Runner.load_checkpoint`` does,
        reading a local file safely.

        Args:
            filename (str): the file (or URL).
            map_location (str | callable): where to put the tensors.
            strict (bool): whether every key must match.
            revise_keys (list[tuple[str, str]]): key renames.

        Returns:
            dict: the checkpoint.

        Raises:
            CheckpointLoadError: the file cannot be read safely, or its
                ``meta['config']`` is not plain literals.
        """
        if '://' in str(filename):
            return super().load_checkpoint(filename, map_location, strict,
                                           revise_keys)
        checkpoint = safe_load(filename, map_location)
        defuse_resume_config(checkpoint, filename)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(self.model) \
            else self.model
        checkpoint = _load_checkpoint_to_model(model, checkpoint, strict,
                                               revise_keys=revise_keys)
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint


def build_runner(cfg):
    """Build the runner the config asks for (``runner_type``, mmengine's
    ``Runner`` by default), reading checkpoints safely.

    The runner class is extended by :class:`SafeLoadingRunner` (a subclass
    made here), so that ``load_from`` and resuming read their checkpoint
    with :func:`~mmrep.utils.safe_load` and never execute its content.

    Args:
        cfg (Config): the config to run.

    Returns:
        Runner: the runner.
    """
    cfg = cfg.copy()
    base = cfg.pop('runner_type', 'Runner')
    if not isinstance(base, type):
        base = RUNNERS.get(base)
    runner_cls = type(f'SafeLoading{base.__name__}',
                      (SafeLoadingRunner, base), {})
    return runner_cls.from_cfg(cfg)
