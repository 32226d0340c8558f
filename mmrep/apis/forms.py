"""Which form (train-time or fused) of a config's model a checkpoint fits,
and loading it in that form: the one place where the tools decide it
(:func:`fitting_form`; :func:`load_fused` builds on it)."""
import os
from typing import NamedTuple

from ..checkpoints import (CheckpointMismatchError, checkpoint_form,
                           describe_mismatch, read_state_dict, same_layout)
from ..deploy import make_deploy_config, reparameterize_model
from ..utils import safe_load
from ..utils.config_check import ModelConfigError, build_model_state
from .config import build_model


def has_fused_form(cfg):
    """Whether the config's model has a fused form that differs from it
    (:func:`~mmrep.deploy.make_deploy_config` changes something)."""
    try:
        make_deploy_config(cfg)
    except ModelConfigError:
        return False
    return True


def fitting_form(checkpoint, cfg, model_state, path, config_path,
                 deploy_state=None):
    """The form of the config's model that a checkpoint fits exactly.

    Args:
        checkpoint (dict | str): the loaded checkpoint (what the file
            holds), or its file.
        cfg (Config): the config to run.
        model_state (dict[str, Tensor]): its model's state dict (names and
            shapes count; any device).
        path (str): the checkpoint file, named in messages.
        config_path (str): the config file, named in messages.
        deploy_state (dict | callable, optional): the state dict of the
            model in fused form, or a function returning it (called only
            when the checkpoint does not fit ``model_state``). Default:
            built from :func:`~mmrep.deploy.make_deploy_config` on the meta
            device, offered whenever the model has something to fuse (mmrep
            modules, or BatchNorms in necks and heads: the hook's fused file
            of a model without an mmrep backbone evaluates too). The
            ``meta['deploy_config']`` a fused file carries is untrusted
            text and never executed: the same config is made from
            ``cfg``.

    Returns:
        tuple[str, dict[str, Tensor]]: ``'config'`` (the model as
        configured) or ``'deploy'`` (every mmrep module fused,
        :func:`~mmrep.deploy.make_deploy_config`), and the checkpoint's
        weights.

    Raises:
        CheckpointMismatchError: the checkpoint fits neither form.
        CheckpointLoadError: the file cannot be read safely.
        FileNotFoundError: the file does not exist.
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = safe_load(checkpoint)
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    state = read_state_dict(checkpoint)
    forms = {'config': model_state}
    if deploy_state is not None:
        forms['deploy'] = deploy_state
    elif has_fused_form(cfg):
        forms['deploy'] = lambda: build_model_state(make_deploy_config(cfg),
                                                    config_path)
    return checkpoint_form(state, forms, meta if isinstance(meta, dict)
                           else None, name=path), state


class FusedModel(NamedTuple):
    """What :func:`load_fused` returns.

    Attributes:
        fused (nn.Module): the fused model, in eval mode.
        form (str): the form the checkpoint held: ``'config'`` (train-time,
            fused here) or ``'deploy'`` (already fused).
        model (nn.Module | None): with ``keep_unfused`` and a train-time
            checkpoint, the train-time model holding its weights (eval
            mode); None otherwise.
        meta (dict): the checkpoint's ``meta`` (``{}`` where it has none),
            e.g. mmengine's ``dataset_meta``.
    """
    fused: object
    form: str
    model: object = None
    meta: dict = {}


def check_deploy_config(deploy_cfg, fused):
    """Make sure the deploy config builds the fused model's structure.

    Args:
        deploy_cfg (Config): from :func:`mmrep.deploy.make_deploy_config`.
        fused (nn.Module): the fused model.

    Raises:
        CheckpointMismatchError: the fused weights would not load strictly
            into the model the deploy config builds (a conv + BN pair that
            the config's ``norm_cfg=None`` does not describe); the keys are
            named.
    """
    expected = build_model(deploy_cfg).state_dict()
    state = fused.state_dict()
    if not same_layout(state, expected):
        raise CheckpointMismatchError(
            'the deploy config does not build the fused model: '
            + describe_mismatch(state, expected))


def load_fused(cfg, checkpoint, keep_unfused=False, check_deploy=False):
    """Build the config's model with the checkpoint's weights, fused.

    The checkpoint's form is told by :func:`fitting_form`, with the fused
    form always offered (necks and heads fold their conv + BN pairs even
    without mmrep modules).

    Args:
        cfg (Config): the (train-time) config, without ``init_cfg``.
        checkpoint (str): a train-time or fused checkpoint of that model.
        keep_unfused (bool): fuse a copy of the train-time model and
            return that model too (to compare the two). Default: False.
        check_deploy (bool): check that
            :func:`~mmrep.deploy.make_deploy_config` of ``cfg`` builds the
            fused structure (:func:`check_deploy_config`), as needed before
            writing that config beside the fused weights. Default: False.

    Returns:
        FusedModel: the fused model, the checkpoint's form and, with
        ``keep_unfused``, the train-time model.

    Raises:
        FileNotFoundError: the checkpoint does not exist.
        CheckpointLoadError: it cannot be read safely.
        CheckpointMismatchError: it fits neither form (the first
            mismatching keys and shapes are named), or the deploy config
            does not build the fused structure.
        NonFiniteWeightsError: NaN or Inf among the weights to fuse.
        ModelConfigError: the fused form is needed and the config's model
            has nothing to fuse.
        ModelArgumentError: an mmrep module of the config refuses its
            arguments.
    """
    loaded = safe_load(checkpoint)  # refused before anything is built
    model = build_model(cfg)
    fused = None

    def fused_state():
        nonlocal fused
        fused = build_model(make_deploy_config(cfg))
        return fused.state_dict()
    form, state = fitting_form(loaded, cfg, model.state_dict(), checkpoint,
                               'the config', deploy_state=fused_state)
    meta = (loaded.get('meta') if isinstance(loaded, dict) else None) or {}
    if form == 'deploy':
        fused.load_state_dict(state, strict=True)
        return FusedModel(fused.eval(), form, meta=meta)
    model.load_state_dict(state, strict=True)
    fused = reparameterize_model(model, inplace=not keep_unfused)
    if check_deploy:
        check_deploy_config(make_deploy_config(cfg), fused)
    return FusedModel(fused, form, model if keep_unfused else None, meta)
