"""Checkpoint files of other frameworks, read byte by byte without them.

A MindSpore ``.ckpt`` is a protocol-buffers message of named tensors and a
PaddlePaddle ``.pdparams`` a Python pickle of numpy arrays. This module reads
both with the standard library, numpy and torch alone: it never imports
mindspore, paddle or protobuf, and it never unpickles with the plain
:mod:`pickle` rules (a crafted pickle runs code). It also tells these files
and ``.safetensors`` files from torch's own by their first bytes.

It sits in :mod:`mmrep.utils`, below :func:`mmrep.utils.safe_load`, which
reads these formats through it. Its errors are :class:`FrameworkFormatError`
with one-line messages; :func:`mmrep.utils.safe_load` and the public readers
of :mod:`mmrep.checkpoints.frameworks` raise them as
:class:`~mmrep.utils.CheckpointLoadError` (or
:class:`~mmrep.utils.UnsafeCheckpointError` for a refused pickle).
"""
import binascii
import io
import math
import os
import pickle

import numpy as np
import torch

from .errors import MmrepError
from .untrusted_pickle import (MAX_DIMS, PickleCorrupt, PickleRefused,
                               StandIns, global_name, memory_limit, one_line,
                               scan_pickle)

#: MindSpore ``TensorProto.tensor_type`` names and the numpy dtype of their
#: bytes (little-endian, as MindSpore writes them). numpy has no bfloat16:
#: ``BFloat16`` bytes are read as ``uint16`` and viewed as ``torch.bfloat16``.
MINDSPORE_DTYPES = {
    'Bool': '|b1', 'Int8': '|i1', 'UInt8': '|u1', 'Int16': '<i2',
    'UInt16': '<u2', 'Int32': '<i4', 'UInt32': '<u4', 'Int64': '<i8',
    'UInt64': '<u8', 'Float16': '<f2', 'BFloat16': '<u2', 'Float32': '<f4',
    'Float64': '<f8',
}
#: MindSpore entries that hold no tensor (``append_dict`` strings, the
#: random-generator state); they are left out.
MINDSPORE_NON_TENSORS = frozenset({'str', 'random_op'})

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
_EXTENSIONS = {'.ckpt': 'mindspore', '.pdparams': 'paddle',
               '.pdopt': 'paddle'}
_HEAD = 4096


class FrameworkFormatError(MmrepError, ValueError):
    """A file of another framework cannot be read (a one-line message).

    Attributes:
        refused (bool): the file is a pickle that names a global or makes a
            call outside the allow-list (nothing was executed), rather than a
            truncated or corrupt file.
    """

    def __init__(self, message, refused=False):
        super().__init__(message)
        self.refused = refused


def _cannot(path, detail):
    """A one-line error in the wording of :func:`mmrep.utils.safe_load`."""
    return FrameworkFormatError(f'cannot read checkpoint {path}: {detail}')


# -- telling the formats apart ----------------------------------------------

def _varint(buf, pos):
    """The protocol-buffers varint at ``buf[pos]`` and the position after it.

    Raises IndexError where the buffer ends first, ValueError past 10 bytes.
    """
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise IndexError('a number runs past the end of its message')
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise ValueError('a varint longer than 10 bytes')


def _looks_mindspore(head):
    """Whether ``head`` starts a MindSpore checkpoint: a ``value`` (field 1)
    whose first field is a UTF-8 ``tag`` followed by a ``tensor`` (or a map
    parameter's tables). None when ``head`` ends before that is clear."""
    try:
        if head[0] != 0x0A:
            return False
        _, pos = _varint(head, 1)
        if head[pos] != 0x0A:
            return False
        size, pos = _varint(head, pos + 1)
        tag = head[pos:pos + size]
        if len(tag) < size:
            return None
        tag.decode('utf-8')
        return size > 0 and head[pos + size] in (0x12, 0x1A)
    except IndexError:
        return None
    except (ValueError, UnicodeDecodeError):
        return False


def _looks_paddle(head):
    """Whether ``head`` starts a pickle (protocol 2 to 5) of a dict or an
    ``OrderedDict``, as ``paddle.save`` writes a state dict (torch's legacy
    files start with a magic number instead). None when ``head`` ends
    before that is clear."""
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


def _looks_safetensors(head, size):
    """An 8-byte little-endian header length, then a JSON header."""
    if len(head) < 9:
        return False
    length = int.from_bytes(head[:8], 'little')
    return 2 <= length <= size - 8 and head[8:9] == b'{'


def file_format(path):
    """The format of a checkpoint file, from its first bytes.

    Args:
        path (str | os.PathLike): the file.

    Returns:
        str | None: ``'mindspore'``, ``'paddle'`` or ``'safetensors'``; None
        for torch's formats (zip or legacy pickle) and anything else. The
        extension (``.ckpt``, ``.pdparams``, ``.pdopt``) decides only where
        the file is too short for its content to tell (an empty file).
    """
    path = os.fspath(path)
    with open(path, 'rb') as f:
        head = f.read(_HEAD)
    if head[:4] == b'PK\x03\x04':  # torch's zip format
        return None
    if _looks_safetensors(head, os.path.getsize(path)):
        return 'safetensors'
    verdicts = {'mindspore': _looks_mindspore(head),
                'paddle': _looks_paddle(head)}
    for name, verdict in verdicts.items():
        if verdict:
            return name
    hint = _EXTENSIONS.get(os.path.splitext(path)[1].lower())
    return hint if hint and verdicts[hint] is None else None


def framework_of(path):
    """The framework that wrote a checkpoint file, from its first bytes.

    Args:
        path (str | os.PathLike): the file.

    Returns:
        str | None: ``'mindspore'`` (a protocol-buffers ``.ckpt``),
        ``'paddle'`` (a pickle of a dict, as ``paddle.save`` writes a
        ``.pdparams``) or None (torch's formats, safetensors, anything
        else). The extension is a hint only, used where the content is too
        short to tell (an empty file).
    """
    found = file_format(path)
    return found if found in ('mindspore', 'paddle') else None


def _read(path):
    with open(path, 'rb') as f:
        return f.read()


def _tensor(array, bfloat16=False):
    """A torch tensor owning a native-order copy of ``array``."""
    if array.dtype.kind == 'b':  # any nonzero byte is True
        array = array.view(np.uint8) != 0
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder('='))
    tensor = torch.from_numpy(np.array(array, order='C'))
    return tensor.view(torch.bfloat16) if bfloat16 else tensor


# -- MindSpore ----------------------------------------------------------------

def _fields(buf):
    """``(field number, wire type, value)`` for each field of a message:
    an int for a varint, a memoryview for the other wire types."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise ValueError(f'field number 0 at byte {pos}')
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire in (1, 2, 5):
            size = {1: 8, 5: 4}.get(wire)
            if size is None:
                size, pos = _varint(buf, pos)
            if pos + size > end:
                raise IndexError('a field runs past the end of its message')
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise ValueError(f'wire type {wire} at byte {pos}')
        yield field, wire, value


def _mindspore_entry(value):
    """``(tag, dims, tensor_type, content)`` of one ``Checkpoint.Value``;
    ``tensor_type`` is None for an entry without a tensor."""
    tag, dims, kind, content = None, [], None, b''
    for field, wire, data in _fields(value):
        if field == 1 and wire == 2:
            tag = str(data, 'utf-8')
        elif field == 2 and wire == 2:
            for number, kind_of, item in _fields(data):
                if number == 1 and kind_of == 0:
                    dims.append(item)
                elif number == 1 and kind_of == 2:  # packed dims
                    pos = 0
                    while pos < len(item) and len(dims) <= MAX_DIMS:
                        dim, pos = _varint(item, pos)
                        dims.append(dim)
                if len(dims) > MAX_DIMS:
                    raise ValueError(f'a tensor of more than {MAX_DIMS} '
                                     f'dimensions')
                elif number == 2 and kind_of == 2:
                    kind = str(item, 'utf-8')
                elif number == 3 and kind_of == 2:
                    content = item
    if tag is None:
        raise ValueError('an entry without a name')
    if len(dims) > MAX_DIMS or any(d >= 1 << 40 for d in dims):
        raise ValueError(f'{one_line(tag, 80)!r} has {len(dims)} dimensions '
                         f'of up to {max(dims)}')
    return tag, dims, kind, content


def read_mindspore(path):
    """Read a MindSpore ``.ckpt`` file.

    Consecutive entries of one name (MindSpore splits tensors over 512 MB)
    are joined, and a name that comes back after another is refused as a
    duplicate; a trailing CRC-32 (``crc_num``) is checked; entries without
    a tensor (strings, random-generator state, map parameters) are left out;
    more than 64 dimensions, or one of 2**40 or more, are refused.

    Args:
        path (str | os.PathLike): the file.

    Returns:
        dict[str, Tensor]: the tensors under MindSpore's names, in file
        order, with the stored dtypes (see :data:`MINDSPORE_DTYPES`).

    Raises:
        FrameworkFormatError: the file is truncated or corrupt (or no
            MindSpore checkpoint), or holds a type mmrep cannot read.
    """
    path = os.fspath(path)
    data = _read(path)
    corrupt = 'the file is truncated or corrupt (a MindSpore checkpoint'
    body = memoryview(data)
    if data[-17:-10] == b'crc_num':
        body = body[:-17]
        if binascii.crc32(body) != int.from_bytes(data[-10:], 'big'):
            raise _cannot(path, f'{corrupt}: its CRC-32 does not match '
                                f'its content)')
    entries, seen = [], set()  # [tag, dims, type, [content, ...]]
    try:
        for field, wire, value in _fields(body):
            if field != 1:
                continue  # no other top-level field is known
            if wire != 2:
                raise ValueError(f'entry {len(entries)} is no message')
            tag, dims, kind, content = _mindspore_entry(value)
            if entries and entries[-1][0] == tag and kind is not None:
                if entries[-1][1:3] != [dims, kind]:
                    raise ValueError(f'the parts of {tag!r} disagree')
                entries[-1][3].append(content)
            elif tag in seen:
                raise ValueError(f'a duplicate entry {one_line(tag, 80)!r}')
            else:
                seen.add(tag)
                entries.append([tag, dims, kind, [content]])
    except (IndexError, ValueError, UnicodeDecodeError) as e:
        raise _cannot(path, f'{corrupt}: after {len(entries)} entries, '
                            f'{one_line(e)})') from e
    if not entries:
        raise _cannot(path, f'{corrupt} without entries)')
    tensors = {}
    for tag, dims, kind, parts in entries:
        if kind is None or kind in MINDSPORE_NON_TENSORS:
            continue
        if kind not in MINDSPORE_DTYPES:
            raise _cannot(path, f'{one_line(tag)!r} has the MindSpore type '
                                f'{one_line(kind)!r}, which mmrep cannot '
                                f'read')
        dtype = np.dtype(MINDSPORE_DTYPES[kind])
        raw = parts[0] if len(parts) == 1 else b''.join(parts)
        shape = tuple(dims)
        if shape == (0, ) and len(raw) == dtype.itemsize:
            shape = ()  # MindSpore writes a scalar's shape as [0]
        if math.prod(shape) * dtype.itemsize != len(raw):
            raise _cannot(path, f'{corrupt}: {one_line(tag)!r} holds '
                                f'{len(raw)} bytes, not the '
                                f'{math.prod(shape) * dtype.itemsize} of '
                                f'{kind} {list(dims)})')
        tensors[tag] = _tensor(np.frombuffer(raw, dtype).reshape(shape),
                               bfloat16=kind == 'BFloat16')
    return tensors


# -- Paddle -------------------------------------------------------------------

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
    (:func:`~.untrusted_pickle.scan_pickle`: no global outside
    :data:`PADDLE_GLOBALS`, no opcode that creates objects by name, no memo
    index or frame that would make the unpickler reserve more than the file
    holds), then unpickled with only the stand-ins of
    :data:`PADDLE_GLOBALS` admitted (:class:`~.untrusted_pickle.StandIns`),
    each checking its arguments; arrays are built from their bytes only
    after their shape, numeric dtype and size are checked, all within one
    budget of :func:`~.untrusted_pickle.memory_limit` of the file's size.

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
        FrameworkFormatError: the file is truncated or corrupt, or no dict;
            with ``refused`` set, the pickle names a global or makes a call
            outside the allow-list (nothing was executed).
    """
    path = os.fspath(path)
    data = _read(path)
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
            tensors[key] = _tensor(array, bfloat16=array.dtype.kind == 'u'
                                   and array.dtype.itemsize == 2)
    except PickleRefused as e:
        raise FrameworkFormatError(
            f'refused to load {path}: the pickle {e}, which a Paddle '
            f'checkpoint never holds (nothing was executed)',
            refused=True) from None
    except PickleCorrupt as e:
        raise _cannot(path, f'{corrupt}: {e})') from None
    except Exception as e:  # noqa: BLE001  garbage fails in many ways
        raise _cannot(path, f'{corrupt}: {e.__class__.__name__}: '
                            f'{one_line(e)})') from None
    return tensors


# -- safetensors --------------------------------------------------------------

def read_safetensors(path):
    """Read a ``.safetensors`` file with the ``safetensors`` package.

    Args:
        path (str | os.PathLike): the file.

    Returns:
        dict[str, Tensor]: its tensors (on the CPU).

    Raises:
        FrameworkFormatError: the package is not installed, or the file is
            truncated or corrupt.
    """
    path = os.fspath(path)
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise _cannot(path, 'it is a safetensors file, which needs the '
                            'safetensors package (pip install safetensors)') \
            from None
    try:
        return load_file(path, device='cpu')
    except Exception as e:  # noqa: BLE001  SafetensorError and others
        raise _cannot(path, f'the file is truncated or corrupt (a '
                            f'safetensors file: {one_line(e)})') from e
