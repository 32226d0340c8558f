"""Write fused (deploy) weights next to every checkpoint training saves."""
import copy
import os
import os.path as osp
import tempfile

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..registry import HOOKS
from ..version import __version__
from .config import make_deploy_config
from .walker import reparameterize_model


def deploy_path(checkpoint):
    """``work/iter_8.pth -> work/iter_8_deploy.pth``."""
    stem, ext = osp.splitext(checkpoint)
    return f'{stem}_deploy{ext or ".pth"}'


def atomic_write(path, write):
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename
    it to ``path``, so a crash or an error never leaves a truncated file
    there (the temporary file is removed either way).

    Args:
        path (str): the file to create or replace.
        write (callable): writes the whole file to the path it is given.
    """
    folder = osp.dirname(osp.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.' + osp.basename(path) + '.',
                               suffix='.tmp', dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def atomic_save(obj, path):
    """``torch.save(obj, path)`` through :func:`atomic_write`."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def fused_state(model):
    """Fuse a CPU copy of ``model``; the live model is not touched.

    Returns:
        dict[str, Tensor]: the fused model's state dict.
    """
    if is_model_wrapper(model):
        model = model.module
    copy_ = copy.deepcopy(model).cpu()
    return reparameterize_model(copy_, inplace=True).state_dict()


@HOOKS.register_module()
class ReparamCheckpointHook(Hook):
    """After each checkpoint ``CheckpointHook`` saves, write its fused form.

    ``<checkpoint stem>_deploy.pth`` holds ``state_dict`` (the fused model)
    and ``meta`` (source checkpoint name, epoch, iter, mmrep version and the
    deploy config text, which builds the fused model for
    ``tools/test.py``). The file is written on rank 0 from a CPU copy of the
    model, atomically; a failed write is logged and training goes on, and the
    previous deploy file stays as it was. Deploy files whose checkpoint was
    removed (``max_keep_ckpts``) are removed too.
    """

    priority = 'LOWEST'  # after CheckpointHook (VERY_LOW) has saved

    def __init__(self):
        self._done = set()

    def before_train(self, runner):
        self._done.add(runner.message_hub.get_info('last_ckpt'))

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
            meta = dict(source_checkpoint=osp.basename(ckpt),
                        epoch=epoch, iter=iteration,
                        mmrep_version=__version__,
                        deploy_config=make_deploy_config(
                            runner.cfg).pretty_text)
            atomic_save(dict(meta=meta, state_dict=fused_state(runner.model)),
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
