"""What ``import mmrep`` imports: only what every user needs (torch,
mmengine's model base, mmrep's backbones and loaders). What one library's
user does not need is imported when a path needs it, and every registry
name still resolves where a config names it: the deploy UPerHead (all of
``mmseg.models``) on the first lookup of ``DeployUPerHead``, the deploy
hook (mmengine's hooks, OpenCV) on the first lookup of a hook, mmcv's
bricks (``mmcv.cnn``, which imports ``mmengine.runner``) when a layer is
built. Timings: benchmarks/README.md, "import mmrep"."""
import json
import os
import subprocess
import sys
import types

import pytest
from conftest import REPO

from mmrep.registry import LazyRegistry

#: Modules ``import mmrep`` leaves out (each with its submodules).
NOT_IMPORTED = ('mmseg', 'mmdet', 'mmpretrain', 'onnx', 'onnxruntime',
                'mmengine.runner', 'mmengine.hooks', 'mmcv.cnn',
                'matplotlib')


def run_fresh(code):
    """Run ``code`` in a fresh interpreter on this checkout's mmrep; return
    what its last printed line holds (JSON)."""
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=env,
                          text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


LOADED = f'''
import json, sys
def loaded():
    return sorted(name for name in {NOT_IMPORTED!r}
                  if any(m == name or m.startswith(name + '.')
                         for m in sys.modules))
'''


def test_import_mmrep_leaves_out_what_one_library_does_not_need():
    found = run_fresh(LOADED + '''
import mmrep
print(json.dumps(dict(file=mmrep.__file__, loaded=loaded())))
''')
    assert found['file'].startswith(REPO)
    assert found['loaded'] == []


def test_a_detection_or_classification_path_imports_no_mmseg():
    """Building and fusing an mmrep backbone and making a deploy config
    without a UPerHead import none of mmseg's models."""
    found = run_fresh(LOADED + '''
import torch, mmrep
from mmrep.registry import MODELS
from mmrep.deploy import make_deploy_config
model = MODELS.build(dict(type='RepVGG', arch='A0')).eval()
mmrep.reparameterize_model(model)
cfg = make_deploy_config(dict(model=dict(
    type='RetinaNet', backbone=dict(type='mmrep.RepVGG', arch='A0'),
    bbox_head=dict(type='RetinaHead', norm_cfg=dict(type='BN')))))
print(json.dumps(dict(deploy=cfg.model.backbone.deploy,
                      mmseg_models='mmseg.models' in sys.modules,
                      loaded=loaded())))
''')
    assert found['deploy'] is True
    assert found['mmseg_models'] is False
    assert 'mmcv.cnn' in found['loaded']  # the BatchNorms were built


# A fresh interpreter (about 11 s): the lazy lookup itself is checked in
# this process below, the plain import's modules by the first test.
@pytest.mark.slow
def test_registry_names_resolve_after_a_plain_import():
    """``custom_imports=['mmrep']`` then ``type='mmrep.<name>'`` under
    another scope: the lazily registered names resolve on lookup."""
    found = run_fresh(LOADED + '''
import mmrep
from mmengine.registry import HOOKS, MODELS
before = loaded()
head = MODELS.get('mmrep.DeployUPerHead')   # as mmseg's builder asks
from mmseg.models.decode_heads import UPerHead
hook = HOOKS.get('mmrep.ReparamCheckpointHook')
from mmrep.deploy import ReparamCheckpointHook
from mmrep.deploy.heads import DeployUPerHead, deploy_head_type
print(json.dumps(dict(
    before=before, head=head.__name__, base=issubclass(head, UPerHead),
    same=DeployUPerHead is head, hook=hook.__name__,
    hook_same=ReparamCheckpointHook is hook,
    head_type=deploy_head_type('UPerHead'))))
''')
    assert found['before'] == []
    assert found == dict(
        before=[], head='DeployUPerHead', base=True, same=True,
        hook='ReparamCheckpointHook', hook_same=True,
        head_type='mmrep.DeployUPerHead')


def test_lazy_registry_imports_a_module_on_its_own_name(monkeypatch):
    imported = []

    def register():
        imported.append('probe')

        @registry.register_module()
        class Probe:
            pass

    module = types.ModuleType('mmrep_lazy_probe')
    registry = LazyRegistry('probe', scope='mmrep_lazy_probe',
                            lazy={'Probe': 'mmrep_lazy_probe'})

    def fake_import(name):
        assert name == 'mmrep_lazy_probe'
        if not imported:
            register()
        return module

    monkeypatch.setattr('mmrep.registry.import_module', fake_import)

    @registry.register_module()
    class Other:
        pass

    assert registry.get('Other') is Other and imported == []
    assert registry.get('mmrep_lazy_probe.Probe').__name__ == 'Probe'
    assert imported == ['probe'] and 'Probe' in registry.module_dict
    assert registry.get('Probe') is registry.module_dict['Probe']


def test_a_failed_lazy_import_is_retried(monkeypatch):
    calls = []

    def failing_import(name):
        calls.append(name)
        raise ImportError(name)

    monkeypatch.setattr('mmrep.registry.import_module', failing_import)
    registry = LazyRegistry('probe', scope='mmrep_lazy_retry',
                            lazy={'Probe': 'mmrep_lazy_missing'})
    for _ in range(2):
        with pytest.raises(ImportError):
            registry.get('Probe')
    assert calls == ['mmrep_lazy_missing'] * 2
