"""Version checks at import: the required libraries fail ``import mmrep`` in
one line, an unusable optional library disables only what needs it."""
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

from mmrep import dependencies

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def fake_distribution(root, name, version, module_source=None):
    """A distribution's metadata (and optionally its module) in ``root``,
    found before the installed one when ``root`` leads ``PYTHONPATH``."""
    info = osp.join(root, f'{name.replace("-", "_")}-{version}.dist-info')
    os.makedirs(info)
    with open(osp.join(info, 'METADATA'), 'w') as f:
        f.write(f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n')
    if module_source is not None:
        module, source = module_source
        os.makedirs(osp.join(root, module))
        with open(osp.join(root, module, '__init__.py'), 'w') as f:
            f.write(source)


def run_python(code, pythonpath):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([pythonpath, REPO]))
    return subprocess.run([sys.executable, '-c', code], cwd=pythonpath,
                          env=env, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)


def the_one_line_about_mmseg(proc):
    """The only line of a run's output that names mmsegmentation."""
    lines = [line for line in (proc.stdout + proc.stderr).splitlines()
             if 'mmsegmentation' in line]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize('module,installed,expected', [
    ('mmcv', '2.2.0', 'mmrep needs mmcv>=2.1.0,<2.2.0; mmcv 2.2.0 is '
     'installed'),
    ('mmcv', '2.0.1', 'mmrep needs mmcv>=2.1.0,<2.2.0; mmcv 2.0.1 is '
     'installed'),
    ('mmengine', '1.0.0', 'mmrep needs mmengine>=0.10.7,<1.0.0; mmengine '
     '1.0.0 is installed'),
    ('mmseg', '1.3.0', 'mmrep needs mmsegmentation>=1.2.2,<1.3.0; '
     'mmsegmentation 1.3.0 is installed'),
])
def test_version_outside_range_is_named(module, installed, expected):
    assert dependencies.version_problem(module, installed) == expected


@pytest.mark.parametrize('module,installed', [
    ('mmcv', '2.1.0'), ('mmcv', '2.1.0+cu121'), ('mmengine', '0.10.7'),
    ('mmdet', '3.3.0'), ('mmpretrain', '1.2.0')])
def test_version_inside_range_passes(module, installed):
    assert dependencies.version_problem(module, installed) is None


def test_the_installed_stack_is_supported():
    for module in dependencies.REQUIRED:
        assert dependencies.version_problem(module) is None


def read_requirements(name):
    ranges = {}
    with open(osp.join(REPO, 'requirements', name)) as f:
        for line in f:
            match = re.fullmatch(r'([\w-]+)>=([\w.]+),<([\w.]+)', line.strip())
            if match:
                ranges[match[1]] = (match[2], match[3])
    return ranges


def test_ranges_equal_the_requirements_files():
    declared = {**read_requirements('mminstall.txt'),
                **read_requirements('downstream.txt')}
    checked = {dists[0]: (low, high) for dists, low, high in
               [*dependencies.REQUIRED.values(),
                *dependencies.OPTIONAL.values()]}
    assert checked == declared


def test_unsupported_mmcv_fails_import_in_one_line(tmp_path):
    fake_distribution(str(tmp_path), 'mmcv', '2.2.0')
    proc = run_python('import mmrep', str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        'mmrep.dependencies.IncompatibleVersionError: mmrep needs '
        'mmcv>=2.1.0,<2.2.0; mmcv 2.2.0 is installed')


def test_unsupported_mmseg_disables_only_the_deploy_head(tmp_path):
    fake_distribution(str(tmp_path), 'mmsegmentation', '1.3.0')
    proc = run_python(
        'import torch, mmrep\n'
        'from mmrep.deploy import heads\n'
        'print("UPerHead", heads.UPerHead)\n'
        'print("head type", heads.deploy_head_type("UPerHead"))\n'
        'from mmcv.cnn import ConvModule\n'
        'm = torch.nn.Sequential('
        'ConvModule(3, 4, 3, norm_cfg=dict(type="BN"))).eval()\n'
        'f = mmrep.reparameterize_model(m)\n'
        'print("batchnorms left", sum(isinstance(x, torch.nn.BatchNorm2d)'
        ' for x in f.modules()))\n',
        str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert 'UPerHead None' in proc.stdout
    assert 'head type None' in proc.stdout
    assert 'batchnorms left 0' in proc.stdout
    assert the_one_line_about_mmseg(proc).endswith(
        'mmrep needs mmsegmentation>=1.2.2,<1.3.0; mmsegmentation 1.3.0 is '
        'installed: the deploy form of UPerHead disabled')


def test_mmseg_failing_its_own_check_disables_only_the_deploy_head(tmp_path):
    # mmseg 1.2.2 itself asserts on mmcv >= 2.2 when imported.
    fake_distribution(
        str(tmp_path), 'mmsegmentation', '1.2.2',
        ('mmseg', "raise AssertionError('MMCV==2.2.0 is used but "
         "incompatible. Please install mmcv>=2.0.0rc4, <2.2.0.')\n"))
    proc = run_python('import mmrep\n'
                      'from mmrep.deploy import heads\n'
                      'print("UPerHead", heads.UPerHead)\n', str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert 'UPerHead None' in proc.stdout
    assert the_one_line_about_mmseg(proc).endswith(
        'mmsegmentation fails to import (AssertionError: MMCV==2.2.0 is used '
        'but incompatible. Please install mmcv>=2.0.0rc4, <2.2.0.): the '
        'deploy form of UPerHead disabled')
