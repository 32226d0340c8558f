"""Crafted checkpoint files through ``safe_load`` and the framework readers.

Every file is built here (``untrusted_corpus.py``), none is stored. For
each, :func:`mmrep.utils.safe_load` either returns or raises
:class:`~mmrep.utils.CheckpointLoadError` with a one-line message
(:class:`~mmrep.utils.UnsafeCheckpointError`, "refused to load", where the
file reaches for code); no other exception escapes, nothing the file names
runs, the process does not crash, and its peak memory grows by at most
8 x the file's size + 64 MiB. The files are loaded in forked children of
one subprocess (``untrusted_probe.py``): a crash or a blow-up fails its own
case, named, and not the session.

The corpus: code execution through every pickle opcode family, in torch's
zip and legacy formats and in a Paddle pickle; forged numpy dtypes (the
result is deep-copied, which is where a forged object field crashes);
memory amplifiers; absurd tensor shapes; deep and self-referential
nesting; crafted MindSpore and Paddle files. A genuine mmengine resume
checkpoint must still load, with its numpy values intact.
"""
import copy
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import fixture_files

import untrusted_corpus as uc
from untrusted_corpus import CASE_BY_NAME, CASES, describe

import mmrep  # noqa: F401
from mmrep.utils import safe_load

# Trains, exports, quantizes, fuzzes or starts processes: `make test-fast`
# leaves it out (the `slow` marker, pytest.ini).
pytestmark = pytest.mark.slow

#: The framework readers, probed on the MindSpore and Paddle cases too.
READER_OF = {'mindspore': 'mindspore', 'paddle': 'paddle'}


def warmups():
    """One genuine file per reader (the probe's baseline)."""
    return [fixture_files('cyclefc_ops_s0.pt')[0],
            fixture_files('mindcv_*.ckpt')[0],
            fixture_files('paddle_*.pdparams')[0]]


def _job_names():
    names = [c.name for c in CASES]
    names += [f'{c.name}@reader' for c in CASES
              if c.name.split('-', 1)[0] in READER_OF]
    return names


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    """Build every case and probe it once: the results by job name, and
    each case's file."""
    folder = str(tmp_path_factory.mktemp('untrusted'))
    jobs, paths = [], {}
    for case in CASES:
        path, marker = uc.make_case(case.name, folder)
        paths[case.name] = path
        job = dict(name=case.name, path=path, markers=[marker],
                   deepcopy=case.deepcopy, timeout=case.timeout)
        jobs.append(job)
        container = case.name.split('-', 1)[0]
        if container in READER_OF:
            jobs.append(dict(job, name=f'{case.name}@reader',
                             reader=READER_OF[container]))
    results = uc.run_probe(jobs, warmups(), timeout=1200)
    return results, paths


def check(corpus, job):
    """Assert what the case's expectation says about the probe's result."""
    results, paths = corpus
    name = job.split('@')[0]
    case = CASE_BY_NAME[name]
    result = results.get(job)
    what = f'{job}: {describe(result)}'
    if result is None:
        process = results['__process__']
        pytest.fail(f'{what}; probe exited {process["returncode"]}: '
                    f'{process["output"][-1500:]}')
    assert not result.get('markers'), f'{what}: the payload ran'
    assert result['outcome'] not in ('signal', 'timeout', 'escaped'), what
    if case.expect == 'unsafe':
        assert result['outcome'] == 'refused' and result['unsafe'], what
        assert 'refused to load' in result['message'], what
    elif case.expect == 'refused':
        assert result['outcome'] == 'refused', what
    if result['outcome'] == 'refused':
        assert not result['newline'], f'{what}: not one line'
        assert result['message'].strip(), what
    if case.fragment:  # in the message, not in the file's name
        text = result['message'].replace(paths[name], '<file>')
        assert case.fragment in text.lower(), what
    bound = uc.memory_bound(osp.getsize(paths[name]))
    assert result['growth'] <= bound, \
        f'{what}: peak grew by more than {bound / 2**20:.1f} MiB'
    if case.cpu_limit is not None:
        assert result['cpu_s'] < case.cpu_limit, \
            f'{what}: more than {case.cpu_limit} s'
    if case.deepcopy and result['outcome'] == 'returned':
        assert result['deepcopy'] == 'ok', what


def _jobs(*prefixes, names=None):
    """Job names (cases and their reader jobs) by container-what prefix."""
    picked = []
    for job in _job_names():
        name = job.split('@')[0]
        what = name.split('-', 1)[1]
        if names is not None and what not in names:
            continue
        if prefixes and not name.startswith(prefixes):
            continue
        picked.append(job)
    assert picked, (prefixes, names)
    return picked


def _parametrize(jobs):
    return pytest.mark.parametrize('job', jobs)


# -- code execution -----------------------------------------------------------

@_parametrize(_jobs(names=set(uc.CODE_PAYLOADS)))
def test_code_execution_attempts_are_refused(corpus, job):
    """GLOBAL+REDUCE, STACK_GLOBAL, INST, OBJ, NEWOBJ, NEWOBJ_EX, EXT1/2/4
    (with the extension codes registered to os.system and friends), BUILD
    giving an allowed type a ``__setstate__``, odd persistent ids and
    allowed callables with forged arguments: refused, nothing runs."""
    check(corpus, job)


def test_the_code_payloads_are_live(tmp_path):
    """The control: unpickled by the plain rules (extensions registered as
    the probe registers them), each payload creates its marker."""
    markers = {}
    for name in uc.LIVE_PAYLOADS:
        marker = str(tmp_path / f'live-{name}')
        with open(tmp_path / f'{name}.pkl', 'wb') as f:
            f.write(uc.payload_pickle(name, marker))
        markers[name] = marker
    script = (
        'import copyreg, pickle, sys\n'
        f'for m, n, c in {uc.EXTENSIONS!r}: copyreg.add_extension(m, n, c)\n'
        'for path in sys.argv[1:]:\n'
        '    try: pickle.loads(open(path, "rb").read())\n'
        '    except Exception: pass\n')
    subprocess.run([sys.executable, '-c', script] +
                   [str(tmp_path / f'{n}.pkl') for n in markers],
                   check=True, capture_output=True, timeout=60)
    dead = [n for n, m in markers.items() if not osp.exists(m)]
    assert dead == [], f'payloads that run nothing: {dead}'


# -- forged numpy dtypes ------------------------------------------------------

@_parametrize(_jobs(names={'dtype_v8', 'dtype_object', 'dtype_object_raw',
                           'dtype_f8_object_field', 'dtype_v8_object_field',
                           *uc.FORGED_F8_STATES}))
def test_forged_numpy_dtypes_are_refused_without_a_crash(corpus, job):
    """A void or object dtype, or a float64 dtype (an allowed type) given
    by BUILD an object field, object flags, a numeric field or a subarray
    whose itemsize lies: refused; what loads is deep-copied and repr'd in
    the probe, where an object field over raw bytes crashes numpy."""
    check(corpus, job)


def test_a_forged_object_field_crashes_numpy(tmp_path):
    """The control: loaded by plain pickle and deep-copied, the forged
    dtype kills the process (so refusing it matters)."""
    path = str(tmp_path / 'forged.pkl')
    with open(path, 'wb') as f:
        f.write(uc.program(uc._forged_dtype_fields('f8')(), 2))
    proc = subprocess.run(
        [sys.executable, '-c', 'import copy, pickle, sys; '
         'copy.deepcopy(pickle.loads(open(sys.argv[1], "rb").read()))',
         path], capture_output=True, timeout=60)
    assert proc.returncode < 0, proc


# -- memory amplifiers --------------------------------------------------------

@_parametrize(_jobs(names={
    'numpy_object_bomb', 'numpy_ndarray_bomb', 'numpy_ndarray_bomb_f8',
    'bytearray_bomb',
    'deflate_bomb', 'storage_claim_1gib', 'storage_claim_2e60',
    'zero_stride', 'shared_views', 'memo_bomb', 'shared_bytes'}))
def test_memory_amplifiers_stay_within_bounded_memory(corpus, job):
    """A 1.2 GB object array from a few hundred bytes, ``bytearray(10**9)``,
    a 1 MB zip whose data.pkl inflates to 1 GB, storage records claiming
    more than they hold, Paddle's memo index 2**26 in 9 bytes and one 1 MiB
    string under thousands of arrays: refused, within 8 x size + 64 MiB.
    A stride-0 expansion and 1000 views of one storage may load, within
    the same bound."""
    check(corpus, job)


# -- absurd shapes ------------------------------------------------------------

@_parametrize(_jobs(names={
    'negative_offset', 'size_beyond_storage', 'offset_beyond_storage',
    'stride_beyond_storage', 'negative_size', 'negative_stride', 'dims65',
    'numel_overflow', 'short_record', 'numpy_dims65', 'numpy_short_data',
    'dims_zero_huge', 'dims_overflow', 'dims_overflow_packed',
    'huge_length', 'huge_content_length', 'huge_dims'}))
def test_absurd_shapes_and_sizes_are_refused(corpus, job):
    """Views outside their storage (negative offsets, sizes, strides or
    offsets past the end), 65 dimensions, element counts that overflow,
    short records; MindSpore dims (0, 2**62) and overflowing products,
    claimed lengths past the end; a Paddle array of 64 dimensions of 20 kB
    integers (refused within 1 s of CPU)."""
    check(corpus, job)


# -- recursion ----------------------------------------------------------------

@_parametrize(_jobs(names=set(uc.RECURSION)))
def test_deep_and_self_referential_nesting(corpus, job):
    """100 000 levels of lists, tuples, dicts and OrderedDicts, and
    containers holding themselves: load or CheckpointLoadError, never a
    RecursionError or a crash."""
    check(corpus, job)


# -- MindSpore and Paddle -----------------------------------------------------

@_parametrize(_jobs('mindspore-', names={
    'duplicate_nonadjacent', 'duplicate_other_shape', 'truncated_varint',
    'long_varint', 'truncated_packed_dims'}))
def test_crafted_mindspore_files(corpus, job):
    """A tensor name twice, not adjacent ("duplicate" named), truncated
    and over-long varints."""
    check(corpus, job)


@_parametrize(_jobs('paddle-', names={
    'odict_items', 'odict_items_update', 'odict_slots', 'newobj_allowed',
    'newobj_ndarray', 'newobj_ex_allowed', 'ext1_unregistered',
    'ext2_unregistered', 'ext4_unregistered',
    'top_ordered_dict_newobj'}))
def test_crafted_paddle_pickles_are_unsafe(corpus, job):
    """An OrderedDict whose ``items`` / ``update`` a BUILD replaces (never
    an empty result, never a private exception), NEWOBJ / NEWOBJ_EX on the
    admitted names, EXT opcodes: UnsafeCheckpointError."""
    check(corpus, job)


def test_every_case_is_checked():
    """Each case of the corpus belongs to one of the tests above."""
    covered = set()
    for test in (test_code_execution_attempts_are_refused,
                 test_forged_numpy_dtypes_are_refused_without_a_crash,
                 test_memory_amplifiers_stay_within_bounded_memory,
                 test_absurd_shapes_and_sizes_are_refused,
                 test_deep_and_self_referential_nesting,
                 test_crafted_mindspore_files,
                 test_crafted_paddle_pickles_are_unsafe):
        for mark in test.pytestmark:
            if mark.name == 'parametrize':
                covered.update(mark.args[1])
    assert set(_job_names()) - covered == set()


# -- what must keep working ---------------------------------------------------

def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        safe_load(str(tmp_path / 'missing.pth'))


def test_an_mmengine_resume_checkpoint_loads_with_its_numpy_values(
        tmp_path):
    """What mmengine's runner saves for resuming (its MessageHub's
    HistoryBuffers, numpy arrays and scalars) loads, deep-copies, and
    holds real numpy arrays and numpy scalars equal to what was saved."""
    from mmengine.logging import HistoryBuffer
    saved = uc.mmengine_resume_checkpoint()
    path = str(tmp_path / 'iter_10.pth')
    torch.save(saved, path)
    loaded = safe_load(path)
    copy.deepcopy(loaded)
    assert loaded['meta']['dataset_meta'] == {'classes': ('a', 'b')}
    assert type(loaded['meta']['best_score']) is np.float64
    assert loaded['meta']['best_score'] == 0.5
    for key, value in saved['state_dict'].items():
        assert torch.equal(loaded['state_dict'][key], value), key
    hub = loaded['message_hub']
    for key, buffer in saved['message_hub']['log_scalars'].items():
        got = hub['log_scalars'][key]
        assert type(got) is HistoryBuffer, key
        values, counts = got.data
        assert type(values) is np.ndarray and type(counts) is np.ndarray
        assert np.array_equal(values, buffer.data[0]), key
        assert np.array_equal(counts, buffer.data[1]), key
        assert got.mean() == buffer.mean() and got.current() == \
            buffer.current(), key
    info = hub['runtime_info']
    for key, value in saved['message_hub']['runtime_info'].items():
        got = info[key]
        assert type(got) is type(value), (key, type(got), type(value))
        if isinstance(value, np.ndarray):
            assert got.dtype == value.dtype and np.array_equal(got, value)
        else:
            assert got == value, key
    buffer = loaded['extra_buffer']
    assert type(buffer) is HistoryBuffer
    assert np.array_equal(buffer.data[0], saved['extra_buffer'].data[0])
    assert buffer.max_length == 10


def test_the_corpus_files_are_what_they_claim(tmp_path):
    """The builders write what the readers are told: torch containers are
    not taken for another framework, MindSpore and Paddle cases are."""
    from mmrep.checkpoints.readers import framework_of
    for case in CASES:
        if case.name in ('zip-deflate_bomb', 'paddle-shared_bytes'):
            continue  # large; built the same way as their neighbours
        path, _ = uc.make_case(case.name, str(tmp_path))
        container = case.name.split('-', 1)[0]
        want = READER_OF.get(container)
        assert framework_of(path) == want, (case.name, framework_of(path))
