"""Which form (train-time or fused) of a config's model a checkpoint fits,
and loading it in that form."""
from ..checkpoints import (CheckpointMismatchError, checkpoint_form,
                           describe_mismatch, matching_form, read_state_dict)
from ..deploy import make_deploy_config, reparameterize_model
from ..utils.config_check import build_model_state, mmrep_types
from .config import build_model


def fitting_form(checkpoint, cfg, model_state, path, config_path):
    """The form of the config's model that a checkpoint fits exactly.

    Args:
        checkpoint (dict): the loaded checkpoint.
        cfg (Config): the config to run.
        model_state (dict[str, Tensor]): its model's state dict.
        path (str): the checkpoint file, named in messages.
        config_path (str): the config file, named in messages.

    Returns:
        tuple[str, dict[str, Tensor]]: ``'config'`` (the model as
        configured) or ``'deploy'`` (every mmrep module fused,
        :func:`~mmrep.deploy.make_deploy_config`), and the checkpoint's
        weights.

    Raises:
        CheckpointMismatchError: the checkpoint fits neither form.
    """
    state = read_state_dict(checkpoint)
    forms = {'config': model_state}
    if mmrep_types(cfg.model):
        forms['deploy'] = lambda: build_model_state(make_deploy_config(cfg),
                                                    config_path)
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    return checkpoint_form(state, forms, meta if isinstance(meta, dict)
                           else None, name=path), state


def load_fused(cfg, checkpoint):
    """Build the config's model with the checkpoint's weights, fused.

    Args:
        cfg (Config): the (train-time) config, without ``init_cfg``.
        checkpoint (str): a train-time or fused checkpoint of that model.

    Returns:
        nn.Module: the fused model in eval mode.

    Raises:
        CheckpointMismatchError: the checkpoint fits neither form.
        NonFiniteWeightsError: NaN or Inf among the weights to fuse.
    """
    state = read_state_dict(checkpoint)
    model = build_model(cfg)
    fused = None

    def fused_state():
        nonlocal fused
        fused = build_model(make_deploy_config(cfg))
        return fused.state_dict()
    form = matching_form(state, {'config': model.state_dict(),
                                 'deploy': fused_state})
    if form == 'config':
        model.load_state_dict(state, strict=True)
        return reparameterize_model(model, inplace=True)
    if form == 'deploy':
        fused.load_state_dict(state, strict=True)
        return fused.eval()
    raise CheckpointMismatchError(
        f'{checkpoint} does not fit the config: '
        + describe_mismatch(state, model.state_dict()))
