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
import collections
import io
import math
import os
import pickle
import pickletools

import numpy as np
import torch

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
# dtype names numpy pickles for numeric arrays (no objects, strings,
# records or datetimes).
_NUMERIC = frozenset('b1 i1 i2 i4 i8 u1 u2 u4 u8 f2 f4 f8 c8 c16'.split())
# The state numpy pickles for a numeric dtype, but for its byte order.
_DTYPE_STATE = (None, None, None, -1, -1, 0)

_EXTENSIONS = {'.ckpt': 'mindspore', '.pdparams': 'paddle',
               '.pdopt': 'paddle'}
_HEAD = 4096


class FrameworkFormatError(ValueError):
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


def _brief(value, depth=2):
    """A short description of an unpickled value, for messages: never the
    whole of a large one."""
    if isinstance(value, (bytes, str)) and len(value) > 24 or \
            isinstance(value, (tuple, list)) and (depth == 0
                                                  or len(value) > 8):
        return f'<{type(value).__name__} of length {len(value)}>'
    if isinstance(value, (tuple, list)):
        inner = ', '.join(_brief(v, depth - 1) for v in value)
        if isinstance(value, list):
            return f'[{inner}]'
        return f'({inner},)' if len(value) == 1 else f'({inner})'
    if isinstance(value, int) and value.bit_length() > 64:
        return f'<int of {value.bit_length()} bits>'
    if isinstance(value, (int, float, bytes, str, type(None))):
        return repr(value)
    if isinstance(value, _Global):
        return value.name
    if isinstance(value, _Dtype):
        return f'dtype({value.dtype.str!r})'
    return f'<{type(value).__name__}>'


def _one_line(value, limit=160):
    text = ' '.join(str(value).split())
    return text if len(text) <= limit else text[:limit - 3] + '...'


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
                    while pos < len(item):
                        dim, pos = _varint(item, pos)
                        dims.append(dim)
                elif number == 2 and kind_of == 2:
                    kind = str(item, 'utf-8')
                elif number == 3 and kind_of == 2:
                    content = item
    if tag is None:
        raise ValueError('an entry without a name')
    if any(d >= 1 << 63 for d in dims):
        raise ValueError(f'{tag!r} has a negative dimension')
    return tag, dims, kind, content


def read_mindspore(path):
    """Read a MindSpore ``.ckpt`` file.

    Consecutive entries of one name (MindSpore splits tensors over 512 MB)
    are joined; a trailing CRC-32 (``crc_num``) is checked; entries without
    a tensor (strings, random-generator state, map parameters) are left out.

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
    entries = []  # [tag, dims, type, [content, ...]]
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
            else:
                entries.append([tag, dims, kind, [content]])
    except (IndexError, ValueError, UnicodeDecodeError) as e:
        raise _cannot(path, f'{corrupt}: after {len(entries)} entries, '
                            f'{_one_line(e)})') from e
    if not entries:
        raise _cannot(path, f'{corrupt} without entries)')
    tensors = {}
    for tag, dims, kind, parts in entries:
        if kind is None or kind in MINDSPORE_NON_TENSORS:
            continue
        if kind not in MINDSPORE_DTYPES:
            raise _cannot(path, f'{_one_line(tag)!r} has the MindSpore type '
                                f'{_one_line(kind)!r}, which mmrep cannot '
                                f'read')
        dtype = np.dtype(MINDSPORE_DTYPES[kind])
        raw = parts[0] if len(parts) == 1 else b''.join(parts)
        shape = tuple(dims)
        if shape == (0, ) and len(raw) == dtype.itemsize:
            shape = ()  # MindSpore writes a scalar's shape as [0]
        if math.prod(shape) * dtype.itemsize != len(raw):
            raise _cannot(path, f'{corrupt}: {_one_line(tag)!r} holds '
                                f'{len(raw)} bytes, not the '
                                f'{math.prod(shape) * dtype.itemsize} of '
                                f'{kind} {list(dims)})')
        tensors[tag] = _tensor(np.frombuffer(raw, dtype).reshape(shape),
                               bfloat16=kind == 'BFloat16')
    return tensors


# -- Paddle -------------------------------------------------------------------

class _Global:
    """What the unpickler hands out for an admitted global: a callable
    that checks its arguments, and refuses to have its state set."""
    __slots__ = ('name', '_call')

    def __init__(self, name, call):
        self.name = name
        self._call = call

    def __call__(self, *args):
        return self._call(self.name, *args)

    def __setstate__(self, state):
        raise _Refusal(f'sets the state of {self.name}')


class _Dtype:
    """A numeric numpy dtype that a pickle built (``dtype(name, ...)``,
    then its state)."""
    __slots__ = ('dtype', 'built')

    def __init__(self, dtype):
        self.dtype, self.built = dtype, False

    def __setstate__(self, state):
        if self.built or not (isinstance(state, tuple) and len(state) == 8
                              and state[0] == 3 and state[1] in tuple('<>|=')
                              and state[2:] == _DTYPE_STATE):
            raise _Refusal(f'gives the numpy dtype {self.dtype} the state '
                           f'{_one_line(_brief(state))}')
        if state[1] in '<>':
            self.dtype = self.dtype.newbyteorder(state[1])
        self.built = True


class _Array:
    """A numpy array that a pickle built (``_reconstruct(...)``, then its
    state), checked before numpy sees anything."""
    __slots__ = ('array', )

    def __init__(self, array=None):
        self.array = array

    def __setstate__(self, state):
        if self.array is not None or not isinstance(state, tuple) \
                or len(state) not in (4, 5) \
                or (len(state) == 5 and state[0] != 1):
            raise _Refusal(f'gives a numpy array the state '
                           f'{_one_line(_brief(state))}')
        shape, dtype, fortran, raw = state[-4:]
        if isinstance(raw, str):  # a Python 2 pickle, read as latin-1
            raw = raw.encode('latin-1')
        if not (isinstance(shape, tuple) and len(shape) <= 64
                and all(type(d) is int and d >= 0 for d in shape)
                and isinstance(dtype, _Dtype) and dtype.built
                and fortran in (True, False) and isinstance(raw, bytes)):
            raise _Refusal(f'gives a numpy array the state '
                           f'{_one_line(_brief(state))}')
        size = math.prod(shape) * dtype.dtype.itemsize
        if size != len(raw):
            raise _Corrupt(f'an array of shape {list(shape)} holds '
                           f'{len(raw)} bytes, not {size}')
        self.array = np.frombuffer(raw, dtype.dtype).reshape(
            shape, order='F' if fortran else 'C')


class _Refusal(Exception):
    """A pickle reaches for something outside the allow-list."""


class _Corrupt(Exception):
    """A pickle that is well-formed but holds inconsistent arrays."""


def _odd(name, args):
    return _Refusal(f'calls {name} with arguments no numpy array pickles '
                    f'({_one_line(_brief(args))})')


def _reconstruct(ndarray):
    def call(name, *args):
        if len(args) != 3 or args[0] is not ndarray or args[1] != (0, ) \
                or args[2] not in (b'b', 'b'):
            raise _odd(name, args)
        return _Array()
    return call


def _ndarray(name, *args):
    raise _odd(name, args)


def _dtype(name, *args):
    if len(args) != 3 or not isinstance(args[0], str) \
            or args[0] not in _NUMERIC or args[1] not in (True, False) \
            or args[2] not in (True, False):
        raise _odd(name, args)
    return _Dtype(np.dtype(args[0]))


def _scalar(name, *args):
    if len(args) != 2 or not isinstance(args[0], _Dtype) \
            or not args[0].built or not isinstance(args[1], (bytes, str)):
        raise _odd(name, args)
    raw = args[1].encode('latin-1') if isinstance(args[1], str) else args[1]
    if len(raw) != args[0].dtype.itemsize:
        raise _Corrupt(f'a {args[0].dtype} scalar of {len(raw)} bytes')
    return _Array(np.frombuffer(raw, args[0].dtype).reshape(()))


def _encode(name, *args):
    if len(args) != 2 or not isinstance(args[0], str) \
            or args[1] not in ('latin1', 'latin-1'):
        raise _odd(name, args)
    return args[0].encode('latin-1')


def _bytes(name, *args):
    if args:
        raise _odd(name, args)
    return b''


def _ordered_dict(name, *args):
    if args:
        raise _odd(name, args)
    return collections.OrderedDict()


class _PaddleUnpickler(pickle.Unpickler):
    """An unpickler that admits :data:`PADDLE_GLOBALS` (as checking
    stand-ins) and refuses every other global before anything runs."""

    def __init__(self, file):
        super().__init__(file, encoding='latin1')
        ndarray = _Global('numpy.ndarray', _ndarray)
        self.admitted = {'numpy.ndarray': ndarray,
                         'numpy.dtype': _Global('numpy.dtype', _dtype),
                         '_codecs.encode': _Global('_codecs.encode', _encode),
                         'collections.OrderedDict': _Global(
                             'collections.OrderedDict', _ordered_dict)}
        for name in ('__builtin__.bytes', 'builtins.bytes'):
            self.admitted[name] = _Global(name, _bytes)
        for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
            name = f'{module}._reconstruct'
            self.admitted[name] = _Global(name, _reconstruct(ndarray))
            name = f'{module}.scalar'
            self.admitted[name] = _Global(name, _scalar)

    def find_class(self, module, name):
        found = self.admitted.get(f'{module}.{name}')
        if found is None:
            raise _Refusal(f'calls {_one_line(module, 60)}.'
                           f'{_one_line(name, 60)}')
        return found

    def persistent_load(self, pid):
        raise _Refusal('refers to a persistent object '
                       f'({_one_line(_brief(pid))})')


def read_paddle(path):
    """Read a PaddlePaddle ``.pdparams`` file (``paddle.save`` of a state
    dict: a pickle, protocol 2 to 4, of a dict of numpy arrays).

    The pickle is first walked opcode by opcode (so that no length it
    claims can make the unpickler allocate more than the file holds), then
    unpickled with only :data:`PADDLE_GLOBALS` admitted, each as a stand-in
    that checks its arguments; arrays are built from their bytes only after
    their shape, numeric dtype and size are checked. Memory stays within a
    few times the file's size.

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
    try:
        for op, arg, pos in pickletools.genops(data):
            if op.name == 'FRAME' and arg > len(data) - pos - 9:
                raise ValueError(f'a frame of {arg} bytes at byte {pos} runs '
                                 f'past the end of the file')
    except Exception as e:  # noqa: BLE001  garbage fails in many ways
        raise _cannot(path, f'{corrupt}: {_one_line(e)})') from e
    try:
        obj = _PaddleUnpickler(io.BytesIO(data)).load()
    except _Refusal as e:
        raise FrameworkFormatError(
            f'refused to load {path}: the pickle {e}, which a Paddle '
            f'checkpoint never holds (nothing was executed)',
            refused=True) from None
    except _Corrupt as e:
        raise _cannot(path, f'{corrupt}: {e})') from None
    except Exception as e:  # noqa: BLE001
        raise _cannot(path, f'{corrupt}: {e.__class__.__name__}: '
                            f'{_one_line(e)})') from e
    if not isinstance(obj, dict):
        raise _cannot(path, f'not a Paddle state dict (the pickle holds '
                            f'{type(obj).__name__}, not a dict)')
    tensors = {}
    for key, value in obj.items():
        if not isinstance(value, _Array):
            continue
        if not isinstance(key, str):
            raise _cannot(path, f'{corrupt}: an array under the key '
                                f'{_one_line(_brief(key))}, not a name)')
        if value.array is None:
            raise _cannot(path, f'{corrupt}: the array {_one_line(key)!r} '
                                f'is never given its data)')
        array = value.array
        tensors[key] = _tensor(array, bfloat16=array.dtype.kind == 'u'
                               and array.dtype.itemsize == 2)
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
                            f'safetensors file: {_one_line(e)})') from e
