"""Every checkpoint mmrep and its tools read goes through torch's
weights-only unpickler: a crafted file whose unpickling would create a file
is refused with a clear message, and the file never appears."""
import os
import os.path as osp
import re

import pytest
import torch
from conftest import CreateFile, RunShell
from tool_runner import DEMO, REPO, load_tool

import mmrep  # noqa: F401
from mmrep.checkpoints import load_pretrained
from mmrep.models.backbones import RepVGG
from mmrep.utils import CheckpointLoadError, enforce_weights_only

TINY_REPVGG = dict(num_blocks=(1, 1, 1, 1), width_multiplier=(0.25, ) * 4)


@pytest.fixture(params=[CreateFile, RunShell], ids=['open', 'os.system'])
def evil(request, tmp_path):
    """A checkpoint with real weights and a payload; the payload's target."""
    marker = str(tmp_path / 'pwned')
    path = str(tmp_path / 'evil.pth')
    state = RepVGG(TINY_REPVGG).state_dict()
    torch.save({'state_dict': state, 'meta': request.param(marker)}, path)
    assert not osp.exists(marker)
    return path, marker


def test_payload_is_live_when_loaded_unsafely(evil, monkeypatch):
    """The control: without weights_only the file does appear."""
    path, marker = evil
    # The tools force weights-only loading for their process (tests run
    # some of them in this process); the control needs torch's own default.
    monkeypatch.delenv('TORCH_FORCE_WEIGHTS_ONLY_LOAD', raising=False)
    torch.load(path, weights_only=False)
    assert osp.exists(marker)


def test_load_pretrained_refuses(evil):
    path, marker = evil
    with pytest.raises(CheckpointLoadError) as err:
        load_pretrained(RepVGG(TINY_REPVGG), path)
    msg = str(err.value)
    assert f'refused to load {path}' in msg
    assert "outside mmrep's allow-list" in msg and 'not executed' in msg
    assert re.search(r'unsupported global', msg, re.I)
    assert not osp.exists(marker)


def test_reparam_tool_refuses(evil, tmp_path):
    path, marker = evil
    out = str(tmp_path / 'fused.pth')
    with pytest.raises(SystemExit) as err:
        load_tool('reparam').main([DEMO, path, '--out', out])
    assert err.value.code.startswith(f'error: refused to load {path}')
    assert not osp.exists(marker) and not osp.exists(out)


@pytest.mark.parametrize('how', ['resume', 'load_from'])
def test_train_tool_refuses_resume_and_load_from(evil, tmp_path, how):
    path, marker = evil
    work = str(tmp_path / 'work')
    extra = ['--resume', path] if how == 'resume' else \
        ['--cfg-options', f'load_from={path}']
    with pytest.raises(SystemExit) as err:
        load_tool('train').main([DEMO, '--work-dir', work, *extra])
    assert f'error: refused to load {path}' in str(err.value.code)
    assert not osp.exists(marker) and not osp.exists(work)


def test_train_tool_refuses_latest_checkpoint_of_work_dir(evil, tmp_path):
    """``--resume`` without a path resumes the work dir's latest."""
    path, marker = evil
    work = tmp_path / 'work'
    work.mkdir()
    latest = str(work / 'iter_9.pth')
    os.replace(path, latest)
    (work / 'last_checkpoint').write_text(latest)
    with pytest.raises(SystemExit) as err:
        load_tool('train').main([DEMO, '--work-dir', str(work), '--resume'])
    assert f'error: refused to load {latest}' in str(err.value.code)
    assert not osp.exists(marker)


def test_test_tool_refuses(evil, tmp_path):
    path, marker = evil
    with pytest.raises(SystemExit) as err:
        load_tool('test').main([DEMO, path, '--work-dir',
                                str(tmp_path / 'work')])
    assert f'error: refused to load {path}' in str(err.value.code)
    assert not osp.exists(marker)


def test_mmengine_loading_is_forced_weights_only(evil, monkeypatch):
    """The runner's own loading (``load_from``, ``resume``) calls
    ``torch.load`` without ``weights_only``; the tools force it on, even
    over ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``."""
    import pickle

    from mmengine.runner import load_checkpoint
    path, marker = evil
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    monkeypatch.delenv('TORCH_FORCE_WEIGHTS_ONLY_LOAD', raising=False)
    assert enforce_weights_only() is True
    assert os.environ['TORCH_FORCE_WEIGHTS_ONLY_LOAD'] == '1'
    assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' not in os.environ
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(RepVGG(TINY_REPVGG), path, map_location='cpu')
    assert not osp.exists(marker)


def test_every_torch_load_is_weights_only():
    """Static guard: the only ``torch.load`` in mmrep/ and tools/ is
    :func:`mmrep.utils.safe_load`'s, with ``weights_only=True``."""
    calls = []
    for folder in ('mmrep', 'tools'):
        for root, _, files in os.walk(osp.join(REPO, folder)):
            for name in files:
                if not name.endswith('.py'):
                    continue
                path = osp.join(root, name)
                text = open(path).read()
                for m in re.finditer(r'torch\.load\(([^)]*)\)', text):
                    calls.append((osp.relpath(path, REPO),
                                  ' '.join(m.group(1).split())))
    assert calls == [('mmrep/utils/serialization.py',
                      'path, map_location=map_location, weights_only=True')]


def test_release_training_checkpoint_with_args_loads(tmp_path):
    """DeiT-style scripts (the CycleMLP release's) pickle their argparse
    namespace beside the weights; that is data, and loads."""
    import argparse
    model = RepVGG(TINY_REPVGG)
    path = str(tmp_path / 'release.pth')
    torch.save({'model': model.state_dict(), 'epoch': 299,
                'args': argparse.Namespace(model='tiny', lr=1e-3)}, path)
    fresh = RepVGG(TINY_REPVGG)
    load_pretrained(fresh, path)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_import_leaves_torch_allow_list_alone():
    """The stand-ins are admitted for mmrep's own loads only: importing
    mmrep adds nothing of numpy, mmengine or argparse to torch's allow-list
    (torch's own modules add their classes), and a load leaves it as it
    was."""
    import subprocess
    import sys
    fixture = osp.join(REPO, 'tests', 'data', 'repvgg_small_s0.pt')
    code = f"""
import torch, mmrep
from mmrep.utils import safe_load
def names():
    return sorted(str(getattr(g[0] if isinstance(g, tuple) else g,
                              '__module__', g))
                  for g in torch.serialization.get_safe_globals())
before = names()
safe_load({fixture!r})
assert names() == before, 'changed by a load'
print([n for n in before if n.split('.')[0] in
       ('numpy', 'mmengine', 'argparse', 'mmrep')])
"""
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True)
    assert out.returncode == 0 and out.stdout.strip() == '[]', \
        out.stdout + out.stderr[-2000:]
