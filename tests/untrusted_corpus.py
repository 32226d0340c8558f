"""Crafted checkpoint files for the hardening tests.

Used by ``test_untrusted_files.py``, ``test_untrusted_tools.py`` and
``test_fuzz_readers.py``. Nothing here is a fixture value: every file is
built from opcodes and records by the functions below, at test time.

* a small pickle assembler (:func:`enc` turns plain Python values into the
  opcodes that push them; :class:`Op` embeds hand-written opcodes),
* the containers :func:`safe_load` tells apart: torch's zip format
  (``archive/data.pkl`` plus ``archive/data/N`` storage records), torch's
  legacy format (magic number, protocol, system info, the object pickle,
  the storage keys, the storages), a Paddle ``.pdparams`` pickle and a
  MindSpore ``.ckpt`` protocol-buffers file,
* :data:`CASES`, the corpus: each case builds one file and says what
  :func:`mmrep.utils.safe_load` must do with it,
* :func:`run_probe`, which loads files in forked children of one
  subprocess (``untrusted_probe.py``), so that a crash, a memory blow-up
  or a hang is a result of its case, not the end of the test session.
"""
import io
import json
import os
import os.path as osp
import pickle
import struct
import subprocess
import sys
import zipfile

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(HERE)
PROBE = osp.join(HERE, 'untrusted_probe.py')

#: Peak-memory bound while reading a crafted file: growth of the peak
#: resident set over the reader's baseline.
MEMORY_SLACK = 64 * 2**20
MEMORY_FACTOR = 8

#: copyreg extension codes the probe registers (a process that has
#: registered them resolves EXT1/EXT2/EXT4 to these callables); each
#: callable runs ``touch MARKER`` when called with the payload's argument.
EXTENSIONS = (('os', 'system', 0xF1), ('posix', 'system', 0xF1F1),
              ('subprocess', 'getoutput', 0x7A0000F1))


def memory_bound(size):
    """The largest peak-memory growth allowed while reading a file of
    ``size`` bytes."""
    return MEMORY_FACTOR * size + MEMORY_SLACK


# -- a pickle assembler -------------------------------------------------------

class Op(bytes):
    """Opcodes that push exactly one object, embedded as they are."""


def _long(value):
    raw = pickle.encode_long(value)
    if len(raw) < 256:
        return b'\x8a' + bytes([len(raw)]) + raw  # LONG1
    return b'\x8b' + struct.pack('<i', len(raw)) + raw  # LONG4


def enc(value):
    """The opcodes that push ``value`` (no memo, no framing).

    Supports None, bools, ints of any size, floats, str, bytes (as
    protocol 2 writes them, which every reader here takes), tuples, lists,
    dicts and :class:`Op` (embedded verbatim).
    """
    if isinstance(value, Op):
        return bytes(value)
    if value is None:
        return b'N'
    if value is True:
        return b'\x88'
    if value is False:
        return b'\x89'
    if isinstance(value, int):
        if 0 <= value < 256:
            return b'K' + bytes([value])
        if 0 <= value < 65536:
            return b'M' + struct.pack('<H', value)
        if -2**31 <= value < 2**31:
            return b'J' + struct.pack('<i', value)
        return _long(value)
    if isinstance(value, float):
        return b'G' + struct.pack('>d', value)
    if isinstance(value, str):
        raw = value.encode('utf-8', 'surrogatepass')
        return b'X' + struct.pack('<I', len(raw)) + raw
    if isinstance(value, (bytes, bytearray)):
        # As protocol 2 pickles bytes (torch.save and paddle.save use it):
        # _codecs.encode(<latin-1 text>, 'latin1').
        return enc(call(G('_codecs', 'encode'), bytes(value).decode('latin1'),
                        'latin1'))
    if isinstance(value, tuple):
        return b'(' + b''.join(map(enc, value)) + b't' if value else b')'
    if isinstance(value, list):
        return b']' + (b'(' + b''.join(map(enc, value)) + b'e'
                       if value else b'')
    if isinstance(value, dict):
        items = b''.join(enc(k) + enc(v) for k, v in value.items())
        return b'}' + (b'(' + items + b'u' if value else b'')
    raise TypeError(f'cannot encode {type(value).__name__}')


def program(value, proto=2):
    """A whole pickle: PROTO, ``value``, STOP."""
    return b'\x80' + bytes([proto]) + enc(value) + b'.'


def G(module, name):
    """GLOBAL ``module.name``."""
    return Op(b'c' + f'{module}\n{name}\n'.encode())


def call(func, *args):
    """REDUCE: ``func(*args)``."""
    return Op(enc(func) + enc(tuple(args)) + b'R')


def build(obj, state):
    """BUILD: ``obj`` given ``state``."""
    return Op(enc(obj) + enc(state) + b'b')


def memo_put(value, index):
    """``value``, memoised under ``index`` (BINPUT / LONG_BINPUT)."""
    put = b'q' + bytes([index]) if index < 256 else \
        b'r' + struct.pack('<I', index)
    return Op(enc(value) + put)


def memo_get(index):
    return Op(b'h' + bytes([index]) if index < 256 else
              b'j' + struct.pack('<I', index))


def _numpy_module():
    try:  # numpy >= 2 pickles its reconstructor under numpy._core
        import numpy._core.multiarray  # noqa: F401
        return 'numpy._core.multiarray'
    except ImportError:
        return 'numpy.core.multiarray'


NUMPY = _numpy_module()
NUMERIC_STATE = (None, None, None, -1, -1, 0)


def np_dtype(name, state=None):
    """``numpy.dtype(name, False, True)``, then BUILD ``state`` if given."""
    dtype = call(G('numpy', 'dtype'), name, False, True)
    return build(dtype, state) if state is not None else dtype


def np_numeric_dtype(name='f4', order='<'):
    """A numeric dtype as numpy pickles it."""
    return np_dtype(name, (3, order) + NUMERIC_STATE)


def np_empty_array():
    """``_reconstruct(ndarray, (0,), b'b')``, as numpy pickles start."""
    return call(G(NUMPY, '_reconstruct'), G('numpy', 'ndarray'), (0, ), b'b')


def np_array(shape, dtype, raw, fortran=False):
    """An array as numpy pickles one: the empty array, BUILD with
    ``(1, shape, dtype, fortran, raw)``."""
    shape = shape if isinstance(shape, Op) else tuple(shape)
    return build(np_empty_array(), (1, shape, dtype, fortran, raw))


def np_float32_array(values):
    return np_array((len(values), ), np_numeric_dtype('f4'),
                    struct.pack(f'<{len(values)}f', *values))


# -- torch containers ---------------------------------------------------------

def storage(key, numel, kind='FloatStorage', location='cpu', legacy=False):
    """BINPERSID of a storage record (``archive/data/<key>`` in a zip)."""
    pid = ('storage', G('torch', kind), key, location, numel)
    return Op(enc(pid + ((None, ) if legacy else ())) + b'Q')


def tensor(storage_op, offset, size, stride):
    """``torch._utils._rebuild_tensor_v2`` of a storage view."""
    return call(G('torch._utils', '_rebuild_tensor_v2'), storage_op, offset,
                tuple(size), tuple(stride), False,
                call(G('collections', 'OrderedDict')))


def float_tensor(values, key='0', legacy=False):
    """A genuine float tensor and the bytes of its storage record."""
    op = tensor(storage(key, len(values), legacy=legacy), 0, (len(values), ),
                (1, ))
    return op, struct.pack(f'<{len(values)}f', *values)


_TEMPLATE = {}


def _torch_records():
    """The records torch.save writes besides data.pkl and the storages
    (``version``, ``byteorder``, ...), taken from a real torch.save."""
    if not _TEMPLATE:
        import torch
        buffer = io.BytesIO()
        torch.save({'x': torch.zeros(1)}, buffer)
        with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as zf:
            for name in zf.namelist():
                inner = name.split('/', 1)[1]
                if inner != 'data.pkl' and not inner.startswith('data/'):
                    _TEMPLATE[inner] = zf.read(name)
    return dict(_TEMPLATE)


def torch_zip(path, pkl, records=None, prefix='archive'):
    """A torch zip checkpoint with ``pkl`` as its data.pkl.

    Args:
        pkl (bytes): the pickle.
        records (dict[str, bytes]): storage records by key.
    """
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as zf:
        zf.writestr(f'{prefix}/data.pkl', pkl)
        for key, data in (records or {}).items():
            zf.writestr(f'{prefix}/data/{key}', data)
        for name, data in _torch_records().items():
            zf.writestr(f'{prefix}/{name}', data)


LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
LEGACY_PROTOCOL = 1001


def torch_legacy(path, pkl, records=None):
    """A checkpoint in torch's legacy (non-zip) format: magic number,
    protocol version, system info, ``pkl``, the storage keys, and each
    storage as its element count (8 bytes) and its bytes.

    Args:
        records (dict[str, tuple[int, bytes]]): per key, the element count
            written before the bytes, and the bytes.
    """
    records = records or {}
    info = dict(protocol_version=LEGACY_PROTOCOL, little_endian=True,
                type_sizes=dict(short=2, int=4, long=4))
    with open(path, 'wb') as f:
        for value in (LEGACY_MAGIC, LEGACY_PROTOCOL, info):
            f.write(pickle.dumps(value, protocol=2))
        f.write(pkl)
        f.write(pickle.dumps(list(records), protocol=2))
        for count, data in records.values():
            f.write(struct.pack('<q', count) + data)


def paddle_file(path, value, proto=2):
    """A Paddle ``.pdparams``: a pickled dict with a genuine array ``w``
    and ``value`` under ``x``."""
    with open(path, 'wb') as f:
        f.write(program({'w': np_float32_array([1.0, 2.0, 3.0]),
                         'x': value}, proto))


# -- MindSpore ----------------------------------------------------------------

def varint(n):
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def pb_field(number, payload):
    """A length-delimited protocol-buffers field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def ms_entry(tag, dims, kind, content, packed=False):
    """One ``Checkpoint.value``: name, then a tensor (dims, type, bytes)."""
    if packed:
        dims_bytes = pb_field(1, b''.join(varint(d) for d in dims))
    else:
        dims_bytes = b''.join(varint(1 << 3) + varint(d) for d in dims)
    body = dims_bytes + pb_field(2, kind.encode()) + pb_field(3, content)
    return pb_field(1, pb_field(1, tag.encode()) + pb_field(2, body))


def ms_float(tag, values):
    return ms_entry(tag, [len(values)], 'Float32',
                    struct.pack(f'<{len(values)}f', *values))


# -- the corpus ---------------------------------------------------------------

class Case:
    """One crafted file and what ``safe_load`` must do with it.

    Attributes:
        name (str): ``<container>-<what>``.
        ext (str): the file's extension.
        make (callable): ``make(path, marker)`` writes the file.
        expect (str): ``'unsafe'`` (UnsafeCheckpointError, "refused to
            load"), ``'refused'`` (CheckpointLoadError of any kind),
            ``'either'`` (returns, or CheckpointLoadError).
        deepcopy (bool): the probe deep-copies what loads, and takes its
            ``repr`` (which reads every array's data).
        fragment (str): a word the refusal must contain.
        cpu_limit (float): CPU seconds the load may take.
    """

    def __init__(self, name, ext, make, expect, deepcopy=False,
                 fragment=None, cpu_limit=None, timeout=60):
        self.name, self.ext, self.make, self.expect = name, ext, make, expect
        self.deepcopy, self.fragment = deepcopy, fragment
        self.cpu_limit, self.timeout = cpu_limit, timeout

    def __repr__(self):
        return f'Case({self.name})'


def _touch(marker):
    return f'touch {marker}'


# Code-execution payloads: each pushes one object; unpickled by the plain
# pickle rules (with EXTENSIONS registered), each creates ``marker``.
def _global_reduce(m):
    return call(G('os', 'system'), _touch(m))


def _global_open(m):
    return call(G('builtins', 'open'), m, 'w')


def _stack_global(m):
    return Op(enc('os') + enc('system') + b'\x93' + enc((_touch(m), )) +
              b'R')


def _inst(m):
    return Op(b'(' + enc(_touch(m)) + b'ios\nsystem\n')


def _obj(m):
    return Op(b'(' + enc(G('os', 'system')) + enc(_touch(m)) + b'o')


def _newobj(m):
    return Op(enc(G('subprocess', 'Popen')) + enc((['touch', m], )) +
              b'\x81')


def _newobj_ex(m):
    return Op(enc(G('subprocess', 'Popen')) + enc((['touch', m], )) +
              enc({}) + b'\x92')


def _ext(opcode, code):
    def payload(m):
        return Op(opcode + code + enc((_touch(m), )) + b'R')
    return payload


def _namespace():
    return call(G('argparse', 'Namespace'))


def _build_setstate(m):
    """An allowed type (argparse.Namespace) given an instance attribute
    ``__setstate__`` by one BUILD, which a second BUILD then calls."""
    inst = build(_namespace(), {'__setstate__': G('os', 'system')})
    return build(inst, _touch(m))


def _build_setstate_allowed(m):
    """The same with an allowed callable as ``__setstate__``."""
    inst = build(_namespace(), {'__setstate__': G('_codecs', 'encode')})
    return build(inst, _touch(m))


def _persid_text(m):
    return Op(b'Pos.system\n')


def _binpersid_code(m):
    return Op(enc(('storage', G('os', 'system'), _touch(m), 'cpu', 1)) +
              b'Q')


def _binpersid_module(m):
    return Op(enc(('module', 'os', 'system', _touch(m))) + b'Q')


def _binpersid_int(m):
    return Op(enc(7) + b'Q')


def _binpersid_traversal(m):
    return tensor(storage('../../../../../../etc/passwd', 4), 0, (4, ), (1, ))


def _binpersid_bad_key(m):
    return tensor(Op(enc(('storage', G('torch', 'FloatStorage'), 10**30,
                          'cpu', 4)) + b'Q'), 0, (4, ), (1, ))


def _binpersid_negative_numel(m):
    return tensor(storage('0', -4), 0, (4, ), (1, ))


def _reduce_getattr(m):
    return call(G('builtins', 'getattr'),
                G('mmengine.logging.history_buffer', 'HistoryBuffer'),
                '__init__')


def _reduce_rebuild_forged(m):
    return call(G('torch._utils', '_rebuild_tensor_v2'), 'a', 'b', 'c', 'd',
                False, None)


def _reduce_reconstruct_forged(m):
    return call(G(NUMPY, '_reconstruct'), G('argparse', 'Namespace'),
                (0, ), b'b')


def _reduce_scalar_short(m):
    return call(G(NUMPY, 'scalar'), np_numeric_dtype('f8'), b'1')


#: (payload, expectation): 'unsafe' where the payload names code.
CODE_PAYLOADS = {
    'global_reduce': (_global_reduce, 'unsafe'),
    'global_open': (_global_open, 'unsafe'),
    'stack_global': (_stack_global, 'unsafe'),
    'inst': (_inst, 'unsafe'),
    'obj': (_obj, 'unsafe'),
    'newobj': (_newobj, 'unsafe'),
    'newobj_ex': (_newobj_ex, 'unsafe'),
    'ext1': (_ext(b'\x82', struct.pack('<B', EXTENSIONS[0][2])), 'unsafe'),
    'ext2': (_ext(b'\x83', struct.pack('<H', EXTENSIONS[1][2])), 'unsafe'),
    'ext4': (_ext(b'\x84', struct.pack('<i', EXTENSIONS[2][2])), 'unsafe'),
    'build_setstate': (_build_setstate, 'unsafe'),
    'build_setstate_allowed': (_build_setstate_allowed, 'unsafe'),
    'persid_text': (_persid_text, 'refused'),
    'binpersid_code': (_binpersid_code, 'unsafe'),
    'binpersid_module': (_binpersid_module, 'refused'),
    'binpersid_int': (_binpersid_int, 'refused'),
    'binpersid_traversal': (_binpersid_traversal, 'refused'),
    'binpersid_bad_key': (_binpersid_bad_key, 'refused'),
    # torch reads the record's own bytes (a 4-element tensor): the count
    # the id claims allocates nothing, so loading is as good as refusing.
    'binpersid_negative_numel': (_binpersid_negative_numel, 'either'),
    'reduce_getattr': (_reduce_getattr, 'unsafe'),
    'reduce_rebuild_forged': (_reduce_rebuild_forged, 'refused'),
    'reduce_reconstruct_forged': (_reduce_reconstruct_forged, 'refused'),
    'reduce_scalar_short': (_reduce_scalar_short, 'refused'),
}
#: Payloads that run code under the plain pickle rules (the control).
LIVE_PAYLOADS = ('global_reduce', 'global_open', 'stack_global', 'inst',
                 'obj', 'ext1', 'ext2', 'ext4', 'build_setstate')


def payload_pickle(name, marker, proto=4):
    """A bare pickle of a code-execution payload (for the control)."""
    return program(CODE_PAYLOADS[name][0](marker), proto)


def _in_zip(payload):
    def make(path, marker):
        weight, raw = float_tensor([1.0, 2.0, 3.0, 4.0])
        pkl = program({'state_dict': {'w': weight}, 'x': payload(marker)},
                      proto=4)
        torch_zip(path, pkl, {'0': raw})
    return make


def _in_legacy(payload):
    def make(path, marker):
        torch_legacy(path, program({'epoch': 1, 'x': payload(marker)}, 4))
    return make


def _in_paddle(payload):
    def make(path, marker):
        paddle_file(path, payload(marker), proto=4)
    return make


def _zip_value(value_fn, records=None, proto=4):
    """A zip checkpoint of ``{'x': value_fn()}`` (and storage records)."""
    def make(path, marker):
        torch_zip(path, program({'x': value_fn()}, proto), records)
    return make


# -- forged numpy dtypes ------------------------------------------------------
# Flags numpy computes for an object dtype are 63; without NPY_LIST_PICKLE
# (2) numpy accepts raw bytes as the object pointers.
_OBJECT_FLAGS_NO_LIST_PICKLE = 61


def _object_dtype():
    return np_dtype('O8')


def _forged_dtype_v8():
    return np_array((2, ), np_dtype('V8', (3, '|', None, None, None, 8, 1,
                                           0)), bytes(16))


def _forged_dtype_object():
    return np_array((2, ), _object_dtype(), [1, 2])


def _forged_dtype_object_raw():
    dtype = np_dtype('O8', (3, '|', None, None, None, -1, -1,
                            _OBJECT_FLAGS_NO_LIST_PICKLE))
    return np_array((2, ), dtype, b'\x41' * 16)


def _forged_dtype_fields(base):
    def value():
        state = (3, '|', None, ('a', ), {'a': (_object_dtype(), 0)}, 8, 1,
                 25)
        return np_array((2, ), np_dtype(base, state), b'\x41' * 16)
    return value


def _forged_f8(state):
    """A float64 dtype (an allowed type) given a forged state by BUILD."""
    def value():
        return np_array((2, ), np_dtype('f8', state), b'\x41' * 16)
    return value


#: Forged states for an allowed dtype type: an object flag set over raw
#: bytes, a numeric field, a subarray whose itemsize lies (numpy then
#: reads past the array's buffer).
FORGED_F8_STATES = {
    'dtype_f8_object_flags': (3, '<', None, None, None, -1, -1,
                              _OBJECT_FLAGS_NO_LIST_PICKLE),
    'dtype_f8_numeric_field': (3, '|', None, ('a', ),
                               {'a': (np_numeric_dtype('f8'), 0)}, 8, 1, 0),
    'dtype_f8_subarray': (3, '|', (np_numeric_dtype('f8'), (2, )), None,
                          None, 8, 1, 0),
}


# -- memory amplifiers --------------------------------------------------------
def _numpy_object_bomb():
    return np_array((150_000_000, ), _object_dtype(), [1])


def _numpy_ndarray_bomb():
    return call(G('numpy', 'ndarray'), (150_000_000, ), _object_dtype())


def _numpy_ndarray_bomb_f8():
    return call(G('numpy', 'ndarray'), (150_000_000, ),
                np_numeric_dtype('f8'))


def _bytearray_bomb():
    return call(G('builtins', 'bytearray'), 10**9)


DEFLATE_BOMB_BYTES = 10**9


def _deflate_bomb(path, marker):
    """A zip whose DEFLATE-compressed data.pkl (about 1 MB on disk)
    inflates to a 1 GB pickle of one BINBYTES8 string."""
    info = zipfile.ZipInfo('archive/data.pkl')
    info.compress_type = zipfile.ZIP_DEFLATED
    chunk = bytes(1 << 22)
    with zipfile.ZipFile(path, 'w') as zf:
        with zf.open(info, 'w', force_zip64=True) as f:
            f.write(b'\x80\x04\x8e' + struct.pack('<Q', DEFLATE_BOMB_BYTES))
            left = DEFLATE_BOMB_BYTES
            while left:
                f.write(chunk[:min(left, len(chunk))])
                left -= min(left, len(chunk))
            f.write(b'.')
        for name, data in _torch_records().items():
            zf.writestr(f'archive/{name}', data)


def _storage_claim(numel):
    def make(path, marker):
        op = tensor(storage('0', numel), 0, (4, ), (1, ))
        torch_zip(path, program({'x': op}, 2), {'0': bytes(16)})
    return make


def _storage_claim_legacy(numel, count):
    def make(path, marker):
        op = tensor(storage('0', numel, legacy=True), 0, (4, ), (1, ))
        torch_legacy(path, program({'x': op}, 2), {'0': (count, bytes(16))})
    return make


def _zero_stride(path, marker):
    import torch
    torch.save({'x': torch.zeros(1).expand(10**8)}, path)


def _shared_views(path, marker):
    import torch
    base = torch.zeros(2**20)  # 4 MiB
    torch.save({f'v{i}': base[i:] for i in range(1000)}, path)


# -- absurd shapes ------------------------------------------------------------
def _view(offset, size, stride, numel=4):
    def make(path, marker):
        op = tensor(storage('0', numel), offset, size, stride)
        torch_zip(path, program({'x': op}, 2), {'0': bytes(4 * numel)})
    return make


def _short_record(path, marker):
    op = tensor(storage('0', 4), 0, (4, ), (1, ))
    torch_zip(path, program({'x': op}, 2), {'0': bytes(2)})


def _numpy_dims65():
    return np_array((1, ) * 65, np_numeric_dtype('f4'), bytes(4))


def _numpy_short_data():
    return np_array((1000, ), np_numeric_dtype('f4'), bytes(4))


# -- recursion ----------------------------------------------------------------
DEPTH = 100_000


def _nested_lists():
    return Op(b']' * DEPTH + b'a' * (DEPTH - 1))


def _nested_tuples():
    return Op(b')' + b'\x85' * DEPTH)


def _nested_dicts():
    return Op((b'}' + enc('k')) * DEPTH + b'}' + b's' * DEPTH)


def _nested_ordered_dicts():
    level = enc(call(G('collections', 'OrderedDict'))) + enc('k')
    return Op(level * DEPTH + enc(call(G('collections', 'OrderedDict'))) +
              b's' * DEPTH)


def _self_list():
    return Op(b']r\x00\x00\x00\x00j\x00\x00\x00\x00a')


def _self_dict():
    return Op(b'}r\x00\x00\x00\x00' + enc('self') + b'j\x00\x00\x00\x00s')


def _self_ordered_dict():
    return Op(enc(call(G('collections', 'OrderedDict'))) +
              b'r\x00\x00\x00\x00' + enc('self') + b'j\x00\x00\x00\x00s')


RECURSION = {'nested_lists': _nested_lists, 'nested_tuples': _nested_tuples,
             'nested_dicts': _nested_dicts,
             'nested_ordered_dicts': _nested_ordered_dicts,
             'self_list': _self_list, 'self_dict': _self_dict,
             'self_ordered_dict': _self_ordered_dict}


def _recursion_zip(value_fn):
    return _zip_value(value_fn, proto=2)


def _recursion_paddle(value_fn):
    def make(path, marker):
        paddle_file(path, value_fn(), proto=2)
    return make


def _recursion_legacy(value_fn):
    def make(path, marker):
        torch_legacy(path, program({'x': value_fn()}, 2))
    return make


# -- MindSpore ----------------------------------------------------------------
def _raw(data_fn):
    """A case whose file is the bytes ``data_fn()`` gives."""
    def make(path, marker):
        with open(path, 'wb') as f:
            f.write(data_fn())
    return make


def _ms_duplicate():
    return (ms_float('a', [1.0, 2.0]) + ms_float('b', [3.0]) +
            ms_float('a', [4.0, 5.0]))


def _ms_duplicate_other_shape():
    return (ms_float('a', [1.0, 2.0]) + ms_float('b', [3.0]) +
            ms_float('a', [4.0]))


def _ms_dims65():
    return ms_float('w', [1.0]) + ms_entry('x', [1] * 65, 'Float32',
                                           bytes(4))


def _ms_dims_zero_huge():
    return ms_float('w', [1.0]) + ms_entry('x', [0, 2**62], 'Float32', b'')


def _ms_dims_overflow():
    return ms_float('w', [1.0]) + ms_entry('x', [2**32, 2**32, 4],
                                           'Float32', bytes(16))


def _ms_dims_overflow_packed():
    return ms_float('w', [1.0]) + ms_entry(
        'x', [2**62, 2**62, 2**62, 0], 'Float32', b'', packed=True)


def _ms_huge_length():
    return ms_float('w', [1.0]) + b'\x0a' + varint(2**62) + \
        pb_field(1, b'x') + b'\x12\x04abcd'


def _ms_huge_content_length():
    body = varint(1 << 3) + varint(4) + pb_field(2, b'Float32') + \
        b'\x1a' + varint(2**40) + bytes(16)
    inner = pb_field(1, b'x') + b'\x12' + varint(len(body)) + body
    return ms_float('w', [1.0]) + b'\x0a' + varint(len(inner)) + inner


def _ms_truncated_varint():
    return ms_float('w', [1.0]) + b'\x0a\xff\xff'


def _ms_long_varint():
    return ms_float('w', [1.0]) + b'\x0a' + b'\xff' * 11 + b'\x01'


def _ms_truncated_packed_dims():
    body = pb_field(1, b'\x04\xff') + pb_field(2, b'Float32') + \
        pb_field(3, bytes(16))
    return ms_float('w', [1.0]) + pb_field(1, pb_field(1, b'x') +
                                           pb_field(2, body))


# -- Paddle -------------------------------------------------------------------
def _pd_memo_bomb(path, marker):
    """Nine bytes: PROTO 2, EMPTY_DICT, LONG_BINPUT 2**26, STOP."""
    with open(path, 'wb') as f:
        f.write(b'\x80\x02}r' + struct.pack('<I', 2**26) + b'.')


SHARED_BYTES = 2**20
SHARED_REFERENCES = 3000


def _pd_shared_bytes(path, marker):
    """One memoised 1 MiB string, the data of thousands of arrays."""
    parts = [b'\x80\x03}(', enc('raw'), enc(bytes(SHARED_BYTES)), b'q\x01',
             enc('dtype'), enc(np_numeric_dtype('f4')), b'q\x02',
             enc('rec'), enc(G(NUMPY, '_reconstruct')), b'q\x03',
             enc('nd'), enc(G('numpy', 'ndarray')), b'q\x04']
    empty = Op(b'h\x03' + enc((memo_get(4), (0, ), b'b')) + b'R')
    state = (1, (SHARED_BYTES // 4, ), memo_get(2), False, memo_get(1))
    for i in range(SHARED_REFERENCES):
        parts += [enc(f'a{i}'), enc(build(empty, state))]
    parts.append(b'u.')
    with open(path, 'wb') as f:
        f.write(b''.join(parts))


HUGE_DIM_BYTES = 20_000


def _pd_huge_dims(path, marker):
    """An array whose 64 dimensions are each a 20 kB integer."""
    huge = (1 << (8 * HUGE_DIM_BYTES - 2)) - 12345
    shape = Op(b'(' + bytes(memo_get(9)) * 64 + b't')
    array = np_array(shape, np_numeric_dtype('f4'), b'')
    with open(path, 'wb') as f:
        f.write(b'\x80\x02}(' + enc('big') + enc(huge) + b'q\x09' +
                enc('w') + enc(array) + b'u.')


def _pd_odict(state_fn):
    def make(path, marker):
        odict = call(G('collections', 'OrderedDict'))
        filled = Op(enc(odict) + b'(' + enc('w') +
                    enc(np_float32_array([1.0, 2.0])) + b'u')
        with open(path, 'wb') as f:
            f.write(program(build(filled, state_fn()), 2))
    return make


def _pd_top(payload):
    """A pickle whose top object is ``payload`` (PROTO 4)."""
    return b'\x80\x04' + payload + b'.'


def _pd_in_dict(payload):
    return b'\x80\x04}(' + enc('w') + enc(np_float32_array([1.0])) + \
        enc('x') + payload + b'u.'


def _build_cases():
    cases = []
    for name, (payload, expect) in CODE_PAYLOADS.items():
        torch_only = name.startswith('binpersid_') and name not in (
            'binpersid_code', 'binpersid_module', 'binpersid_int')
        cases.append(Case(f'zip-{name}', '.pth', _in_zip(payload), expect,
                          deepcopy=True))
        if not torch_only:
            cases.append(Case(f'legacy-{name}', '.pth', _in_legacy(payload),
                              expect, deepcopy=True))
        cases.append(Case(f'paddle-{name}', '.pdparams',
                          _in_paddle(payload), expect, deepcopy=True))
    for name, value in [('dtype_v8', _forged_dtype_v8),
                        ('dtype_object', _forged_dtype_object),
                        ('dtype_object_raw', _forged_dtype_object_raw),
                        ('dtype_f8_object_field', _forged_dtype_fields('f8')),
                        ('dtype_v8_object_field', _forged_dtype_fields('V8'))
                        ] + [(name, _forged_f8(state))
                             for name, state in FORGED_F8_STATES.items()]:
        cases.append(Case(f'zip-{name}', '.pth', _zip_value(value),
                          'refused', deepcopy=True))
        cases.append(Case(f'paddle-{name}', '.pdparams',
                          _recursion_paddle(value), 'refused',
                          deepcopy=True))
    cases += [
        Case('zip-numpy_object_bomb', '.pth', _zip_value(_numpy_object_bomb),
             'refused', deepcopy=True),
        Case('zip-numpy_ndarray_bomb', '.pth',
             _zip_value(_numpy_ndarray_bomb), 'refused'),
        Case('zip-numpy_ndarray_bomb_f8', '.pth',
             _zip_value(_numpy_ndarray_bomb_f8), 'refused'),
        Case('zip-bytearray_bomb', '.pth', _zip_value(_bytearray_bomb),
             'refused'),
        Case('legacy-bytearray_bomb', '.pth', _recursion_legacy(
            _bytearray_bomb), 'refused'),
        Case('zip-deflate_bomb', '.pth', _deflate_bomb, 'refused',
             timeout=120),
        Case('zip-storage_claim_1gib', '.pth', _storage_claim(2**28),
             'refused'),
        Case('zip-storage_claim_2e60', '.pth', _storage_claim(2**60),
             'refused'),
        Case('legacy-storage_claim_1gib', '.pth',
             _storage_claim_legacy(2**28, 2**28), 'refused'),
        Case('legacy-storage_claim_2e60', '.pth',
             _storage_claim_legacy(2**60, 4), 'refused'),
        Case('zip-zero_stride', '.pth', _zero_stride, 'either',
             deepcopy=True),
        Case('zip-shared_views', '.pth', _shared_views, 'either'),
        # absurd shapes
        Case('zip-negative_offset', '.pth', _view(-1, (4, ), (1, )),
             'refused', deepcopy=True),
        Case('zip-size_beyond_storage', '.pth', _view(0, (10**6, ), (1, )),
             'refused', deepcopy=True),
        Case('zip-offset_beyond_storage', '.pth', _view(2**40, (1, ), (1, )),
             'refused', deepcopy=True),
        Case('zip-stride_beyond_storage', '.pth',
             _view(0, (2, ), (2**40, )), 'refused', deepcopy=True),
        Case('zip-negative_size', '.pth', _view(0, (-1, ), (1, )),
             'refused', deepcopy=True),
        Case('zip-negative_stride', '.pth', _view(3, (4, ), (-1, )),
             'refused', deepcopy=True),
        Case('zip-dims65', '.pth', _view(0, (1, ) * 65, (1, ) * 65),
             'refused', deepcopy=True),
        Case('zip-numel_overflow', '.pth',
             _view(0, (2**40, 2**40), (0, 0)), 'refused', deepcopy=True),
        Case('zip-short_record', '.pth', _short_record, 'refused',
             deepcopy=True),
        Case('zip-numpy_dims65', '.pth', _zip_value(_numpy_dims65),
             'refused'),
        Case('zip-numpy_short_data', '.pth', _zip_value(_numpy_short_data),
             'refused'),
    ]
    for name, value in RECURSION.items():
        cases.append(Case(f'zip-{name}', '.pth', _recursion_zip(value),
                          'either'))
        cases.append(Case(f'paddle-{name}', '.pdparams',
                          _recursion_paddle(value), 'either'))
    cases.append(Case('legacy-nested_lists', '.pth',
                      _recursion_legacy(_nested_lists), 'either'))
    cases += [
        Case('mindspore-duplicate_nonadjacent', '.ckpt', _raw(_ms_duplicate),
             'refused', fragment='duplicate'),
        Case('mindspore-duplicate_other_shape', '.ckpt',
             _raw(_ms_duplicate_other_shape), 'refused',
             fragment='duplicate'),
        Case('mindspore-dims65', '.ckpt', _raw(_ms_dims65), 'refused'),
        Case('mindspore-dims_zero_huge', '.ckpt', _raw(_ms_dims_zero_huge),
             'refused'),
        Case('mindspore-dims_overflow', '.ckpt', _raw(_ms_dims_overflow),
             'refused'),
        Case('mindspore-dims_overflow_packed', '.ckpt',
             _raw(_ms_dims_overflow_packed), 'refused'),
        Case('mindspore-huge_length', '.ckpt', _raw(_ms_huge_length),
             'refused'),
        Case('mindspore-huge_content_length', '.ckpt',
             _raw(_ms_huge_content_length), 'refused'),
        Case('mindspore-truncated_varint', '.ckpt',
             _raw(_ms_truncated_varint), 'refused'),
        Case('mindspore-long_varint', '.ckpt', _raw(_ms_long_varint),
             'refused'),
        Case('mindspore-truncated_packed_dims', '.ckpt',
             _raw(_ms_truncated_packed_dims), 'refused'),
        Case('paddle-memo_bomb', '.pdparams', _pd_memo_bomb, 'refused'),
        Case('paddle-shared_bytes', '.pdparams', _pd_shared_bytes,
             'refused', timeout=120),
        Case('paddle-huge_dims', '.pdparams', _pd_huge_dims, 'refused',
             cpu_limit=1.0),
        Case('paddle-odict_items', '.pdparams',
             _pd_odict(lambda: {'items': G('collections', 'OrderedDict')}),
             'unsafe'),
        Case('paddle-odict_items_update', '.pdparams',
             _pd_odict(lambda: {'items': G('numpy', 'dtype'),
                                'update': G('numpy', 'dtype')}), 'unsafe'),
        Case('paddle-odict_slots', '.pdparams',
             _pd_odict(lambda: (None, {'items': G('collections',
                                                  'OrderedDict')})),
             'unsafe'),
        Case('paddle-newobj_allowed', '.pdparams', _raw(
            lambda: _pd_in_dict(enc(G('collections', 'OrderedDict')) +
                                enc(()) + b'\x81')), 'unsafe'),
        Case('paddle-newobj_ndarray', '.pdparams', _raw(
            lambda: _pd_in_dict(enc(G('numpy', 'ndarray')) + enc(((2, ), )) +
                                b'\x81')), 'unsafe'),
        Case('paddle-newobj_ex_allowed', '.pdparams', _raw(
            lambda: _pd_in_dict(enc(G('collections', 'OrderedDict')) +
                                enc(()) + enc({}) + b'\x92')), 'unsafe'),
        Case('paddle-ext1_unregistered', '.pdparams', _raw(
            lambda: _pd_in_dict(b'\x82\x01')), 'unsafe'),
        Case('paddle-ext2_unregistered', '.pdparams', _raw(
            lambda: _pd_in_dict(b'\x83\x01\x01')), 'unsafe'),
        Case('paddle-ext4_unregistered', '.pdparams', _raw(
            lambda: _pd_in_dict(b'\x84\x01\x01\x01\x01')), 'unsafe'),
        Case('paddle-top_ordered_dict_newobj', '.pdparams', _raw(
            lambda: _pd_top(b'ccollections\nOrderedDict\n)\x81')), 'unsafe'),
    ]
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), 'duplicate case names'
    return cases


CASES = _build_cases()
CASE_BY_NAME = {c.name: c for c in CASES}


def make_case(name, folder):
    """Write case ``name`` into ``folder``.

    Returns:
        tuple[str, str]: the file, and the marker its payload would create.
    """
    case = CASE_BY_NAME[name]
    path = osp.join(folder, f'{name}{case.ext}')
    marker = osp.join(folder, f'pwned-{name}')
    case.make(path, marker)
    return path, marker


# -- the probe ----------------------------------------------------------------

def run_probe(jobs, warmups, timeout=900, env=None):
    """Load files with ``safe_load`` in forked children of one subprocess.

    Args:
        jobs (list[dict]): ``name``, ``path``, ``markers`` (files that must
            not appear), ``deepcopy``, ``timeout`` (seconds).
        warmups (list[str]): genuine files the subprocess loads first (its
            baseline), one per reader.

    Returns:
        dict[str, dict]: per job name, what happened (see
        ``untrusted_probe.py``), plus ``'__process__'``: the subprocess's
        return code and the tail of its output.
    """
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        spec = osp.join(tmp, 'spec.json')
        out = osp.join(tmp, 'out.json')
        with open(spec, 'w') as f:
            json.dump(dict(jobs=jobs, warmups=warmups,
                           extensions=EXTENSIONS), f)
        run_env = dict(os.environ if env is None else env)
        run_env.update(OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
        proc = subprocess.run([sys.executable, PROBE, spec, out], cwd=REPO,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              timeout=timeout, env=run_env)
        results = {}
        if osp.exists(out):
            with open(out) as f:
                results = json.load(f)
    results['__process__'] = dict(returncode=proc.returncode,
                                  output=proc.stdout[-3000:])
    return results


def describe(result):
    """A one-line account of a probe result, for assertion messages."""
    if result is None:
        return 'no result (the probe died before this case)'
    outcome = result.get('outcome')
    text = outcome
    if outcome == 'signal':
        text = f'crashed (signal {result["signal"]})'
    elif outcome == 'timeout':
        text = f'timed out after {result.get("wall_s")} s'
    elif outcome == 'escaped':
        text = f'{result["error"]} escaped: {result["message"][:200]!r}'
    elif outcome == 'refused':
        kind = 'UnsafeCheckpointError' if result['unsafe'] else \
            result['error']
        text = f'{kind}: {result["message"][:200]!r}'
    elif outcome == 'returned':
        text = f'returned {result.get("type")}'
    if 'growth' in result:
        text += f'; peak +{result["growth"] / 2**20:.1f} MiB'
    if 'cpu_s' in result:
        text += f', {result["cpu_s"]:.2f} s CPU'
    if result.get('deepcopy') not in (None, 'ok'):
        text += f'; deepcopy: {result["deepcopy"]}'
    if result.get('markers'):
        text += f'; PAYLOAD RAN: {result["markers"]}'
    return text


# -- genuine files to build or mutate -----------------------------------------

def mmengine_resume_checkpoint():
    """What mmengine's runner saves for resuming (weights, optimizer,
    ``meta``, ``message_hub`` with HistoryBuffers, numpy arrays and numpy
    scalars), built with mmengine's own MessageHub and HistoryBuffer."""
    import numpy as np
    import torch
    from mmengine.logging import HistoryBuffer, MessageHub
    gen = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    for p in model.parameters():
        with torch.no_grad():
            p.copy_(torch.rand(p.shape, generator=gen))
    optim = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.rand(5, 3, generator=gen)).sum().backward()
    optim.step()
    hub = MessageHub(name=f'untrusted-resume-{os.getpid()}-{id(model)}')
    for value in (1.5, 0.5, 0.25):
        hub.update_scalar('train/loss', value)
    hub.update_scalar('train/lr', np.float64(0.01))
    hub.update_info('iter', 10)
    hub.update_info('last_metric', np.float64(0.75))
    hub.update_info('confusion', np.arange(6.0).reshape(2, 3))
    hub.update_info('steps', np.arange(4, dtype=np.int64))
    return {
        'meta': {'epoch': 1, 'iter': 10, 'seed': 0,
                 'experiment_name': 'demo', 'mmengine_version': '0.10.7',
                 'dataset_meta': {'classes': ('a', 'b')},
                 'best_score': np.float64(0.5)},
        'state_dict': model.state_dict(),
        'optimizer': optim.state_dict(),
        'message_hub': hub.state_dict(),
        'extra_buffer': HistoryBuffer([1.0, 2.0, 3.5], [1, 1, 2],
                                      max_length=10),
        'param_schedulers': [{'last_epoch': 10, 'base_values': [0.1]}],
    }


# -- mutations for the fuzz ---------------------------------------------------

def _pickle_offsets(data, base=0):
    """The positions of a pickle's opcodes (and their first argument
    bytes), shifted by ``base``."""
    import pickletools
    offsets = []
    try:
        for _, _, pos in pickletools.genops(data):
            offsets += [base + pos, base + pos + 1]
    except Exception:  # noqa: BLE001  a pickle with trailing data
        pass
    return offsets


def _zip_offsets(data):
    """Local headers, data.pkl's opcodes and the central directory."""
    offsets = []
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            offsets += range(info.header_offset, info.header_offset + 30)
            if info.filename.endswith('/data.pkl'):
                start = info.header_offset + 30 + \
                    struct.unpack('<H', data[info.header_offset + 26:
                                             info.header_offset + 28])[0] + \
                    struct.unpack('<H', data[info.header_offset + 28:
                                             info.header_offset + 30])[0]
                offsets += _pickle_offsets(
                    data[start:start + info.file_size], start)
        end = data.rfind(b'PK\x05\x06')
        first = min((i.header_offset for i in zf.infolist()), default=0)
        directory = data.find(b'PK\x01\x02', first)
        if directory >= 0:
            offsets += range(directory, len(data))
        elif end >= 0:
            offsets += range(end, len(data))
    return offsets


def _legacy_offsets(data):
    """The pickles at the start of a legacy file, up to its storages."""
    stream = io.BytesIO(data)
    offsets = []
    for _ in range(5):  # magic, protocol, info, object, storage keys
        start = stream.tell()
        try:
            pickle.load(stream) if _ != 3 else _skip_pickle(stream)
        except Exception:  # noqa: BLE001
            break
        offsets += _pickle_offsets(data[start:stream.tell()], start)
    offsets += range(stream.tell(), min(len(data), stream.tell() + 64))
    return offsets


def _skip_pickle(stream):
    import pickletools
    for op, _, _ in pickletools.genops(stream):
        if op.name == 'STOP':
            return



def _read_varint(data, pos):
    """The protocol-buffers varint at ``data[pos]`` and the position after
    it (IndexError where the data ends first)."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _mindspore_offsets(data, base=0, depth=0):
    """The keys and lengths of a protocol-buffers message (and of the
    messages it nests), not the tensors' bytes."""
    offsets, pos = [], 0
    while pos < len(data):
        start = pos
        try:
            key, pos = _read_varint(data, pos)
            wire = key & 7
            if wire == 0:
                while data[pos] >= 0x80:
                    pos += 1
                pos += 1
                offsets += range(base + start, base + pos)
                continue
            if wire != 2:
                break
            size, pos = _read_varint(data, pos)
        except IndexError:
            break
        offsets += range(base + start, base + pos)
        if depth < 2 and (key >> 3) in (1, 2):  # entries, their tensors
            offsets += _mindspore_offsets(data[pos:pos + size], base + pos,
                                          depth + 1)
        pos += size
    return offsets


def structural_offsets(data, kind):
    """Byte positions where a mutation reaches the format's structure."""
    finder = {'zip': _zip_offsets, 'legacy': _legacy_offsets,
              'pickle': _pickle_offsets,
              'mindspore': _mindspore_offsets}[kind]
    offsets = sorted(set(o for o in finder(data) if 0 <= o < len(data)))
    return offsets or list(range(min(len(data), 256)))


def rezip(data, pkl):
    """A torch zip with its data.pkl replaced (its CRC right)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, \
            zipfile.ZipFile(out, 'w', zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            content = pkl if info.filename.endswith('/data.pkl') else \
                src.read(info)
            dst.writestr(info.filename, content)
    return out.getvalue()


def zip_pickle(data):
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        name = next(n for n in zf.namelist() if n.endswith('/data.pkl'))
        return zf.read(name)


def _mutate(data, offsets, rng, counts, tag):
    """``(label, bytes)`` mutants of ``data`` at ``offsets`` (and
    anywhere, a fifth of the time)."""
    def where():
        if rng.random() < 0.2 or not offsets:
            return rng.randrange(len(data))
        return rng.choice(offsets)

    cuts = sorted(set([0, 1, 2, len(data) - 1, len(data) // 2] +
                      [rng.choice(offsets) for _ in range(counts['truncate']
                                                          // 2)] +
                      [rng.randrange(len(data))
                       for _ in range(counts['truncate'] // 2)]))
    for cut in cuts:
        yield f'{tag}truncate@{cut}', data[:cut]
    for _ in range(counts['flip']):
        pos, bit = where(), rng.randrange(8)
        mutant = bytearray(data)
        mutant[pos] ^= 1 << bit
        yield f'{tag}flip@{pos}.{bit}', bytes(mutant)
    for _ in range(counts['insert']):
        pos = where()
        extra = bytes(rng.randrange(256) for _ in range(rng.choice((1, 1, 4,
                                                                    9))))
        yield f'{tag}insert@{pos}+{extra.hex()}', \
            data[:pos] + extra + data[pos:]
    for _ in range(counts['delete']):
        pos, length = where(), rng.choice((1, 1, 2, 8))
        yield f'{tag}delete@{pos}-{length}', data[:pos] + data[pos + length:]


def mutants(data, kind, seed, counts):
    """Deterministic mutants of a genuine file.

    Args:
        data (bytes): the file.
        kind (str): ``zip``, ``legacy``, ``pickle`` or ``mindspore``.
        seed (int): the random seed.
        counts (dict): ``truncate``, ``flip``, ``insert``, ``delete``.

    Yields:
        tuple[str, bytes]: a label naming the mutation, and the mutant.
        For a zip, mutants of the container come first, then mutants of
        its data.pkl re-zipped (``pkl:`` labels) with a valid CRC.
    """
    import random
    rng = random.Random(seed)
    yield from _mutate(data, structural_offsets(data, kind), rng, counts, '')
    if kind == 'zip':
        pkl = zip_pickle(data)
        for label, mutant in _mutate(pkl, structural_offsets(pkl, 'pickle'),
                                     rng, counts, 'pkl:'):
            yield label, rezip(data, mutant)
