"""Write fused (deploy) weights next to every checkpoint training saves."""
import copy
import glob
import os
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.model import is_model_wrapper

from ..registry import HOOKS
from ..utils.fileio import atomic_save, atomic_write, temporary_prefix
from ..version import __version__
from .config import deploy_path, make_deploy_config
from .walker import reparameterize_model

__all__ = ['ReparamCheckpointHook', 'deploy_path', 'fused_checkpoint',
           'atomic_save', 'atomic_write']


def stale_temporaries(folder):
    """Temporary files of interrupted deploy-file writes in ``folder``.

    A process killed while :func:`~mmrep.utils.fileio.atomic_write` writes
    ``<name>_deploy.pth`` leaves ``.<name>_deploy.pth.<random>.tmp``.

    Args:
        folder (str): where the checkpoints are saved.

    Returns:
        list[str]: their paths, sorted.
    """
    pattern = temporary_prefix(deploy_path('*')) + '*.tmp'
    return sorted(glob.glob(osp.join(glob.escape(folder), pattern)))


def fused_state(model):
    """Fuse a CPU copy of ``model``; the live model is not touched.

    Returns:
        dict[str, Tensor]: the fused model's state dict.
    """
    if is_model_wrapper(model):
        model = model.module
    copy_ = copy.deepcopy(model).cpu()
    return reparameterize_model(copy_, inplace=True).state_dict()


def fused_checkpoint(model, cfg, **meta):
    """What ``ReparamCheckpointHook`` saves: the fused weights and their
    ``meta``.

    Args:
        model (nn.Module): the train-time model (not changed).
        cfg (Config): its config; the deploy config made of it goes into
            ``meta['deploy_config']``.
        **meta: further ``meta`` entries (the hook's: source checkpoint,
            epoch, iter, ``dataset_meta``).

    Returns:
        dict: ``dict(meta=..., state_dict=...)``; the file loads into the
        model of ``cfg`` or of its deploy config, through mmengine's
        ``load_checkpoint`` and the OpenMMLab inference APIs
        (:mod:`mmrep.deploy.fused_loading`).
    """
    meta = dict(meta, mmrep_version=__version__,
                deploy_config=make_deploy_config(cfg).pretty_text)
    return dict(meta=meta, state_dict=fused_state(model))


def dataset_meta_of(runner):
    """The training set's ``metainfo`` (classes, palette), which mmengine
    writes into every checkpoint's ``meta['dataset_meta']`` and the
    inference APIs read; ``{}`` when there is none."""
    try:
        dataset = runner.train_dataloader.dataset
    except Exception:  # noqa: BLE001  no (buildable) training set
        return {}
    info = getattr(dataset, 'metainfo', None)
    return dict(dataset_meta=copy.deepcopy(info)) if info else {}


@HOOKS.register_module()
class ReparamCheckpointHook(Hook):
    """After each checkpoint ``CheckpointHook`` saves, write its fused form.

    ``<checkpoint stem>_deploy.pth`` holds ``state_dict`` (the fused model)
    and ``meta`` (source checkpoint name, epoch, iter, mmrep version, the
    training set's ``dataset_meta`` as in mmengine's checkpoints, and the
    deploy config text, which builds the fused model for
    ``tools/test.py``; :func:`fused_checkpoint`). The file is written on
    rank 0 from a CPU copy of the model, atomically, with the mode a plain
    write gives; a failed write is logged and training goes on, and the
    previous deploy file stays as it was. Deploy files whose checkpoint was
    removed (``max_keep_ckpts``) are removed too, and so are, when training
    starts, the temporary files that a killed run's writes left in the
    checkpoint folder (``.<name>_deploy.pth.<random>.tmp``).
    """

    priority = 'LOWEST'  # after CheckpointHook (VERY_LOW) has saved

    def __init__(self):
        self._done = set()

    def before_train(self, runner):
        self._done.add(runner.message_hub.get_info('last_ckpt'))
        if is_main_process():
            self._remove_stale_temporaries(runner)

    @staticmethod
    def checkpoint_folder(runner):
        """Where ``CheckpointHook`` saves (its ``out_dir``, set in its own
        ``before_train``, which runs first), else the work dir."""
        for hook in runner.hooks:
            if isinstance(hook, CheckpointHook) and hook.out_dir:
                return hook.out_dir
        return runner.work_dir

    def _remove_stale_temporaries(self, runner):
        folder = self.checkpoint_folder(runner)
        if not osp.isdir(folder):  # a remote out_dir (file backends)
            return
        for path in stale_temporaries(folder):
            os.remove(path)
            runner.logger.info(f'ReparamCheckpointHook: removed {path}, '
                               f'left by an interrupted write')

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        # The loop counts this iteration only after its hooks have run.
        self._check(runner, runner.epoch, runner.iter + 1)

    def after_train_epoch(self, runner):
        self._check(runner, runner.epoch + 1, runner.iter)

    def after_train(self, runner):
        self._check(runner, runner.epoch, runner.iter)

    def _check(self, runner, epoch, iteration):
        if not is_main_process():
            return
        ckpt = runner.message_hub.get_info('last_ckpt')
        if ckpt and ckpt not in self._done and osp.isfile(ckpt):
            self._done.add(ckpt)
            self._write(runner, ckpt, epoch, iteration)
        self._remove_orphans(runner)

    def _write(self, runner, ckpt, epoch, iteration):
        target = deploy_path(ckpt)
        try:
            atomic_save(fused_checkpoint(
                runner.model, runner.cfg, source_checkpoint=osp.basename(ckpt),
                epoch=epoch, iter=iteration, **dataset_meta_of(runner)),
                target)
        except Exception as e:  # training must go on
            runner.logger.error(f'ReparamCheckpointHook: could not write '
                                f'{target}: {e.__class__.__name__}: {e}')
            return
        runner.logger.info(f'ReparamCheckpointHook: fused weights saved to '
                           f'{target}')

    def _remove_orphans(self, runner):
        for path in list(self._done):
            if path and not osp.isfile(path):
                deploy = deploy_path(path)
                if osp.isfile(deploy):
                    os.remove(deploy)
                    runner.logger.info(
                        f'ReparamCheckpointHook: removed {deploy} with its '
                        f'checkpoint')
                self._done.discard(path)
