"""Checkpoint files of other frameworks, read without them: one reader per
format and the first bytes that tell them apart (:mod:`.sniff`).

A MindSpore ``.ckpt`` (MindCV's releases) is a protocol-buffers message of
named tensors (:mod:`.mindspore`), a PaddlePaddle ``.pdparams`` a Python
pickle of numpy arrays (:mod:`.paddle`); both are read with the standard
library, numpy and torch alone, never mindspore, paddle or protobuf, and
the pickle never with the plain :mod:`pickle` rules. ``.safetensors``
files are read with the ``safetensors`` package (:mod:`.safetensors`).

:func:`read_framework_checkpoint` is what :func:`mmrep.utils.safe_load`
(and so :func:`~mmrep.checkpoints.read_state_dict`, ``init_cfg=Pretrained``
and the tools) reads these files with; ``safe_load`` sits in a lower layer
and finds it as ``'framework_file'`` in
:data:`mmrep.registry.CHECKPOINT_LOADERS`. The tensors come back under the
framework's own names; translating them to mmrep's is the converters'
work. Every refusal is one line: a
:class:`~mmrep.utils.CheckpointLoadError`, or an
:class:`~mmrep.utils.UnsafeCheckpointError` for a refused pickle.
"""
import os

import torch

from ...registry import CHECKPOINT_LOADERS
from ...utils.serialization import CheckpointLoadError
from ...utils.untrusted_pickle import one_line
from .common import cannot
from .mindspore import MINDSPORE_DTYPES, read_mindspore
from .paddle import PADDLE_GLOBALS, read_paddle
from .safetensors import read_safetensors
from .sniff import file_format, framework_of

__all__ = ['read_framework_checkpoint', 'file_format', 'framework_of',
           'read_mindspore', 'read_paddle', 'read_safetensors', 'READERS',
           'MINDSPORE_DTYPES', 'PADDLE_GLOBALS']

#: Each format's reader, by the name :func:`file_format` gives.
READERS = {'mindspore': read_mindspore, 'paddle': read_paddle,
           'safetensors': read_safetensors}


@CHECKPOINT_LOADERS.register_module(name='framework_file')
def read_framework_checkpoint(path, map_location='cpu', framework=None):
    """Read a checkpoint file of another framework as a state dict.

    Args:
        path (str | os.PathLike): the file.
        map_location (str | torch.device): where to put the tensors (any
            other kind of ``map_location`` leaves them on the CPU).
        framework (str, optional): ``'mindspore'``, ``'paddle'`` or
            ``'safetensors'``: read the file as that format whatever its
            first bytes say. By default the first bytes decide.

    Returns:
        dict[str, Tensor] | None: the tensors under the framework's own
        names; None where ``framework`` is not given and the file is none
        of these formats (a torch checkpoint, or anything else).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: an unknown ``framework``.
        CheckpointLoadError: the file cannot be opened, or is truncated or
            corrupt (one line);
            :class:`~mmrep.utils.UnsafeCheckpointError` when it is a pickle
            that names a global outside the few numpy arrays need (never
            executed).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        found = framework or file_format(path)
    except OSError as e:  # e.g. a file this process may not read
        raise cannot(path, e.strerror or one_line(e)) from None
    if found is None:
        return None
    if found not in READERS:
        raise ValueError(f'framework must be one of {sorted(READERS)}, '
                         f'got {found!r}')
    try:
        state = READERS[found](path)
    except CheckpointLoadError as e:
        raise type(e)(one_line(e, 1000)) from None
    except Exception as e:  # noqa: BLE001  no other error may escape
        detail = one_line(f'{e.__class__.__name__}: {one_line(e)}')
        raise cannot(path, f'the file is truncated or corrupt, or not a '
                           f'checkpoint ({detail})') from None
    if isinstance(map_location, (str, torch.device)) and \
            torch.device(map_location).type != 'cpu':
        state = {k: v.to(map_location) for k, v in state.items()}
    return state
