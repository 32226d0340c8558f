"""Reading checkpoint files safely: data only, never code, in bounded memory.

:func:`safe_load` reads torch files (zip or legacy) with torch's
weights-only unpickler after a scan of their pickle
(:mod:`.untrusted_pickle`), admitting for that load only the stand-ins of
the few non-tensor objects mmengine writes for resuming (numpy arrays,
dtypes and scalars, its ``HistoryBuffer`` log buffers) and
``argparse.Namespace`` (the original releases' training scripts save their
arguments beside the weights); nothing is added to torch's allow-list for
the rest of the process. It also reads the checkpoints of other frameworks,
told by their first bytes: MindSpore ``.ckpt`` and PaddlePaddle
``.pdparams`` files (read without those frameworks) and ``.safetensors``
files (with the ``safetensors`` package), through the readers of
:mod:`mmrep.checkpoints.readers`, a higher layer registered as
``'framework_file'`` in :data:`mmrep.registry.CHECKPOINT_LOADERS`.

Every refusal is a :class:`CheckpointLoadError` (one line);
:class:`UnsafeCheckpointError` where the file reaches for code or for memory
out of proportion to its size.
"""
import contextlib
import io
import os
import pickle
import warnings
import zipfile

import torch

from ..registry import CHECKPOINT_LOADERS
from .errors import MmrepError
from .untrusted_pickle import (PickleCorrupt, PickleRefused, StandIns,
                               memory_limit, one_line, scan_pickle)

#: Globals of torch's own weights-only allow-list that no checkpoint of
#: these models names and that let a small file claim memory or build
#: tensors without data: refused by the scan before torch reads the file.
REFUSED_TORCH_GLOBALS = frozenset({
    'builtins.bytearray', 'torch._utils._rebuild_qtensor',
    'torch._utils._rebuild_sparse_tensor',
    'torch._utils._rebuild_meta_tensor_no_storage',
    'torch._utils._rebuild_nested_tensor',
    'torch._utils._rebuild_wrapper_subclass',
    'torch._utils._rebuild_device_tensor_from_numpy',
    'torch._utils._rebuild_device_tensor_from_cpu_tensor',
})


class _TorchNames:
    """The globals the scan lets through to torch's weights-only unpickler
    (which refuses everything outside its allow-list and the stand-ins):
    all but :data:`REFUSED_TORCH_GLOBALS` and mmrep's own names."""

    def __contains__(self, name):
        return name not in REFUSED_TORCH_GLOBALS and \
            not name.startswith('mmrep.')


@contextlib.contextmanager
def checkpoint_globals(stand_ins):
    """Admit the stand-ins of one load to torch's weights-only unpickler
    for the duration of the ``with`` block only.

    Args:
        stand_ins (StandIns): the load's stand-ins.
    """
    entries = stand_ins.torch_globals()
    with torch.serialization.safe_globals(entries):
        yield


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


class CheckpointLoadError(MmrepError, RuntimeError):
    """A checkpoint file could not be read safely."""


class CheckpointMismatchError(MmrepError, ValueError):
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


def safe_load(path, map_location='cpu'):
    """Load a checkpoint file: data only, never code, within bounded memory.

    MindSpore, PaddlePaddle and safetensors files (told by their first
    bytes) are read by
    :func:`~mmrep.checkpoints.readers.read_framework_checkpoint`, as a plain
    state dict under the framework's own names. A torch file (zip or legacy
    format) is checked before torch reads it: a zip's entries must be
    unique and inflate to at most :func:`~.untrusted_pickle.memory_limit`
    of its size, and its pickle passes :func:`~.untrusted_pickle.scan_pickle`.
    Then :func:`torch.load` reads it with ``weights_only=True`` and, for
    this load only (:func:`checkpoint_globals`), the stand-ins of the few
    foreign objects mmengine's checkpoints hold (numpy arrays, dtypes and
    scalars, ``HistoryBuffer``, ``argparse.Namespace``), which check their
    arguments; :meth:`~.untrusted_pickle.StandIns.materialize` replaces
    them by real objects and checks every tensor.

    Args:
        path (str | os.PathLike): the checkpoint file.
        map_location (str | torch.device | callable): passed to
            :func:`torch.load`.

    Returns:
        object: whatever the file holds (usually a dict).

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointLoadError: the file cannot be opened, or is truncated or
            corrupt; :class:`UnsafeCheckpointError` when it reaches for code
            or for memory out of proportion to its size (nothing is
            executed). Always one line.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    state = CHECKPOINT_LOADERS.get('framework_file')(path, map_location)
    if state is not None:
        return state
    stand_ins = StandIns(memory_limit(os.path.getsize(path)))
    try:
        _scan_torch_file(path, stand_ins)
        with checkpoint_globals(stand_ins), warnings.catch_warnings():
            # torch warns of any pickle protocol but 2; the scan has read
            # every opcode already
            warnings.filterwarnings('ignore', 'Detected pickle protocol')
            obj = torch.load(path, map_location=map_location,
                             weights_only=True)
        return stand_ins.materialize(obj)
    except PickleRefused as e:
        raise _refused(path, e) from None
    except PickleCorrupt as e:
        raise _corrupt(path, e) from None
    except pickle.UnpicklingError as e:
        detail = _unpickler_detail(e)
        if any(mark in detail for mark in _TORCH_REFUSALS):
            raise _refused(path, detail) from None
        raise _corrupt(path, detail) from None
    except Exception as e:  # noqa: BLE001  garbage fails in many ways
        # (EOFError, RuntimeError, IndexError from the unpickler's stack,
        # MemoryError...)
        raise _corrupt(path, f'{e.__class__.__name__}: {one_line(e)}') \
            from None


#: Words of torch's weights-only refusals that mean the file reaches for
#: code (a global, call, build or persistent id outside the allow-list).
#: (An opcode torch does not support, ``Unsupported operand``, is no
#: refusal: the scan has already refused those that create objects.)
_TORCH_REFUSALS = ('global', 'GLOBAL', 'getattr', 'unrecognized function',
                   'Can only build', 'Can only create new object',
                   'persistent_load')


def _refused(path, detail):
    """The one-line refusal of a file that reaches for code or memory."""
    if getattr(detail, 'memory', False):
        return UnsafeCheckpointError(
            f'refused to load {path}: it claims memory out of proportion to '
            f'its size of {os.path.getsize(path)} bytes '
            f'({one_line(detail)}); nothing was executed')
    return UnsafeCheckpointError(
        f'refused to load {path}: it holds a pickled object outside '
        f"mmrep's allow-list of safe types, which was not executed "
        f'({one_line(detail)})')


def _corrupt(path, detail):
    return CheckpointLoadError(
        f'cannot read checkpoint {path}: the file is truncated or corrupt, '
        f'or not a checkpoint ({one_line(detail)})')


#: How torch's legacy format starts: its magic number, pickled (protocol 2
#: by default, or another one ``torch.save`` was given).
_LEGACY_HEADS = tuple(pickle.dumps(0x1950a86a20f9469cfc6c, protocol=p)
                      for p in range(2, pickle.HIGHEST_PROTOCOL + 1))


def _scan_torch_file(path, budget):
    """Check a torch file before torch reads it.

    Raises:
        PickleRefused: duplicate zip entries, entries that inflate past
            ``limit``, or a pickle :func:`scan_pickle` refuses.
        PickleCorrupt: no single ``data.pkl``, or a pickle that does not
            parse.
    """
    with open(path, 'rb') as f:
        head = f.read(max(map(len, _LEGACY_HEADS)))
    if head.startswith(_LEGACY_HEADS):  # the legacy format: magic number, protocol,
        # system info, the object, its storage keys (then raw storages)
        with open(path, 'rb') as f:
            for _ in range(5):
                scan_pickle(f, _TorchNames(), budget, persistent_ids=True,
                            new_objects=True, stack_globals=False)
        return
    if head[:4] != b'PK\x03\x04':  # torch's own test of its zip format
        raise PickleCorrupt('neither a zip nor a legacy torch file')
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            names = [e.filename for e in entries]
            if len(set(names)) != len(names):
                raise PickleRefused('the zip holds two entries of one name')
            inflated = sum(e.file_size for e in entries)
            if inflated > budget.limit:
                raise PickleRefused(f'the zip inflates to {inflated} bytes',
                                    memory=True)
            pickles = [n for n in names if n.count('/') == 1
                       and n.endswith('/data.pkl')]
            if len(pickles) != 1:
                raise PickleCorrupt(f'{len(pickles)} data.pkl entries')
            data = archive.read(pickles[0])
    except zipfile.BadZipFile as e:
        raise PickleCorrupt(f'a broken zip: {one_line(e)}') from None
    scan_pickle(io.BytesIO(data), _TorchNames(), budget,
                persistent_ids=True, new_objects=True, stack_globals=False)
