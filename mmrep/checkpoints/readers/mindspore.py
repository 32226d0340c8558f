"""MindSpore ``.ckpt`` files: a protocol-buffers message of named tensors,
read with a reader of the wire format (never mindspore or protobuf)."""
import binascii
import math
import os

import numpy as np

from ...utils.untrusted_pickle import MAX_DIMS, one_line
from .common import as_tensor, cannot, read_bytes

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


def looks_mindspore(head):
    """Whether ``head`` starts a MindSpore checkpoint: a ``value`` (field 1)
    whose first field is a UTF-8 ``tag`` followed by a ``tensor`` (or a map
    parameter's tables).

    Args:
        head (bytes): the file's first bytes.

    Returns:
        bool | None: None when ``head`` ends before that is clear.
    """
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


def _entry(value):
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
    """Read a MindSpore ``.ckpt`` file (``mindspore.save_checkpoint``).

    Consecutive entries of one name (MindSpore splits tensors over 512 MB)
    are joined, and a name that comes back after another is refused as a
    duplicate; a trailing CRC-32 (``crc_num``) is checked; entries without
    a tensor (``append_dict`` strings, random-generator state, map
    parameters) are left out; more than 64 dimensions, or one of 2**40 or
    more, are refused. Encrypted checkpoints cannot be read.

    Args:
        path (str | os.PathLike): the file.

    Returns:
        dict[str, Tensor]: the tensors under MindSpore's names (``gamma``,
        ``beta``, ``moving_mean``, ``moving_variance`` for a BatchNorm), in
        file order, with the stored dtypes (see :data:`MINDSPORE_DTYPES`).

    Raises:
        CheckpointLoadError: the file is truncated or corrupt (or no
            MindSpore checkpoint), or holds a type mmrep cannot read.
    """
    path = os.fspath(path)
    data = read_bytes(path)
    corrupt = 'the file is truncated or corrupt (a MindSpore checkpoint'
    body = memoryview(data)
    if data[-17:-10] == b'crc_num':
        body = body[:-17]
        if binascii.crc32(body) != int.from_bytes(data[-10:], 'big'):
            raise cannot(path, f'{corrupt}: its CRC-32 does not match '
                               f'its content)')
    entries, seen = [], set()  # [tag, dims, type, [content, ...]]
    try:
        for field, wire, value in _fields(body):
            if field != 1:
                continue  # no other top-level field is known
            if wire != 2:
                raise ValueError(f'entry {len(entries)} is no message')
            tag, dims, kind, content = _entry(value)
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
        raise cannot(path, f'{corrupt}: after {len(entries)} entries, '
                           f'{one_line(e)})') from e
    if not entries:
        raise cannot(path, f'{corrupt} without entries)')
    tensors = {}
    for tag, dims, kind, parts in entries:
        if kind is None or kind in MINDSPORE_NON_TENSORS:
            continue
        if kind not in MINDSPORE_DTYPES:
            raise cannot(path, f'{one_line(tag)!r} has the MindSpore type '
                               f'{one_line(kind)!r}, which mmrep cannot '
                               f'read')
        dtype = np.dtype(MINDSPORE_DTYPES[kind])
        raw = parts[0] if len(parts) == 1 else b''.join(parts)
        shape = tuple(dims)
        if shape == (0, ) and len(raw) == dtype.itemsize:
            shape = ()  # MindSpore writes a scalar's shape as [0]
        if math.prod(shape) * dtype.itemsize != len(raw):
            raise cannot(path, f'{corrupt}: {one_line(tag)!r} holds '
                               f'{len(raw)} bytes, not the '
                               f'{math.prod(shape) * dtype.itemsize} of '
                               f'{kind} {list(dims)})')
        tensors[tag] = as_tensor(np.frombuffer(raw, dtype).reshape(shape),
                                 bfloat16=kind == 'BFloat16')
    return tensors
