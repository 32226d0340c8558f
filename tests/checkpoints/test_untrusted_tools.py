"""Crafted checkpoint files through the command-line tools.

``tools/convert_checkpoint.py``, ``tools/test.py CONFIG CKPT`` and
``tools/reparam.py CONFIG CKPT`` given a crafted file (built by
``untrusted_corpus.py``) print one line, ``error: ...``, on stderr, exit
with status 1, write nothing (no output file, no work directory, no
temporary file beside them) and run nothing the file names. A few cases
per tool run as a real subprocess (which is what shows "one line on
stderr", and keeps a crash or a memory blow-up out of this process); the
others run the tool's ``main`` in this process. A file whose tensors are
all stride-0 expansions of one element is refused by the converter, or at
least not blown up: the output is at most a few times the input.
"""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from conftest import FIXTURES
from tool_runner import DEMO, REPO, load_tool

import untrusted_corpus as uc

# Trains, exports, quantizes, fuzzes or starts processes: `make test-fast`
# leaves it out (the `slow` marker, pytest.ini).
pytestmark = pytest.mark.slow

TOOLS = ('convert_checkpoint', 'test', 'reparam')
#: The environment's import-time deprecation warnings (setuptools'
#: pkg_resources, imported by mmengine) are silenced, as the other tool
#: tests silence library warnings; anything else a crafted file makes
#: appear on stderr counts.
QUIET = 'ignore:pkg_resources is deprecated'

#: Run as a subprocess: crash- or memory-prone files, and one of each kind.
SUBPROCESS = {
    'convert_checkpoint': ['zip-dtype_f8_object_field', 'paddle-memo_bomb'],
    'test': ['zip-numpy_object_bomb'],
    'reparam': ['zip-bytearray_bomb'],
}
#: Run in this process (nothing here crashes or needs gigabytes even
#: where the loader is still wrong).
IN_PROCESS = ['zip-global_reduce', 'legacy-inst', 'zip-stack_global',
              'zip-reduce_getattr', 'mindspore-duplicate_nonadjacent',
              'paddle-odict_items', 'paddle-odict_items_update',
              'zip-nested_lists']


def argv(tool, checkpoint, out):
    """The tool's arguments; ``out`` is the one thing it would write."""
    if tool == 'convert_checkpoint':
        return [checkpoint, osp.join(out, 'converted.pth'), '--family',
                'repvgg']
    if tool == 'test':
        return [DEMO, checkpoint, '--work-dir', osp.join(out, 'work')]
    return [DEMO, checkpoint, '--out', osp.join(out, 'fused.pth')]


def crafted(name, tmp_path):
    """The case's file in ``tmp_path/in``, its marker, and an empty
    ``tmp_path/out`` for the tool to (not) write into."""
    folder, out = tmp_path / 'in', tmp_path / 'out'
    folder.mkdir()
    out.mkdir()
    path, marker = uc.make_case(name, str(folder))
    return path, marker, str(out)


def listing(folder):
    return sorted(os.listdir(folder))


@pytest.mark.parametrize('tool, name', [(t, n) for t in TOOLS
                                        for n in SUBPROCESS[t]])
def test_a_subprocess_prints_one_error_line_and_writes_nothing(
        tool, name, tmp_path):
    path, marker, out = crafted(name, tmp_path)
    before = listing(osp.dirname(path))
    proc = subprocess.run(
        [sys.executable, osp.join('tools', f'{tool}.py'),
         *argv(tool, path, out)], cwd=REPO, capture_output=True, text=True,
        timeout=300, env=dict(os.environ, OMP_NUM_THREADS='1',
                              PYTHONWARNINGS=QUIET))
    what = (f'{tool} on {name}: exit {proc.returncode}, stderr '
            f'{proc.stderr[-2000:]!r}')
    assert proc.returncode >= 0, f'crashed: {what}'
    assert proc.returncode == 1, what
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[-1].startswith('error: '), what
    assert len(lines) == 1, f'{tool} on {name}: more than the error line ' \
        f'on stderr: {lines[:-1]}'
    assert listing(out) == [], f'{what}; wrote {listing(out)}'
    assert listing(osp.dirname(path)) == before, what
    assert not osp.exists(marker), f'{what}; the payload ran'
    if uc.CASE_BY_NAME[name].expect == 'unsafe':
        assert 'refused to load' in lines[0], what
    if uc.CASE_BY_NAME[name].fragment:  # not in the file's name
        assert uc.CASE_BY_NAME[name].fragment in \
            lines[0].replace(path, '<file>').lower(), what


@pytest.mark.parametrize('name', IN_PROCESS)
@pytest.mark.parametrize('tool', TOOLS)
def test_main_refuses_in_one_line_and_writes_nothing(tool, name, tmp_path):
    path, marker, out = crafted(name, tmp_path)
    before = listing(osp.dirname(path))
    try:
        load_tool(tool).main(argv(tool, path, out))
    except SystemExit as e:
        code = e.code
    except BaseException as e:  # noqa: BLE001  what the test looks for
        pytest.fail(f'{tool} on {name}: {type(e).__module__}.'
                    f'{type(e).__qualname__} escaped: {str(e)[:300]!r}')
    else:
        pytest.fail(f'{tool} on {name}: returned, refusing nothing')
    what = f'{tool} on {name}: {code!r}'
    assert isinstance(code, str) and code.startswith('error: ') and \
        '\n' not in code, what
    assert listing(out) == [], f'{what}; wrote {listing(out)}'
    assert listing(osp.dirname(path)) == before, what
    assert not osp.exists(marker), f'{what}; the payload ran'
    if uc.CASE_BY_NAME[name].expect == 'unsafe':
        assert 'refused to load' in code, what
    if uc.CASE_BY_NAME[name].fragment:  # not in the file's name
        assert uc.CASE_BY_NAME[name].fragment in \
            code.replace(path, '<file>').lower(), what


def zero_stride_release(path, preset='RepVGG-A0'):
    """An original-release RepVGG checkpoint whose every float tensor is
    a stride-0 expansion of one element: a few hundred kB that describe a
    full-size model."""
    with open(osp.join(FIXTURES, 'repvgg_full_keys.json')) as f:
        shapes = json.load(f)[preset]['train']
    one = torch.ones(1)
    state = {k: torch.tensor(7) if k.endswith('num_batches_tracked')
             else one.expand(s) for k, s in shapes.items()}
    torch.save(state, path)
    return sum(torch.Size(s).numel() * 4 for s in shapes.values())


def test_stride_zero_weights_do_not_blow_up_the_converter(tmp_path):
    src, dst = str(tmp_path / 'expanded.pth'), str(tmp_path / 'out.pth')
    full = zero_stride_release(src)
    size = osp.getsize(src)
    assert full > 20 * size  # the file is an amplifier
    try:
        load_tool('convert_checkpoint').main([src, dst, '--family', 'repvgg'])
    except SystemExit as e:
        assert isinstance(e.code, str) and e.code.startswith('error: ') \
            and '\n' not in e.code, e.code
        assert not osp.exists(dst)
        return
    written = osp.getsize(dst)
    assert written <= 4 * size + 2**20, (
        f'a {size / 2**10:.0f} kB file of stride-0 tensors was converted '
        f'into {written / 2**20:.1f} MB')
