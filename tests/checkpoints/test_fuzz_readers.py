"""A bounded, deterministic mutation fuzz of every reader behind
``safe_load``.

Genuine files (a torch zip fixture, a MindCV ``.ckpt``, a Paddle
``.pdparams`` and an mmengine resume checkpoint saved here, in torch's zip
and legacy formats) are truncated at many offsets, have single bits flipped
and bytes inserted and deleted, mostly where their structure is (pickle
opcodes, zip headers and directory, protocol-buffers keys and lengths);
torch zips are also fuzzed through their data.pkl, re-zipped with a valid
CRC. Every mutant must load or raise ``CheckpointLoadError`` with a
one-line message. The fuzz runs in a subprocess (``untrusted_probe.py
fuzz``), each file in a forked child of it, so a crash or a hang fails that
file's test with the mutant named. The seed is fixed: every run loads the
same mutants (about 4 400, some seconds of loading).
"""
import json
import os
import os.path as osp
import subprocess
import sys
import time

import pytest
import torch
from conftest import fixture_files

import untrusted_corpus as uc

# Trains, exports, quantizes, fuzzes or starts processes: `make test-fast`
# leaves it out (the `slow` marker, pytest.ini).
pytestmark = pytest.mark.slow

SEED = 20240607
#: Mutants per file (a zip gets as many again through its data.pkl),
#: sized for about a minute in all on two busy cores.
COUNTS = dict(truncate=60, flip=400, insert=80, delete=80)


@pytest.fixture(scope='module')
def resume_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp('fuzz-genuine')
    state = uc.mmengine_resume_checkpoint()
    zipped, legacy = str(folder / 'resume.pth'), str(folder / 'legacy.pth')
    torch.save(state, zipped)
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    return {'mmengine-zip': zipped, 'mmengine-legacy': legacy}


TARGETS = {
    'torch-fixture': ('zip', lambda r: fixture_files('cyclefc_ops_s*.pt')[0]),
    'mindspore-fixture': ('mindspore',
                          lambda r: fixture_files('mindcv_*.ckpt')[0]),
    'paddle-fixture': ('pickle',
                       lambda r: fixture_files('paddle_*.pdparams')[0]),
    'mmengine-zip': ('zip', lambda r: r['mmengine-zip']),
    'mmengine-legacy': ('legacy', lambda r: r['mmengine-legacy']),
}


@pytest.fixture(scope='module')
def fuzzed(resume_files, tmp_path_factory):
    """Fuzz every target in one subprocess (a forked child per target):
    ``{target: result}``, and the subprocess's exit status and output."""
    folder = tmp_path_factory.mktemp('fuzz')
    targets = []
    for name, (kind, path_of) in TARGETS.items():
        workdir = folder / name
        workdir.mkdir()
        targets.append(dict(name=name, path=path_of(resume_files), kind=kind,
                            seed=SEED, counts=COUNTS, workdir=str(workdir),
                            timeout=150))
    spec_path, out = str(folder / 'spec.json'), str(folder / 'out.json')
    with open(spec_path, 'w') as f:
        json.dump(dict(targets=targets), f)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, uc.PROBE, 'fuzz', spec_path, out], cwd=uc.REPO,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=900,
        env=dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1'))
    results = {}
    if osp.exists(out):
        with open(out) as f:
            results = json.load(f)
    print(f'fuzz: {time.monotonic() - started:.1f} s in all')
    return results, proc


@pytest.mark.parametrize('target', list(TARGETS))
def test_mutants_load_or_fail_in_one_line(target, fuzzed, resume_files):
    results, proc = fuzzed
    path = TARGETS[target][1](resume_files)
    assert osp.getsize(path) < 4 * 2**20, 'pick a small genuine file'
    result = results.get(target)
    if result is None:
        pytest.fail(f'{target}: no result; the fuzz exited '
                    f'{proc.returncode}: {proc.stdout[-1500:]}')
    if result['outcome'] == 'signal':
        pytest.fail(f'{target}: crashed (signal {result["signal"]}) at '
                    f'mutant {result["mutant"]}')
    if result['outcome'] == 'timeout':
        pytest.fail(f'{target}: hung ({result["wall_s"]:.0f} s) at mutant '
                    f'{result["mutant"]}')
    summary = (f'{target}: {result["count"]} mutants in '
               f'{result["wall_s"]:.1f} s, {result["outcomes"]}; slowest '
               f'{result["slowest"][:2]}')
    print(summary)
    assert result['count'] >= sum(COUNTS.values()), summary
    escaped = result['escaped']
    assert not escaped, (
        f'{summary}; {len(escaped)} mutants raised something else than '
        f'CheckpointLoadError, e.g. ' + '; '.join(
            f'{label}: {error}: {message[:120]!r}'
            for label, error, message in escaped[:8]))
    assert not result['multiline'], (
        f'{summary}; refusals not on one line: {result["multiline"][:3]}')
