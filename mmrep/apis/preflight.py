"""The checks tools/train.py and tools/test.py run before a runner exists:
a run that would fail or load unsafe data is refused before anything is
created."""
from mmengine.device import (is_cuda_available, is_mlu_available,
                             is_musa_available, is_npu_available)

from ..checkpoints import CheckpointMismatchError
from ..deploy import make_deploy_config
from ..utils import check_custom_imports, check_model_config, safe_load
from ..utils.config_check import build_model_state
from .forms import fitting_form
from .finetune import FUSED_REFUSAL, plan_load_from
from .refusals import BadArgumentError
from .resume import choose_resume_checkpoint, defuse_resume_config


def check_amp(cfg, flag='--amp'):
    """Refuse mixed-precision training where mmengine cannot run it.

    mmengine's ``AmpOptimWrapper`` runs on CUDA, NPU, MLU or MUSA devices
    only; on any other machine it fails with an assertion once the runner
    has created the work dir. Checked before anything is created.

    Args:
        cfg (Config): the config to run (after ``--amp`` was applied).
        flag (str, optional): the command-line option that asked for it,
            named in the message; None when the config itself asks.
            Default: ``'--amp'``.

    Raises:
        BadArgumentError: the config's ``optim_wrapper`` is an
            ``AmpOptimWrapper`` and no such device is available.
    """
    wrapper = cfg.get('optim_wrapper') or {}
    if str(wrapper.get('type', '')).split('.')[-1] != 'AmpOptimWrapper':
        return
    if (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available()):
        return
    who = flag or "the config's optim_wrapper (AmpOptimWrapper)"
    raise BadArgumentError(
        f'{who} needs a CUDA, NPU, MLU or MUSA device and this machine has '
        f"none (mmengine's AmpOptimWrapper does not run on the CPU)")


def preflight_train(cfg, config_path):
    """Refuse a training run that would fail or load unsafe data, before
    building it.

    Checks that a config using ``mmrep.*`` types imports mmrep through
    ``custom_imports``; resolves ``--resume`` without a path
    (:func:`~mmrep.apis.resume.choose_resume_checkpoint`); builds the model
    on the meta device and reads the checkpoints its ``init_cfg`` names
    (:func:`~mmrep.utils.check_model_config`); and reads the checkpoint the
    run starts from (``load_from`` or ``--resume``) with the weights-only
    unpickler: a checkpoint to resume must fit the configured model
    exactly (every key and shape); ``load_from`` may also be fine-tuned
    from when at least half of the backbone's tensors fit
    (:func:`~mmrep.apis.finetune.plan_load_from`, which adds
    ``mmrep.LoadFittingWeightsHook`` to ``custom_hooks``); fused weights
    are refused, and so is a checkpoint to resume whose ``meta['config']``
    is not plain literals (mmengine's resume would execute it;
    :func:`~mmrep.apis.resume.defuse_resume_config`). A refused run has
    created nothing.

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
        CheckpointMismatchError: the checkpoint to resume does not fit
            the configured model, fewer than half of the backbone's tensors
            of ``load_from`` fit, or it holds fused weights.
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
        if not cfg.get('resume'):  # load_from: fine-tuning from what fits
            return notes + plan_load_from(cfg, checkpoint, model_state, path,
                                          config_path)
        defuse_resume_config(checkpoint, path)  # refused here, in one line
        form, _ = fitting_form(checkpoint, cfg, model_state, path,
                               config_path)
        if form == 'deploy':
            raise CheckpointMismatchError(FUSED_REFUSAL.format(path=path))
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
