"""Reading checkpoints: the state dict inside a file, and a whole model's
weights split into its backbone's and the rest."""
import os

import torch

from ..utils.serialization import CheckpointMismatchError, safe_load


def read_state_dict(checkpoint, map_location='cpu'):
    """Read a checkpoint file (or take a dict) and return its state dict.

    Unwraps ``state_dict`` / ``model`` / ``module`` containers and strips
    DataParallel's ``module.`` prefix. Files are read by
    :func:`~mmrep.utils.safe_load`, which also reads MindSpore ``.ckpt``,
    PaddlePaddle ``.pdparams`` and ``.safetensors`` files (told by their
    content) as plain state dicts under their own names
    (:mod:`mmrep.checkpoints.readers`).

    Args:
        checkpoint (str | dict): a path, or an already loaded checkpoint.
        map_location (str): device for the tensors.

    Returns:
        dict[str, Tensor]: the state dict.

    Raises:
        CheckpointMismatchError: the checkpoint is no dict, or holds no
            tensors.
        CheckpointLoadError: the file cannot be read safely.
    """
    obj = checkpoint
    if isinstance(checkpoint, (str, os.PathLike)):
        obj = safe_load(checkpoint, map_location)
    if not isinstance(obj, dict):
        raise CheckpointMismatchError(
            f'a checkpoint must hold a dict of tensors, got '
            f'{type(obj).__name__}')
    for key in ('state_dict', 'model', 'module'):
        if key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    state = {}
    for k, v in obj.items():
        if not torch.is_tensor(v):
            continue
        if not isinstance(k, str):
            raise CheckpointMismatchError(
                f'a checkpoint names its tensors by strings; one is under '
                f'the {type(k).__name__} key {str(k)[:60]!r}')
        state[k[len('module.'):] if k.startswith('module.') else k] = v
    if not state:
        raise CheckpointMismatchError('the checkpoint holds no tensors')
    return state


def split_model_state(state):
    """Split a whole-model state dict into backbone weights and the rest.

    Args:
        state (dict[str, Tensor]): a model's or a bare backbone's weights.

    Returns:
        tuple[dict, dict]: the weights under ``backbone.`` (prefix
        stripped) and the others; a state without any ``backbone.`` key is
        a backbone's own, returned whole with an empty rest.
    """
    if not any(k.startswith('backbone.') for k in state):
        return state, {}
    backbone = {k[len('backbone.'):]: v for k, v in state.items()
                if k.startswith('backbone.')}
    rest = {k: v for k, v in state.items() if not k.startswith('backbone.')}
    return backbone, rest
