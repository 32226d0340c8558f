"""Safe checkpoint loading with a minimal allow-list.

torch >= 2.6 loads checkpoints with ``weights_only=True``. mmengine 0.10.7
stores a few non-tensor objects in the checkpoints it writes for resuming
(its ``HistoryBuffer`` log buffers, numpy arrays, dtypes and scalars), which
the weights-only unpickler rejects. Importing :mod:`mmrep` allow-lists exactly
those types (and a ``getattr`` restricted to ``HistoryBuffer``'s statistics
methods), so ``runner.resume`` works without ever turning ``weights_only``
off. ``argparse.Namespace``, which the original releases' training scripts
save beside their weights, is allowed too: it only holds attributes.

:func:`safe_load` also reads the checkpoints of other frameworks, which it
tells by their first bytes: MindSpore ``.ckpt`` and PaddlePaddle
``.pdparams`` files (read without those frameworks, by :mod:`.frameworks`)
and ``.safetensors`` files (with the ``safetensors`` package).
"""
import argparse
import os
import pickle

import numpy as np
import torch

from .frameworks import (FrameworkFormatError, file_format, read_mindspore,
                         read_paddle, read_safetensors)


def _numpy_globals():
    """Numpy callables and types that appear in mmengine checkpoints."""
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
    types = [_reconstruct, scalar, np.ndarray, np.dtype]
    # Each concrete dtype has its own class (numpy.dtypes.Float64DType, ...)
    # which pickles by reference on numpy >= 1.25.
    for name in ('float16', 'float32', 'float64', 'int8', 'int16', 'int32',
                 'int64', 'uint8', 'uint16', 'uint32', 'uint64', 'bool_'):
        dtype = np.dtype(getattr(np, name))
        if type(dtype) is not np.dtype:
            types.append(type(dtype))
    return types


def history_buffer_getattr(obj, name):
    """The one ``getattr`` mmengine checkpoints need, and nothing more.

    A ``HistoryBuffer`` pickles its statistics methods (``min``, ``max``,
    ``mean``, ``current``) as ``getattr(HistoryBuffer, name)``. Allowing the
    builtin ``getattr`` would let a crafted file reach any attribute of any
    allowed object (``ndarray.tofile`` writes files), so only this lookup is
    allowed under the name ``builtins.getattr``.
    """
    from mmengine.logging import HistoryBuffer
    allowed = {'min', 'max', 'mean', 'current'}
    allowed.update(HistoryBuffer._statistics_methods)  # registered ones
    if obj is HistoryBuffer and name in allowed:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'refused getattr({obj!r}, {name!r}): only HistoryBuffer statistics '
        f'methods may be looked up while loading a checkpoint')


def _mmengine_globals():
    from mmengine.logging import HistoryBuffer
    return [HistoryBuffer, (history_buffer_getattr, 'builtins.getattr')]


def _release_globals():
    # The original releases' training scripts (DeiT-style, as CycleMLP's)
    # save their command-line arguments beside the weights: an
    # ``argparse.Namespace`` is a plain attribute container.
    return [argparse.Namespace]


SAFE_GLOBALS = (tuple(_numpy_globals()) + tuple(_mmengine_globals()) +
                tuple(_release_globals()))


def allow_checkpoint_globals():
    """Register :data:`SAFE_GLOBALS` with torch's weights-only unpickler.

    Called once when :mod:`mmrep` is imported. Idempotent.
    """
    if hasattr(torch.serialization, 'add_safe_globals'):
        torch.serialization.add_safe_globals(list(SAFE_GLOBALS))


def enforce_weights_only():
    """Make every ``torch.load`` of this process use ``weights_only=True``.

    Sets ``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1``, which torch honours even where a
    library calls :func:`torch.load` without ``weights_only`` (mmengine's
    ``load_from`` / ``resume``), and drops ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``
    (torch refuses to run with both set). The tools call this at start-up.

    Returns:
        bool: whether ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` was set and has
        been removed.
    """
    dropped = os.environ.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)
    os.environ['TORCH_FORCE_WEIGHTS_ONLY_LOAD'] = '1'
    return dropped is not None


class CheckpointLoadError(RuntimeError):
    """A checkpoint file could not be read safely."""


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model it is loaded into (defined here,
    below the models, so that layers can raise it; :mod:`mmrep.checkpoints`
    exports it)."""


class UnsafeCheckpointError(CheckpointLoadError):
    """A checkpoint holds a pickled object outside the allow-list (which
    was not executed): unlike a truncated file, not an accident."""


def _unpickler_detail(error):
    """The specific reason in torch's long weights-only error message."""
    text = str(error)
    marker = 'WeightsUnpickler error:'
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # A refused global is named on a line of its own (its wording varies).
    lines = [line for line in lines if 'global' in line.lower()] or lines
    # torch goes on to suggest allow-listing the global; mmrep does not.
    return lines[0].split(' Please use')[0] if lines \
        else error.__class__.__name__


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
        CheckpointLoadError: the file is truncated or corrupt (one line);
            :class:`UnsafeCheckpointError` when it is a pickle that names
            a global outside the few numpy arrays need (never executed).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    readers = {'mindspore': read_mindspore, 'paddle': read_paddle,
               'safetensors': read_safetensors}
    found = framework or file_format(path)
    if found is None:
        return None
    if found not in readers:
        raise ValueError(f'framework must be one of {sorted(readers)}, '
                         f'got {found!r}')
    try:
        state = readers[found](path)
    except FrameworkFormatError as e:
        error = UnsafeCheckpointError if e.refused else CheckpointLoadError
        raise error(str(e)) from e
    if isinstance(map_location, (str, torch.device)) and \
            torch.device(map_location).type != 'cpu':
        state = {k: v.to(map_location) for k, v in state.items()}
    return state


def safe_load(path, map_location='cpu'):
    """Load a checkpoint with ``weights_only=True`` and clear errors.

    MindSpore, PaddlePaddle and safetensors files (told by their first
    bytes) are read by :func:`read_framework_checkpoint` instead, as a
    plain state dict under the framework's own names.

    Args:
        path (str | os.PathLike): the checkpoint file.
        map_location (str | torch.device): passed to :func:`torch.load`.

    Returns:
        object: whatever the file holds (usually a dict).

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointLoadError: the file is truncated or corrupt;
            :class:`UnsafeCheckpointError` when it holds a pickled object
            outside the allow-list (which is never executed).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    state = read_framework_checkpoint(path, map_location)
    if state is not None:
        return state
    allow_checkpoint_globals()
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        detail = _unpickler_detail(e)
        if 'global' in detail.lower() or 'getattr' in detail:
            raise UnsafeCheckpointError(
                f'refused to load {path}: it holds a pickled object outside '
                f"mmrep's allow-list of safe types, which was not executed "
                f'({detail})') from e
        raise CheckpointLoadError(
            f'cannot read checkpoint {path}: the file is truncated or '
            f'corrupt, or not a checkpoint ({detail})') from e
    except Exception as e:  # noqa: BLE001  garbage fails in many ways
        # (EOFError, RuntimeError, IndexError from the unpickler's stack...)
        raise CheckpointLoadError(
            f'cannot read checkpoint {path}: the file is truncated or '
            f'corrupt ({e.__class__.__name__}: {e})') from e
