"""Fine-tuning from ``load_from``: a checkpoint of the same model built with
other settings (another number of classes, say) starts a training run with
every tensor that fits; the others keep their initialization and are named.

:func:`plan_load_from` decides, before anything is created
(:func:`~mmrep.apis.preflight.preflight_train` calls it): a checkpoint
that fits the configured model exactly loads as it is; fused (deploy)
weights, and a file of which fewer than half of the backbone's tensors
fit, are refused in one line; any other checkpoint is fine-tuned from, by
adding :class:`LoadFittingWeightsHook` to the config's ``custom_hooks``.
mmengine's runner still loads ``load_from`` itself; the hook, called with
the checkpoint it read (``after_load_checkpoint``), keeps the tensors that
fit by name and shape, gives every other tensor the model's own value (its
initialization, from ``init_weights``) and logs one line in the format of
:func:`~mmrep.checkpoints.load.report_loading`, with the reason, e.g.::

    EncoderDecoder: loaded 124 of 128 tensors from work/iter_2.pth; 4 kept
    their initialization: ['decode_head.conv_seg.weight', ...] (shape
    mismatches (4): ['decode_head.conv_seg.weight: checkpoint
    (19, 64, 1, 1) vs model (20, 64, 1, 1)', ...])
"""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..checkpoints import (CheckpointMismatchError, describe_mismatch,
                           read_state_dict)
from ..deploy import make_deploy_config
from ..registry import HOOKS
from ..utils.config_check import build_model_state, mmrep_types
from .forms import fitting_form

__all__ = ['plan_load_from', 'fitting_tensors', 'fitting_report',
           'LoadFittingWeightsHook', 'FUSED_REFUSAL']

#: Why training refuses fused weights (``{path}``: the checkpoint).
FUSED_REFUSAL = ('{path} holds fused (deploy) weights, which training cannot '
                 'start from; give the train-time checkpoint they were fused '
                 'from')


def fitting_tensors(state, expected):
    """The tensors of ``state`` that fit ``expected`` by name and shape.

    Args:
        state (dict[str, Tensor]): the checkpoint's weights.
        expected (dict[str, Tensor]): the model's state dict (any device).

    Returns:
        dict[str, Tensor]: the entries of ``state`` that load.
    """
    return {k: v for k, v in state.items()
            if k in expected and tuple(v.shape) == tuple(expected[k].shape)}


def backbone_keys(expected):
    """The backbone's keys of a model's state dict (all keys for a model
    without ``backbone.``)."""
    keys = [k for k in expected if k.startswith('backbone.')]
    return keys or list(expected)


def fitting_report(model_name, path, state, expected):
    """The loading line of a fine-tuning start.

    Args:
        model_name (str): the model's class name.
        path (str): the checkpoint, named in the line.
        state (dict[str, Tensor]): the checkpoint's weights.
        expected (dict[str, Tensor]): the model's state dict.

    Returns:
        str: ``'<Model>: loaded N of M tensors from <path>; K kept their
        initialization: [first 4] (<missing keys, unexpected keys and
        shape mismatches>)'``, as :func:`~mmrep.checkpoints.load.
        report_loading` words it.
    """
    fit = fitting_tensors(state, expected)
    kept = [k for k in expected if k not in fit]
    detail = f': {kept[:4]}' if kept else ''
    why = describe_mismatch(state, expected, limit=4)
    return (f'{model_name}: loaded {len(fit)} of {len(expected)} tensors '
            f'from {path}; {len(kept)} kept their initialization{detail}'
            + (f' ({why})' if why else ''))


def _claims_fused(state, meta, cfg, config_path, model_state):
    """Whether weights that fit neither form exactly are fused ones: their
    ``meta`` names a deploy config (the hook's and ``tools/reparam.py``'s
    files), or more of their tensors fit the fused form than the model as
    configured."""
    if isinstance(meta, dict) and 'deploy_config' in meta:
        return True
    if not mmrep_types(cfg.model):
        return False
    fused = build_model_state(make_deploy_config(cfg), config_path)
    return len(fitting_tensors(state, fused)) > \
        len(fitting_tensors(state, model_state))


def plan_load_from(cfg, checkpoint, model_state, path, config_path):
    """Decide how a training run starts from ``load_from``.

    A checkpoint that fits the configured model exactly loads as it is.
    Otherwise, when at least half of the backbone's tensors fit (name and
    shape), the run fine-tunes from it: :class:`LoadFittingWeightsHook` is
    appended to ``cfg.custom_hooks``.

    Args:
        cfg (Config): the config to run (not resuming); changed in place.
        checkpoint (dict): the loaded ``load_from`` file.
        model_state (dict[str, Tensor]): the configured model's state dict
            (the meta device will do).
        path (str): the checkpoint file, named in messages.
        config_path (str): the config file, named in messages.

    Returns:
        list[str]: lines to log once the runner exists (none when the
        checkpoint fits exactly).

    Raises:
        CheckpointMismatchError: fused (deploy) weights
            (:data:`FUSED_REFUSAL`), or fewer than half of the backbone's
            tensors fit: ``'<path> does not fit the model as configured:
            <missing, unexpected, mis-shaped keys>; only N of M backbone
            tensors are in the checkpoint (fewer than half: ...)'``.
    """
    try:
        form, _ = fitting_form(checkpoint, cfg, model_state, path,
                               config_path)
    except CheckpointMismatchError:
        form = None
    if form == 'config':
        return []
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    state = read_state_dict(checkpoint)
    if form == 'deploy' or _claims_fused(state, meta, cfg, config_path,
                                         model_state):
        raise CheckpointMismatchError(FUSED_REFUSAL.format(path=path))
    keys = backbone_keys(model_state)
    found = sum(k in state and tuple(state[k].shape) ==
                tuple(model_state[k].shape) for k in keys)
    if 2 * found < len(keys):
        raise CheckpointMismatchError(
            f'{path} does not fit the model as configured: '
            f'{describe_mismatch(state, model_state, limit=3)}; only {found} '
            f'of {len(keys)} backbone tensors are in the checkpoint (fewer '
            f'than half: a checkpoint of another model, or keys under '
            f'another prefix?)')
    cfg.custom_hooks = [*cfg.get('custom_hooks', []),
                        dict(type='mmrep.LoadFittingWeightsHook')]
    fit = len(fitting_tensors(state, model_state))
    return [f'load_from {path} does not fit the model exactly: fine-tuning '
            f'from the {fit} of its tensors that fit (mmrep.'
            f'LoadFittingWeightsHook; the others keep their '
            f'initialization)']


@HOOKS.register_module()
class LoadFittingWeightsHook(Hook):
    """Start training from the tensors of ``load_from`` that fit the model.

    Added by :func:`plan_load_from` (``tools/train.py``) when ``load_from``
    does not fit the configured model exactly. When the runner has read
    ``load_from`` (``after_load_checkpoint``, before the weights reach the
    model) it replaces the checkpoint's ``state_dict`` in place by the
    model's state dict with every tensor that fits (name and shape) taken
    from the checkpoint: the others keep the model's initialization, and
    checkpoint tensors the model lacks are dropped. It logs one line
    (:func:`fitting_report`) naming what kept its initialization and why.
    A resumed run is left alone (resuming needs an exact fit).
    """

    priority = 'VERY_HIGH'

    def after_load_checkpoint(self, runner, checkpoint):
        if getattr(runner, '_resume', False):
            return
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        expected = model.state_dict()
        state = read_state_dict(checkpoint)
        merged = {**expected, **fitting_tensors(state, expected)}
        if 'state_dict' in checkpoint:
            checkpoint['state_dict'] = merged
        else:
            checkpoint.clear()
            checkpoint.update(merged)
        path = runner.cfg.get('load_from') or 'load_from'
        runner.logger.info(fitting_report(type(model).__name__, path, state,
                                          expected))
