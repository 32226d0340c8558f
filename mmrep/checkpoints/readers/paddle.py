"""PaddlePaddle ``.pdparams`` files: a Python pickle of numpy arrays, read
with an unpickler that admits only the few globals arrays need (never
paddle, never the plain :mod:`pickle` rules: a crafted pickle runs
code)."""
import io
import os
import pickle

import numpy as np

from ...utils.serialization import UnsafeCheckpointError
from ...utils.untrusted_pickle import (PickleCorrupt, PickleRefused,
                                       StandIns, global_name, memory_limit,
                                       one_line, scan_pickle)
from .common import as_tensor, cannot, read_bytes

#: The globals a Paddle checkpoint's pickle may name, and nothing more:
#: numpy's array reconstructor (both module spellings: numpy >= 2 and
#: older), ``ndarray`` (its argument), ``dtype``, numpy's scalar
#: constructor, ``_codecs.encode`` and ``bytes`` (protocol 2 has no bytes
#: opcode: it pickles an array's bytes as a latin-1 string to encode, and
#: empty bytes as ``bytes()``) and ``OrderedDict`` (older Paddle state
#: dicts). Each is replaced by a stand-in that accepts only the arguments
#: these pickles pass.
PADDLE_GLOBALS = (
    'numpy._core.multiarray._reconstruct',
    'numpy.core.multiarray._reconstruct', 'numpy.ndarray', 'numpy.dtype',
    'numpy._core.multiarray.scalar', 'numpy.core.multiarray.scalar',
    '_codecs.encode', '__builtin__.bytes', 'builtins.bytes',
    'collections.OrderedDict',
)


def looks_paddle(head):
    """Whether ``head`` starts a pickle (protocol 2 to 5) of a dict or an
    ``OrderedDict``, as ``paddle.save`` writes a state dict (torch's legacy
    files start with a magic number instead).

    Args:
        head (bytes): the file's first bytes.

    Returns:
        bool | None: None when ``head`` ends before that is clear.
    """
    if len(head) < 2:
        return None
    if head[0] != 0x80 or head[1] not in (2, 3, 4, 5):
        return False
    body = head[2:]
    if body[:1] == b'\x95':  # FRAME and its 8-byte length
        body = body[9:]
    if not body:
        return None
    return body[:1] == b'}' or body.startswith(
        (b'ccollections\nOrderedDict\n', b'\x8c\x0bcollections'))


class _PaddleUnpickler(pickle.Unpickler):
    """An unpickler that hands out the stand-ins of the globals the scan
    found (each in :data:`PADDLE_GLOBALS`) and nothing else."""

    def __init__(self, file, admitted):
        super().__init__(file, encoding='latin1')
        self.admitted = admitted

    def find_class(self, module, name):
        found = self.admitted.get(global_name(module, name))
        if found is None:
            raise PickleRefused(f'names {one_line(module, 60)}.'
                                f'{one_line(name, 60)}')
        return found

    def persistent_load(self, pid):
        raise PickleRefused('refers to a persistent object')


def read_paddle(path):
    """Read a PaddlePaddle ``.pdparams`` file (``paddle.save`` of a state
    dict: a pickle, protocol 2 to 4, of a dict of numpy arrays).

    The pickle is first walked opcode by opcode
    (:func:`~mmrep.utils.untrusted_pickle.scan_pickle`: no global outside
    :data:`PADDLE_GLOBALS`, no opcode that creates objects by name, no memo
    index or frame that would make the unpickler reserve more than the file
    holds), then unpickled with only the stand-ins of
    :data:`PADDLE_GLOBALS` admitted
    (:class:`~mmrep.utils.untrusted_pickle.StandIns`), each checking its
    arguments; arrays are built from their bytes only after their shape,
    numeric dtype and size are checked, all within one budget of
    :func:`~mmrep.utils.untrusted_pickle.memory_limit` of the file's size.

    Args:
        path (str | os.PathLike): the file.

    Returns:
        dict[str, Tensor]: the arrays under Paddle's names (structured
        names, as ``Layer.state_dict`` gives them), with their stored
        dtypes, except that ``uint16`` arrays are bfloat16 tensors (Paddle
        has no uint16 tensors and saves bfloat16 ones as uint16). Entries
        that are no arrays (Paddle's ``StructuredToParameterName@@`` table)
        are left out.

    Raises:
        CheckpointLoadError: the file is truncated or corrupt, or no dict;
            :class:`~mmrep.utils.UnsafeCheckpointError` where the pickle
            names a global or makes a call outside the allow-list (nothing
            was executed).
    """
    path = os.fspath(path)
    data = read_bytes(path)
    corrupt = 'the file is truncated or corrupt (a Paddle checkpoint'
    stand_ins = StandIns(memory_limit(len(data)))
    try:
        names = scan_pickle(io.BytesIO(data), PADDLE_GLOBALS, stand_ins)
        unpickler = _PaddleUnpickler(io.BytesIO(data),
                                     stand_ins.pickle_globals(names))
        obj = stand_ins.materialize(unpickler.load())
        if not isinstance(obj, dict):
            raise PickleCorrupt(f'not a Paddle state dict (the pickle holds '
                                f'{type(obj).__name__}, not a dict)')
        tensors = {}
        for key, value in obj.items():
            if not isinstance(value, (np.ndarray, np.generic)):
                continue
            if not isinstance(key, str):
                raise PickleCorrupt(f'an array under the key '
                                    f'{one_line(repr(key), 60)}, not a name')
            array = np.asarray(value)
            tensors[key] = as_tensor(array, bfloat16=array.dtype.kind == 'u'
                                     and array.dtype.itemsize == 2)
    except PickleRefused as e:
        raise UnsafeCheckpointError(
            f'refused to load {path}: the pickle {e}, which a Paddle '
            f'checkpoint never holds (nothing was executed)') from None
    except PickleCorrupt as e:
        raise cannot(path, f'{corrupt}: {e})') from None
    except Exception as e:  # noqa: BLE001  garbage fails in many ways
        raise cannot(path, f'{corrupt}: {e.__class__.__name__}: '
                           f'{one_line(e)})') from None
    return tensors
