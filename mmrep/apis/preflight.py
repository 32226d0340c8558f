"""The checks tools/train.py and tools/test.py run before a runner exists:
a run that would fail or load unsafe data is refused before anything is
created."""
from ..checkpoints import CheckpointMismatchError
from ..deploy import make_deploy_config
from ..utils import check_custom_imports, check_model_config, safe_load
from ..utils.config_check import build_model_state
from .forms import fitting_form
from .resume import choose_resume_checkpoint


def preflight_train(cfg, config_path):
    """Refuse a training run that would fail or load unsafe data, before
    building it.

    Checks that a config using ``mmrep.*`` types imports mmrep through
    ``custom_imports``; resolves ``--resume`` without a path
    (:func:`~mmrep.apis.resume.choose_resume_checkpoint`); builds the model
    on the meta device and reads the checkpoints its ``init_cfg`` names
    (:func:`~mmrep.utils.check_model_config`); and reads the checkpoint the
    run starts from (``load_from`` or ``--resume``) with the weights-only
    unpickler, which must fit the configured model exactly (every key and
    shape; fused weights are refused). A refused run has created nothing.

    Args:
        cfg (Config): the config to run; ``load_from`` and ``resume`` are
            set here for ``--resume`` without a path.
        config_path (str): its file, named in messages.

    Returns:
        list[str]: lines to log once the runner exists.

    Raises:
        MissingCustomImportsError: mmrep types without ``custom_imports``.
        ModelConfigError: the model does not build.
        FileNotFoundError: a checkpoint to read does not exist.
        CheckpointLoadError: a checkpoint cannot be read safely.
        CheckpointMismatchError: the checkpoint to start from does not fit
            the configured model, or holds fused weights.
    """
    check_custom_imports(cfg, config_path)
    checkpoint, notes = None, []
    if cfg.get('resume') and not cfg.get('load_from'):
        checkpoint, note = choose_resume_checkpoint(cfg)
        notes.append(note)
    model_state = check_model_config(cfg, config_path)
    path = cfg.get('load_from')
    if path and '://' not in str(path):
        checkpoint = checkpoint or safe_load(path)
        form, _ = fitting_form(checkpoint, cfg, model_state, path,
                               config_path)
        if form == 'deploy':
            raise CheckpointMismatchError(
                f'{path} holds fused (deploy) weights, which training '
                f'cannot start from; give the train-time checkpoint they '
                f'were fused from')
    return notes


def preflight_test(cfg, config_path, checkpoint_path):
    """Check the config and the checkpoint to evaluate; pick the model's
    form.

    Args:
        cfg (Config): the config; its model is switched to the deploy form
            when the checkpoint holds fused weights.
        config_path (str): the config file, named in messages.
        checkpoint_path (str): the checkpoint file.

    Returns:
        tuple[dict[str, Tensor], str]: the weights, and the line to log
        about them.

    Raises:
        MissingCustomImportsError: mmrep types without ``custom_imports``.
        ModelConfigError: the model does not build.
        FileNotFoundError: the checkpoint does not exist.
        CheckpointLoadError: it cannot be read safely.
        CheckpointMismatchError: it fits neither the configured model nor
            its fused form.
    """
    check_custom_imports(cfg, config_path)
    checkpoint = safe_load(checkpoint_path)
    form, state = fitting_form(
        checkpoint, cfg, build_model_state(cfg, config_path),
        checkpoint_path, config_path)
    if form == 'config':
        return state, f'evaluating {checkpoint_path} with the model as ' \
            f'configured'
    cfg.model = make_deploy_config(cfg).model
    return state, (f'{checkpoint_path} holds fused (deploy) weights: '
                   f'evaluating {config_path} with its mmrep modules in '
                   f'deploy form')
