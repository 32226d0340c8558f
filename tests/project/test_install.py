"""The decisions of tools/install.sh (made by tools/install_plan.py) on
made-up installed environments, the mmcv wheel cache keys, and one dry run
of the installer on this machine."""
import copy
import json
import os
import os.path as osp
import subprocess
import sys
import zipfile
from importlib import metadata

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'tools'))
import install_plan as ip  # noqa: E402

REQUIREMENTS = ip.read_requirements(REPO)
NO_DEPS_REQUIREMENTS = ip.read_requirements(REPO, ip.NO_DEPS_FILES)

#: An environment where everything is installed and works (CPU machine,
#: CUDA build of torch).
COMPLETE = {
    'torch': '2.14.1', 'torch_import': True, 'torch_cuda': '13.0',
    'cuda_available': False,
    'torchvision': '0.29.1', 'torchvision_import': True,
    'torchvision_requires': '>=2.14.0',
    'mmcv': '2.1.0', 'mmcv_import': True, 'mmcv_ops': True,
    'mmcv_ops_cuda': None,
    'mmcv_requires': ['addict', 'mmengine>=0.3.0', 'numpy', 'packaging',
                      'Pillow', 'pyyaml', 'yapf', 'opencv-python>=3'],
    'setuptools': '80.10.2', 'pkg_resources': True, 'wheel': '0.45.0',
    'torch_requires_setuptools': '>=77.0.3',
    'opencv': True,
    'versions': {'mmengine': '0.10.7', 'numpy': '2.4.6', 'packaging': '26.2',
                 'mmsegmentation': '1.2.2', 'mmdet': '3.3.0',
                 'mmpretrain': '1.2.0', 'ftfy': '6.3.1', 'regex': '2026.5.9',
                 'pytest': '9.0.3', 'hypothesis': '6.155.2', 'onnx': '1.23.2',
                 'onnxruntime': '1.32.0', 'addict': '2.4.0',
                 'pillow': '12.0.0', 'pyyaml': '6.0.3', 'yapf': '0.43.0'},
    'mmrep_editable': True,
}


def _in_range(spec):
    """A version inside a requirement's range (its lower bound)."""
    for part in spec.split(','):
        if part.startswith(('>=', '==')):
            return part[2:]
    return '1.0'


# the requirement files may list more than the libraries named above
for _key, (_line, _spec) in [*REQUIREMENTS.items(),
                             *NO_DEPS_REQUIREMENTS.items()]:
    COMPLETE['versions'].setdefault(_key, _in_range(_spec))


def env(**changes):
    facts = copy.deepcopy(COMPLETE)
    versions = changes.pop('versions', {})
    facts.update(changes)
    for name, v in versions.items():
        facts['versions'][name] = v
    return facts


def policy(**kw):
    kw.setdefault('requirements', REQUIREMENTS)
    kw.setdefault('no_deps_requirements', NO_DEPS_REQUIREMENTS)
    kw.setdefault('root', REPO)
    return ip.Policy(**kw)


def decide(facts, found=None, **kw):
    """Decide with a stub cache that holds ``found`` (or nothing)."""
    return ip.decide(facts, policy(**kw),
                     find_wheel=lambda *a, **k: found)


def line(plan, start):
    hits = [x for x in plan['lines'] if (x + ' ').startswith(start + ' ')]
    assert len(hits) == 1, (start, plan['lines'])
    return hits[0]


# ------------------------------------------------------------------- torch
def test_complete_environment_keeps_everything():
    plan = decide(env())
    assert plan['done'] and not plan['refused']
    assert all(x.startswith('keep ') for x in plan['lines']), plan['lines']
    assert line(plan, 'keep torch') == 'keep torch 2.14.1 (cu130, tested)'
    assert plan['pip_specs'] == [] and plan['torch_specs'] == []
    assert plan['constraints'][:3] == [
        'torch==2.14.1', 'torchvision==0.29.1', 'mmcv==2.1.0']
    # the libraries are held inside their ranges whoever pulls them in
    assert 'mmsegmentation>=1.2.2,<1.3.0' in plan['constraints']


def test_torch_absent_is_installed_and_mmcv_follows():
    plan = decide({'torch': None, 'torchvision': None, 'mmcv': None,
                   'versions': {}, 'setuptools': '65.5.0'})
    assert plan['torch'] == 'install'
    assert plan['torch_specs'] == ['torch==2.14.1', 'torchvision==0.29.1']
    assert plan['mmcv'] == 'defer'
    assert plan['setuptools_spec'] == ''  # decided once torch is there
    assert 'torch==' not in ' '.join(plan['constraints'])
    assert not plan['done'] and not plan['refused']


def test_cpu_torch_2_13_is_kept():
    plan = decide(env(torch='2.13.0+cpu', torch_cuda=None,
                      torchvision='0.28.0+cpu',
                      torchvision_requires='==2.13.0'))
    assert line(plan, 'keep torch') == 'keep torch 2.13.0 (cpu, tested)'
    assert plan['torch'] == 'keep' and plan['torchvision'] == 'keep'
    assert 'torch==2.13.0+cpu' in plan['constraints']
    assert 'torchvision==0.28.0+cpu' in plan['constraints']


def test_supported_untested_torch_is_kept_and_says_so():
    plan = decide(env(torch='2.5.1', torchvision='0.20.1',
                      torchvision_requires='==2.5.1'))
    assert plan['torch'] == 'keep'
    assert 'untested' in line(plan, 'keep torch')


@pytest.mark.parametrize('old', ['1.13.1+cu117', '2.4.1'])
def test_unsupported_torch_refused_without_flag(old):
    plan = decide(env(torch=old))
    assert plan['refused'] and plan['torch'] == 'refuse'
    refused = line(plan, 'refuse torch')
    assert '--replace-torch' in refused and 'MMREP_REPLACE_TORCH=1' in refused
    assert plan['torch_specs'] == []


def test_unsupported_torch_replaced_with_flag():
    plan = decide(env(torch='1.13.1+cu117'), replace_torch=True)
    assert not plan['refused'] and plan['torch'] == 'replace'
    assert plan['torch_specs'] == ['torch==2.14.1', 'torchvision==0.29.1']
    assert plan['mmcv'] == 'defer'  # rebuilt against the new torch


def test_torch_that_does_not_import_is_refused():
    plan = decide(env(torch_import=False, torch_error='OSError: libfoo'))
    assert plan['refused']
    assert 'does not import' in line(plan, 'refuse torch')


# ------------------------------------------------------------- torchvision
def test_torchvision_for_another_torch_is_replaced():
    plan = decide(env(torch='2.13.0', torchvision='0.29.1',
                      torchvision_requires='>=2.14.0'))
    assert plan['torchvision'] == 'install'
    assert plan['torchvision_spec'] == 'torchvision==0.28.0'
    assert 'torchvision==' not in ' '.join(plan['constraints'])


def test_missing_torchvision_is_installed_to_match():
    plan = decide(env(torch='2.13.0+cpu', torchvision=None))
    assert plan['torchvision_spec'] == 'torchvision==0.28.0'


def test_broken_torchvision_of_the_right_release_is_refused():
    facts = env(torch='2.13.0+cpu', torch_cuda=None, torchvision='0.28.0',
                torchvision_import=False, torchvision_requires='==2.13.0')
    plan = decide(facts)
    assert plan['refused'] and plan['torchvision'] == 'refuse'
    assert '--no-torchvision' in line(plan, 'refuse torchvision')
    # without torchvision only where none is installed: a broken one
    # breaks the imports of mmseg and mmdet
    plan = decide(facts, skip_torchvision=True)
    assert plan['refused'] and 'uninstall' in line(plan, 'refuse torchvision')
    plan = decide(env(torchvision=None), skip_torchvision=True)
    assert not plan['refused'] and plan['torchvision'] == 'skip'


# -------------------------------------------------------------------- mmcv
def test_mmcv_without_ops_is_built():
    plan = decide(env(mmcv_ops=False, mmcv_error='ImportError: _ext'))
    assert plan['mmcv'] == 'build'
    assert 'without loadable compiled ops' in line(plan, 'build mmcv 2.1.0')
    assert 'mmcv==' not in ' '.join(plan['constraints'])
    assert 'mmcv>=2.1.0,<2.2.0' in plan['constraints']


def test_mmcv_missing_a_python_requirement_is_not_rebuilt():
    plan = decide(env(mmcv_ops=False, mmcv_missing_module='cv2',
                      mmcv_error="ModuleNotFoundError: No module named 'cv2'"))
    assert plan['mmcv'] == 'deps' and plan['mmcv_pin'] == 'mmcv==2.1.0'
    assert 'mmcv==2.1.0' in plan['constraints']


def test_mmcv_outside_range_is_replaced():
    plan = decide(env(mmcv='2.2.0'))
    assert plan['mmcv'] == 'build'
    assert '2.2.0 outside mmcv>=2.1.0,<2.2.0' in line(plan, 'build mmcv')


def test_mmcv_absent_reuses_a_cached_wheel():
    plan = decide(env(mmcv=None), found=('/c/mmcv-2.1.0.whl', 'cpu'))
    assert plan['mmcv'] == 'reuse' and plan['mmcv_wheel'] == '/c/mmcv-2.1.0.whl'
    assert plan['setuptools_spec'] == ''  # nothing to build


def test_cpu_ops_mmcv_is_rebuilt_where_a_gpu_is_visible():
    facts = env(cuda_available=True)
    plan = decide(facts)
    assert plan['mmcv'] == 'build' and plan['mmcv_cuda_ops']
    assert 'without CUDA ops' in line(plan, 'build mmcv')
    # FORCE_CUDA=1 asks for CUDA ops without a GPU too
    assert decide(env(), force_cuda=True)['mmcv'] == 'build'
    # a CPU torch never needs them
    assert decide(env(torch_cuda=None), force_cuda=True)['mmcv'] == 'keep'


def test_cuda_mmcv_is_kept_where_a_gpu_is_visible():
    plan = decide(env(cuda_available=True, mmcv_ops_cuda='13.0',
                      mmcv_cuda_nms=True))
    assert line(plan, 'keep mmcv') == 'keep mmcv 2.1.0 (compiled ops, CUDA 13.0)'


def test_missing_mmcv_requirements_are_installed():
    plan = decide(env(opencv=False, versions={'addict': None}))
    assert 'addict' in plan['pip_specs']
    assert 'opencv-python-headless' in plan['pip_specs']


# -------------------------------------------------------------- setuptools
def test_setuptools_untouched_unless_mmcv_is_built():
    plan = decide(env(setuptools='84.2.1', pkg_resources=False))
    assert plan['setuptools_spec'] == ''
    assert line(plan, 'keep setuptools') == \
        'keep setuptools 84.2.1 (no mmcv build)'


def test_setuptools_for_the_mmcv_build():
    plan = decide(env(mmcv=None, setuptools='84.2.1', pkg_resources=False))
    assert plan['setuptools_spec'] == 'setuptools>=77.0.3,<81'
    plan = decide(env(mmcv=None, setuptools='80.10.2'))
    assert plan['setuptools_spec'] == ''
    assert line(plan, 'keep setuptools') == 'keep setuptools 80.10.2'


# ------------------------------------------------------ OpenMMLab libraries
def test_requirement_ranges_come_from_requirements_files():
    assert REQUIREMENTS['mmsegmentation'][0] == 'mmsegmentation>=1.2.2,<1.3.0'
    assert REQUIREMENTS['mmcv'][1] == '>=2.1.0,<2.2.0'
    assert 'pytest' in REQUIREMENTS and 'onnxruntime' in REQUIREMENTS


def test_mmseg_in_range_kept_absent_or_outside_installed():
    plan = decide(env())
    assert line(plan, 'keep mmsegmentation') == \
        'keep mmsegmentation 1.2.2 (mmsegmentation>=1.2.2,<1.3.0)'
    plan = decide(env(versions={'mmsegmentation': None}))
    assert plan['pip_specs'] == ['mmsegmentation>=1.2.2,<1.3.0']
    assert line(plan, 'install mmsegmentation>=1.2.2,<1.3.0') == \
        'install mmsegmentation>=1.2.2,<1.3.0 (not installed)'
    plan = decide(env(versions={'mmsegmentation': '1.1.0'}))
    assert plan['pip_specs'] == ['mmsegmentation>=1.2.2,<1.3.0']
    # the kept torch and mmcv are held while pip installs it
    assert {'torch==2.14.1', 'mmcv==2.1.0'} <= set(plan['constraints'])


def test_mmrep_editable_install():
    plan = decide(env(mmrep_editable=False))
    assert plan['mmrep'] == 'install' and not plan['done']


# ------------------------------------------------------------------- cache
def test_cache_keys():
    assert ip.cache_dir_name('2.13.0+cpu', None, False) == 'torch-2.13.0-cpu'
    assert ip.cache_dir_name('2.14.1', '13.0', True) == 'torch-2.14.1-cu130'
    assert ip.cache_dir_name('2.14.1+cu130', '13.0', False) == \
        'torch-2.14.1-cu130-cpuops'
    assert ip.legacy_dir_name('2.14.1+cu130') == 'torch-2.14.1_cu130'


def fake_wheel(path, cuda):
    os.makedirs(osp.dirname(path), exist_ok=True)
    body = b'\0ELF' + b'x' * 100 + (b'libc10_cuda.so\0' if cuda else b'') + \
        b'libtorch_cpu.so\0'
    with zipfile.ZipFile(path, 'w') as zf:
        zf.writestr('mmcv/_ext.cpython-311-x86_64-linux-gnu.so', body)
        zf.writestr('mmcv/__init__.py', '')
    return path


WHEEL = 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl'


def test_classify_wheel(tmp_path):
    assert ip.classify_wheel(fake_wheel(str(tmp_path / 'a' / WHEEL),
                                        True)) == 'cuda'
    assert ip.classify_wheel(fake_wheel(str(tmp_path / 'b' / WHEEL),
                                        False)) == 'cpu'


def test_cpu_ops_wheel_never_used_where_cuda_ops_are_needed(tmp_path):
    cache = str(tmp_path)
    facts = {'torch': '2.14.1', 'torch_cuda': '13.0'}
    cpuops = fake_wheel(osp.join(cache, 'wheels', 'torch-2.14.1-cu130-cpuops',
                                 WHEEL), False)
    # mislabelled: a CPU-ops wheel in the CUDA folder is not taken either
    fake_wheel(osp.join(cache, 'wheels', 'torch-2.14.1-cu130', WHEEL), False)
    assert ip.find_cached_wheel(cache, facts, True, '2.1.0') is None
    assert ip.find_cached_wheel(cache, facts, False, '2.1.0')[1] == 'cpu'
    os.remove(osp.join(cache, 'wheels', 'torch-2.14.1-cu130', WHEEL))
    assert ip.find_cached_wheel(cache, facts, False, '2.1.0') == (cpuops,
                                                                  'cpu')
    cuda = fake_wheel(osp.join(cache, 'wheels', 'torch-2.14.1-cu130', WHEEL),
                      True)
    assert ip.find_cached_wheel(cache, facts, True, '2.1.0') == (cuda, 'cuda')
    # another torch release, another key
    assert ip.find_cached_wheel(cache, {'torch': '2.13.0', 'torch_cuda':
                                        '13.0'}, False, '2.1.0') is None


def test_legacy_cache_is_found_and_moved_under_its_key(tmp_path):
    cache = str(tmp_path)
    facts = {'torch': '2.14.1+cu130', 'torch_cuda': '13.0'}
    legacy = fake_wheel(osp.join(cache, 'wheels', 'torch-2.14.1_cu130', WHEEL),
                        False)
    assert ip.find_cached_wheel(cache, facts, True, '2.1.0') is None
    assert ip.find_cached_wheel(cache, facts, False, '2.1.0') == (legacy,
                                                                  'cpu')
    moved = ip.place_wheel(legacy, cache, facts)
    assert moved == osp.join(cache, 'wheels', 'torch-2.14.1-cu130-cpuops',
                             WHEEL)
    assert osp.exists(moved) and not osp.exists(osp.dirname(legacy))
    assert ip.place_wheel(moved, cache, facts) == moved  # already in place


# -------------------------------------------------------------- the CLI
def test_plan_cli_writes_shell_variables(tmp_path):
    facts = tmp_path / 'facts.json'
    facts.write_text(json.dumps(env(versions={'mmdet': None, 'ftfy': None})))
    out = tmp_path / 'plan.sh'
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'install_plan.py'), 'plan',
         '--root', REPO, '--cache', str(tmp_path), '--torch-supported',
         '>=2.5', '--torch-tested', '2.13.0 2.14.1', '--torch-default',
         '2.14.1', '--torchvision-default', '0.29.1', '--mmcv-build', '2.1.0',
         '--setuptools-max', '81', '--facts', str(facts), '--vars-out',
         str(out), '--changes-only'],
        capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines() == [
        '[install] install mmdet>=3.3.0,<3.4.0 (not installed)',
        '[install] install ftfy (not installed)']
    shown = subprocess.run(
        ['bash', '-c', f'. {out}; printf "%s|" "${{PLAN_PIP_SPECS[@]}}"; '
         'echo "$PLAN_TORCH $PLAN_MMCV $PLAN_DONE"'],
        capture_output=True, text=True, check=True).stdout
    assert shown == 'mmdet>=3.3.0,<3.4.0|ftfy|keep keep 0\n'


def test_mmdeploy_is_installed_without_its_pins(tmp_path):
    """requirements/mmdeploy.txt goes to pip with --no-deps (mmdeploy 1.3.1
    pins protobuf<=3.20.2 and an old onnx), apart from the other specs; a
    missing mmdeploy keeps the plan from being done."""
    plan = decide(env(versions={'mmdeploy': None}))
    assert plan['no_deps_specs'] == ['mmdeploy==1.3.1']
    assert 'mmdeploy==1.3.1' not in plan['pip_specs'] and not plan['done']
    assert line(plan, 'install mmdeploy==1.3.1') == \
        'install mmdeploy==1.3.1 without its dependencies (not installed)'
    kept = decide(env())
    assert kept['no_deps_specs'] == [] and kept['done']
    assert line(kept, 'keep mmdeploy') == 'keep mmdeploy 1.3.1 (mmdeploy==1.3.1)'
    shown = subprocess.run(
        ['bash', '-c', ip.shell_vars(plan) +
         'printf "%s|" "${PLAN_NO_DEPS_SPECS[@]}"'],
        capture_output=True, text=True, check=True).stdout
    assert shown == 'mmdeploy==1.3.1|'
    with open(osp.join(REPO, 'tools', 'install.sh')) as f:
        assert '$PIP install -q --no-deps "${PLAN_NO_DEPS_SPECS[@]}"' in \
            f.read()


# The installer run as a process; the decisions are checked in-process
# above, and make test-fast runs the installer itself first.
@pytest.mark.slow
def test_dry_run_on_this_machine_keeps_the_installed_stack():
    """The installer, run for real (dry) on this interpreter: the stack
    `make test` installed is kept whole."""
    proc = subprocess.run(
        ['bash', osp.join(REPO, 'tools', 'install.sh'), '--dry-run'],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHON=sys.executable))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    torch_version = metadata.version('torch').split('+')[0]
    assert any(x.startswith(f'[install] keep torch {torch_version} (')
               for x in lines), lines
    if torch_version == '2.14.1':
        assert '[install] keep torch 2.14.1 (cu130, tested)' in lines or \
            any('keep torch 2.14.1 (cpu, tested)' in x for x in lines)
    changes = [x for x in lines if x.startswith('[install] ') and
               not x.startswith(('[install] keep ', '[install] skip ')) and
               x != '[install] dry run: nothing changed']
    assert changes == [], changes
