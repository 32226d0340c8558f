"""Checkpoints of other frameworks, read without them: MindCV's MindSpore
``.ckpt`` files and Paddle's ``.pdparams`` pickles come back as float
tensors under the framework's own names, through the readers and through
every entry point that reads a checkpoint (``safe_load``,
``read_state_dict``); a crafted pickle is refused before it runs, damaged
files fail in one line, and torch and safetensors files load as before."""
import collections
import functools
import os
import os.path as osp
import pickle
import re
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, CreateFile, RunShell, fixture_params
from untrusted_corpus import pb_field as field
from untrusted_corpus import varint

from mmrep.checkpoints import read_state_dict
from mmrep.checkpoints.readers import (MINDSPORE_DTYPES, PADDLE_GLOBALS,
                                       framework_of,
                                       read_framework_checkpoint)
from mmrep.utils import CheckpointLoadError, UnsafeCheckpointError, safe_load

MINDCV = 'mindcv_*_small_s*.ckpt'
PADDLE = 'paddle_*_small_s*.pdparams'
#: Each framework's reader: the file read as that format, whatever its
#: first bytes say.
READERS = {name: functools.partial(read_framework_checkpoint, framework=name)
           for name in ('mindspore', 'paddle')}
read_mindspore_checkpoint = READERS['mindspore']
read_paddle_checkpoint = READERS['paddle']


def every_fixture(test):
    """Run ``test`` once per MindCV and once per Paddle fixture (ids: the
    file names, which start with ``mindcv_`` or ``paddle_``)."""
    files = [path for pattern in (MINDCV, PADDLE)
             for path in fixture_params(pattern).args[1]]
    return pytest.mark.parametrize('fixture_path', files,
                                   ids=osp.basename)(test)


def framework_of_name(path):
    return 'mindspore' if osp.basename(path).startswith('mindcv_') \
        else 'paddle'


def one_line(error):
    text = str(error.value)
    assert text and '\n' not in text, text
    return text


# -- the fixtures -------------------------------------------------------------

@every_fixture
def test_reader_returns_the_tensors(fixture_path):
    framework = framework_of_name(fixture_path)
    assert framework_of(fixture_path) == framework
    with np.load(fixture_path[:fixture_path.rindex('.')] + '.npz') as npz:
        assert framework in str(npz['framework']).lower()
    state = READERS[framework](fixture_path)
    assert state and all(isinstance(k, str) for k in state)
    assert sum(v.numel() for v in state.values()) > 0
    for name, tensor in state.items():
        assert re.fullmatch(r'[A-Za-z_][\w]*(\.[\w]+)*', name), name
        assert tensor.dtype == torch.float32, (name, tensor.dtype)
        assert torch.isfinite(tensor).all(), name
    if framework == 'mindspore':
        # BatchNorms in MindSpore's names, a variance beside each mean.
        means = [k for k in state if k.endswith('.moving_mean')]
        assert means
        for mean in means:
            var = mean[:-len('mean')] + 'variance'
            assert state[var].shape == state[mean].shape
            assert (state[var] >= 0).all(), var
        assert any(k.endswith('.gamma') for k in state)
        assert any(k.endswith('.beta') for k in state)
        # Each tensor's shape accounts for exactly its stored bytes.
        data = open(fixture_path, 'rb').read()
        for name, tensor in state.items():
            raw = tensor.numpy().tobytes()
            assert len(raw) == tensor.numel() * 4
            assert raw in data, name
    else:
        assert 'StructuredToParameterName@@' not in state
        assert any(k.endswith('.weight') for k in state)
        assert any(k.endswith('.bias') for k in state)
        assert sum(v.numel() * 4 for v in state.values()) <= \
            osp.getsize(fixture_path)


@every_fixture
def test_every_entry_point_sees_the_same_tensors(fixture_path):
    state = READERS[framework_of_name(fixture_path)](fixture_path)
    for other in (safe_load(fixture_path), read_state_dict(fixture_path)):
        assert type(other) is dict and list(other) == list(state)
        for name, tensor in state.items():
            assert torch.equal(other[name], tensor), name


@every_fixture
def test_a_truncated_file_fails_in_one_line(fixture_path, tmp_path):
    data = open(fixture_path, 'rb').read()
    bad = str(tmp_path / osp.basename(fixture_path))
    for cut in (len(data) // 2, len(data) - 3, 0):
        with open(bad, 'wb') as f:
            f.write(data[:cut])
        for read in (READERS[framework_of_name(fixture_path)], safe_load,
                     read_state_dict):
            with pytest.raises(CheckpointLoadError) as err:
                read(bad)
            assert not isinstance(err.value, UnsafeCheckpointError)
            msg = one_line(err)
            assert msg.startswith(f'cannot read checkpoint {bad}: the file '
                                  f'is truncated or corrupt'), msg


def test_the_frameworks_are_never_imported():
    sources = []
    for folder in ('mmrep', 'tests'):
        for root, _, files in os.walk(osp.join(REPO, folder)):
            sources += [osp.join(root, n) for n in files if n.endswith('.py')]
    pattern = re.compile(r'^\s*(import|from)\s+(mindspore|paddle|google\.'
                         r'protobuf)\b', re.M)
    assert [p for p in sources if pattern.search(open(p).read())] == []
    read_mindspore_checkpoint(fixture_params(MINDCV).args[1][0])
    read_paddle_checkpoint(fixture_params(PADDLE).args[1][0])
    assert not {'mindspore', 'paddle'} & set(sys.modules)


# -- crafted Paddle pickles ---------------------------------------------------

class Reduce:
    """Pickles as ``func(*args)``, then ``state`` when given."""

    def __init__(self, func, args, state=None):
        self.reduced = (func, args) if state is None else (func, args, state)

    def __reduce__(self):
        return self.reduced


def write_pickle(path, obj, protocol):
    data = pickle.dumps(obj, protocol=protocol)
    with open(path, 'wb') as f:
        f.write(data)
    return data


@pytest.mark.parametrize('protocol', [2, 4])
@pytest.mark.parametrize('payload', [CreateFile, RunShell],
                         ids=['open', 'os.system'])
def test_a_pickle_that_writes_a_file_is_refused(tmp_path, payload, protocol):
    marker = str(tmp_path / 'pwned')
    path = str(tmp_path / 'evil.pdparams')
    weights = np.ones((2, 3), np.float32)
    data = write_pickle(path, {'w': weights, 'x': payload(marker)}, protocol)
    func = payload(marker).__reduce__()[0]
    evil = f'{func.__module__}.{func.__qualname__}'  # io.open, posix.system
    assert func.__module__.encode() in data and evil not in PADDLE_GLOBALS
    assert framework_of(path) == 'paddle'
    for read in (read_paddle_checkpoint, safe_load, read_state_dict):
        with pytest.raises(UnsafeCheckpointError) as err:
            read(path)
        assert one_line(err) == (
            f'refused to load {path}: the pickle calls {evil}, which a '
            f'Paddle checkpoint never holds (nothing was executed)')
        assert not osp.exists(marker)


def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


@pytest.mark.parametrize('crafted, refused', [
    # allocating a terabyte before any bytes are checked
    (Reduce(_reconstruct(), (np.ndarray, (10**12, ), b'b')), True),
    # an array subclass instead of ndarray
    (Reduce(_reconstruct(), (np.matrix, (0, ), b'b')), True),
    # an object array: its items are arbitrary pickled objects
    (np.array([1, None], dtype=object), True),
    # a record dtype
    (np.zeros(2, dtype=[('a', 'f4')]), True),
    # a state with an object list for bytes
    (Reduce(_reconstruct(), (np.ndarray, (0, ), b'b'),
            (1, (2, ), np.dtype('f4'), False, [1.0, 2.0])), True),
    # looking up an attribute (ndarray.tofile writes files)
    (Reduce(getattr, (np.ones(1), 'tofile')), True),
    # fewer bytes than the shape needs: corrupt, not refused
    (Reduce(_reconstruct(), (np.ndarray, (0, ), b'b'),
            (1, (1000, ), np.dtype('f4'), False, b'1234')), False),
], ids=['huge-shape', 'subclass', 'object-array', 'record-dtype',
        'list-state', 'getattr', 'short-data'])
def test_admitted_globals_refuse_odd_arguments(tmp_path, crafted, refused):
    path = str(tmp_path / 'odd.pdparams')
    write_pickle(path, {'w': np.ones(3, np.float32), 'odd': crafted}, 4)
    with pytest.raises(CheckpointLoadError) as err:
        read_paddle_checkpoint(path)
    msg = one_line(err)
    assert isinstance(err.value, UnsafeCheckpointError) == refused, msg
    assert msg.startswith(f'refused to load {path}: the pickle ' if refused
                          else f'cannot read checkpoint {path}: the file is '
                          f'truncated or corrupt'), msg


@pytest.mark.parametrize('protocol', [2, 3, 4])
def test_paddle_pickles_of_every_protocol_and_dtype(tmp_path, protocol):
    rng = np.random.default_rng(0)
    arrays = {
        'conv.weight': rng.standard_normal((4, 3, 3, 3)).astype('f4'),
        'half': rng.standard_normal(5).astype('f2'),
        'double': rng.standard_normal((2, 2)).astype('f8'),
        'big_endian': rng.standard_normal(3).astype('>f4'),
        'fortran': np.asfortranarray(rng.standard_normal((3, 4)), 'f4'),
        'steps': np.arange(3, dtype=np.int64),
        'mask': np.array([True, False]),
        'empty': np.zeros((0, 3), 'f4'),
        'scalar': np.float32(2.5),
    }
    bf16 = torch.randn(6).to(torch.bfloat16)
    arrays['bf16'] = bf16.view(torch.int16).numpy().view(np.uint16)
    path = str(tmp_path / 'all.pdparams')
    write_pickle(path, collections.OrderedDict(
        list(arrays.items()) + [('StructuredToParameterName@@', {'a': 'b'})]),
        protocol)
    assert framework_of(path) == 'paddle'
    state = read_paddle_checkpoint(path)
    assert list(state) == list(arrays)
    for name, array in arrays.items():
        if name == 'bf16':
            assert state[name].dtype == torch.bfloat16
            assert torch.equal(state[name], bf16)
            continue
        expected = torch.from_numpy(np.array(array, dtype=np.asarray(
            array).dtype.newbyteorder('=')))
        assert state[name].dtype == expected.dtype, name
        assert torch.equal(state[name], expected), name


# -- crafted MindSpore files --------------------------------------------------

def mindspore_entry(tag, dims, kind, content, packed=False):
    dims_bytes = field(1, b''.join(varint(d) for d in dims)) if packed \
        else b''.join(varint(1 << 3) + varint(d) for d in dims)
    tensor = dims_bytes + field(2, kind.encode()) + field(3, content)
    return field(1, field(1, tag.encode()) + field(2, tensor))


def test_mindspore_types_scalars_parts_and_crc(tmp_path):
    import binascii
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((4, 3)).astype('<f4')
    half = rng.standard_normal(5).astype('<f2')
    bf16 = torch.randn(4).to(torch.bfloat16)
    data = b''.join([
        mindspore_entry('w', [4, 3], 'Float32', weight.tobytes()[:20]),
        mindspore_entry('w', [4, 3], 'Float32', weight.tobytes()[20:]),
        mindspore_entry('half', [5], 'Float16', half.tobytes(), packed=True),
        mindspore_entry('bf16', [4], 'BFloat16',
                        bf16.view(torch.int16).numpy().tobytes()),
        mindspore_entry('global_step', [0], 'Int32',
                        np.int32(7).tobytes()),
        mindspore_entry('flags', [2], 'Bool', b'\x01\x00'),
        mindspore_entry('note', [0], 'str', 'hi'.encode('utf-32-le')),
    ])
    path = str(tmp_path / 'model.ckpt')
    for trailer in (b'', b'crc_num' + binascii.crc32(data).to_bytes(10,
                                                                   'big')):
        with open(path, 'wb') as f:
            f.write(data + trailer)
        assert framework_of(path) == 'mindspore'
        state = read_mindspore_checkpoint(path)
        assert list(state) == ['w', 'half', 'bf16', 'global_step', 'flags']
        assert torch.equal(state['w'], torch.from_numpy(weight))
        assert torch.equal(state['half'], torch.from_numpy(half))
        assert torch.equal(state['bf16'], bf16)
        assert state['global_step'].shape == () and \
            state['global_step'].item() == 7
        assert state['flags'].tolist() == [True, False]
    with open(path, 'wb') as f:
        f.write(data + b'crc_num' + (12345).to_bytes(10, 'big'))
    with pytest.raises(CheckpointLoadError, match='CRC-32') as err:
        read_mindspore_checkpoint(path)
    one_line(err)


@pytest.mark.parametrize('content, match', [
    (mindspore_entry('w', [4, 3], 'Float32', bytes(40)), 'holds 40 bytes'),
    (mindspore_entry('w', [2], 'Complex256', bytes(64)), 'Complex256'),
    (b'\x0a\x05\x0a\x07abc', 'after 0 entries'),
    (b'\x0a\x05\x0a\x03\xff\xfe\xfd', 'after 0 entries'),
], ids=['short-content', 'unknown-type', 'cut-name', 'non-utf8-name'])
def test_a_corrupt_mindspore_file_fails_in_one_line(tmp_path, content, match):
    path = str(tmp_path / 'bad.ckpt')
    with open(path, 'wb') as f:
        f.write(content)
    # The last is no MindSpore file by content: only the reader takes it so.
    readers = [read_mindspore_checkpoint] + \
        ([safe_load] if framework_of(path) == 'mindspore' else [])
    for read in readers:
        with pytest.raises(CheckpointLoadError, match=match) as err:
            read(path)
        assert one_line(err).startswith(f'cannot read checkpoint {path}: ')
    assert len(readers) == (1 if content.endswith(b'\xfd') else 2)


def test_the_dtype_map_covers_mindspore_number_types():
    assert {k: np.dtype(v).itemsize for k, v in MINDSPORE_DTYPES.items()} == {
        'Bool': 1, 'Int8': 1, 'UInt8': 1, 'Int16': 2, 'UInt16': 2,
        'Int32': 4, 'UInt32': 4, 'Int64': 8, 'UInt64': 8, 'Float16': 2,
        'BFloat16': 2, 'Float32': 4, 'Float64': 8}


# -- torch and safetensors ----------------------------------------------------

@pytest.mark.parametrize('zipfile', [True, False], ids=['zip', 'legacy'])
@pytest.mark.parametrize('ext', ['.pth', '.ckpt'])
def test_a_torch_checkpoint_loads_as_before(tmp_path, zipfile, ext):
    state = {'conv.weight': torch.randn(2, 3), 'bn.num_batches_tracked':
             torch.tensor(3)}
    path = str(tmp_path / f'model{ext}')
    torch.save({'state_dict': state, 'meta': {'epoch': 1}}, path,
               _use_new_zipfile_serialization=zipfile)
    assert framework_of(path) is None
    loaded = safe_load(path)
    assert loaded['meta'] == {'epoch': 1}
    assert read_state_dict(path).keys() == state.keys()
    for name, tensor in state.items():
        assert torch.equal(loaded['state_dict'][name], tensor)


def test_a_safetensors_file_round_trips(tmp_path):
    safetensors = pytest.importorskip('safetensors.torch')
    state = {'head.fc.weight': torch.randn(3, 4),
             'half': torch.randn(2).half(), 'steps': torch.arange(3)}
    path = str(tmp_path / 'model.safetensors')
    safetensors.save_file(state, path)
    assert framework_of(path) is None
    for loaded in (safe_load(path), read_state_dict(path)):
        assert loaded.keys() == state.keys()
        for name, tensor in state.items():
            assert loaded[name].dtype == tensor.dtype
            assert torch.equal(loaded[name], tensor)
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:-5])
    with pytest.raises(CheckpointLoadError,
                       match='truncated or corrupt') as err:
        safe_load(path)
    one_line(err)
