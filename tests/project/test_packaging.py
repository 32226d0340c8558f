"""mmrep as a package: ``mmrep::`` config names (mmrep/utils/config_names.py),
the metadata setup.py declares against requirements/*.txt, the ``.mim``
folder setup.py builds, and the license files."""
import filecmp
import glob
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import REPO, zoo_configs
from mmengine.config import Config
from packaging.requirements import Requirement

import mmrep
from mmrep.apis import ConfigReadError, read_config

CITYSCAPES = ('cityscapes/'
              'upernet_repmlpnet-t224_8xb2-80k_cityscapes-512x1024.py')
DEMO = ('cityscapes/'
        'demo_upernet_repmlpnet-tiny_1xb8-cpu_cityscapes-synthetic.py')


def load_setup():
    """setup.py as a module (its ``setup()`` call runs only as a script)."""
    spec = importlib.util.spec_from_file_location(
        'mmrep_setup', osp.join(REPO, 'setup.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- mmrep:: names ---------------------------------------------------------

@pytest.mark.parametrize('name, backbone', [
    (CITYSCAPES, 'mmrep.RepMLPNet'),  # mmseg:: bases
    ('coco/retinanet_repmlpnet-t224_fpn_1x_coco.py', 'mmrep.RepMLPNet'),
    ('imagenet/repvgg-a0_8xb32_in1k.py', 'mmrep.RepVGG'),  # mmpretrain::
])
def test_read_config_reads_mmrep_names(name, backbone):
    cfg = read_config(f'mmrep::{name}')
    assert cfg.model.backbone.type == backbone
    # the file read is the package's copy of (or link to) configs/<name>
    assert osp.dirname(osp.dirname(osp.dirname(cfg.filename))) == osp.join(
        osp.dirname(mmrep.__file__), '.mim')
    assert filecmp.cmp(cfg.filename, osp.join(REPO, 'configs', name),
                       shallow=False)


def test_read_config_refuses_unknown_names():
    with pytest.raises(ConfigReadError, match='no-such-config'):
        read_config('mmrep::cityscapes/no-such-config.py')
    with pytest.raises(ConfigReadError, match='does not support'):
        read_config('mmnothing::a/b.py')


def test_fromfile_is_mmengines_own():
    """``import mmrep`` leaves ``Config.fromfile`` as mmengine defines it
    (a ``package::path`` name given directly goes to read_config)."""
    assert not hasattr(Config.fromfile, '__wrapped__')
    assert Config.fromfile.__module__ == 'mmengine.config.config'


def test_base_names_build_a_model(tmp_path):
    """``_base_ = ['mmrep::...']`` from a config outside the repository; the
    model it describes builds and runs."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    child = tmp_path / 'child.py'
    child.write_text(f"_base_ = ['mmrep::{DEMO}']\n"
                     'model = dict(decode_head=dict(channels=32))\n')
    cfg = Config.fromfile(str(child))
    assert cfg.model.backbone.type == 'mmrep.RepMLPNet'
    assert cfg.model.decode_head.channels == 32  # the child's
    assert cfg.model.auxiliary_head.channels == 32  # the demo's
    assert cfg.data_root == 'data/demo_cityscapes'
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 128), mode='tensor')
    assert out.shape == (1, 19, 16, 32)


def test_mmrep_registries_survive_the_registration():
    """mmengine imports ``mmrep.utils.register_all_modules`` for a registry
    of a ``MODULE2PACKAGE`` scope without ``locations``."""
    from mmengine.config.utils import MODULE2PACKAGE
    from mmengine.utils import get_installed_path, is_installed

    from mmrep import registry
    assert 'mmrep' in MODULE2PACKAGE
    assert is_installed(MODULE2PACKAGE['mmrep'])
    assert get_installed_path(MODULE2PACKAGE['mmrep']) == osp.dirname(
        mmrep.__file__)
    for name in dir(registry):
        reg = getattr(registry, name)
        if isinstance(reg, type(registry.MODELS)) and reg.scope == 'mmrep':
            assert reg._locations, f'{name} has no locations'
    assert registry.CHECKPOINT_LOADERS.get('pretrained') is \
        mmrep.load_pretrained
    from mmrep.checkpoints.readers import read_framework_checkpoint
    assert registry.CHECKPOINT_LOADERS.get('framework_file') is \
        read_framework_checkpoint


# --- setup.py ---------------------------------------------------------------

def requirement_set(lines):
    return {(Requirement(line).name.lower(), Requirement(line).specifier)
            for line in lines}


def requirements_file(name):
    with open(osp.join(REPO, 'requirements', name)) as f:
        return requirement_set(
            line.split('#')[0].strip() for line in f
            if line.split('#')[0].strip())


@pytest.fixture(scope='module')
def egg_info(tmp_path_factory):
    """The ``mmrep.egg-info`` folder of one ``setup.py egg_info`` run."""
    out = tmp_path_factory.mktemp('egg')
    proc = subprocess.run(
        [sys.executable, 'setup.py', '-q', 'egg_info', '--egg-base',
         str(out)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out / 'mmrep.egg-info'


@pytest.fixture(scope='module')
def declared(egg_info):
    """What setup.py declares, from ``setup.py egg_info``: the version and
    ``{None: install_requires, extra: requirements}``."""
    info = egg_info
    sections, current = {None: []}, None
    for line in (info / 'requires.txt').read_text().splitlines():
        line = line.strip()
        if line.startswith('['):
            current = line[1:-1]
            sections[current] = []
        elif line:
            sections[current].append(line)
    fields = dict(line.split(': ', 1) for line in
                  (info / 'PKG-INFO').read_text().splitlines()
                  if ': ' in line and not line.startswith(' '))
    return fields, {k: requirement_set(v) for k, v in sections.items()}


def test_setup_declares_the_requirements_files(declared):
    fields, requires = declared
    assert fields['Version'] == mmrep.__version__
    assert requires[None] == requirements_file('runtime.txt')
    assert requires['tests'] == requirements_file('tests.txt')
    assert requires['deploy'] == requirements_file('deploy.txt')
    assert requires['mim'] == requirements_file('mminstall.txt')
    downstream = requirements_file('downstream.txt')
    assert requires['seg'] | requires['det'] | requires['pretrain'] == \
        downstream
    names = {extra: {name for name, _ in requires[extra]}
             for extra in ('seg', 'det', 'pretrain')}
    assert 'mmsegmentation' in names['seg']
    assert names['det'] == {'mmdet'}
    assert names['pretrain'] == {'mmpretrain'}
    assert requires['all'] == (requires['tests'] | requires['deploy'] |
                               downstream)
    # the ranges, not bare names, reach the metadata
    ranged = {name: str(spec) for name, spec in
              requires[None] | requires['mim'] | downstream}
    assert ranged['mmcv'] == '<2.2.0,>=2.1.0'
    # mmcv comes with its compiled ops from mim (or tools/install.sh), never
    # as a source build that a plain ``pip install`` would start
    assert 'mmcv' not in {name for name, _ in requires[None]}
    assert ranged['mmsegmentation'] == '<1.3.0,>=1.2.2'


def test_sdist_ships_readme_and_docs(egg_info):
    """The sdist's file list (``SOURCES.txt``, what MANIFEST.in selects)
    holds README.md and every page of docs/, which README.md links to."""
    sources = set((egg_info / 'SOURCES.txt').read_text().split())
    docs = {osp.relpath(p, REPO) for p in
            glob.glob(osp.join(REPO, 'docs', '**', '*.md'), recursive=True)}
    assert docs, 'no docs/ pages found'
    assert 'README.md' in sources
    assert not docs - sources, sorted(docs - sources)


def test_editable_install_links_mim(tmp_path, monkeypatch):
    setup = load_setup()
    monkeypatch.setattr(setup, 'HERE', str(tmp_path))
    for name in ('configs', 'tools'):
        (tmp_path / name).mkdir()
    (tmp_path / 'model-index.yml').write_text('Import: []\n')
    (tmp_path / 'mmrep').mkdir()
    monkeypatch.setattr(sys, 'argv', ['setup.py', 'bdist_wheel'])
    setup.add_mim_extension()
    assert not (tmp_path / 'mmrep' / '.mim').exists()
    monkeypatch.setattr(sys, 'argv', ['setup.py', 'editable_wheel'])
    setup.add_mim_extension()
    setup.add_mim_extension()  # again: links replaced, no error
    for name in ('configs', 'tools', 'model-index.yml'):
        link = tmp_path / 'mmrep' / '.mim' / name
        assert link.is_symlink() and link.resolve() == tmp_path / name


def test_build_copies_mim(tmp_path):
    """A non-editable build puts real copies of configs/, tools/ and
    model-index.yml into mmrep/.mim."""
    proc = subprocess.run(
        [sys.executable, 'setup.py', '-q', 'build_py', '--build-lib',
         str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    mim = tmp_path / 'mmrep' / '.mim'
    assert not any(p.is_symlink() for p in [mim, *mim.rglob('*')])
    cmp = filecmp.dircmp(str(mim / 'configs'), osp.join(REPO, 'configs'))
    stack = [cmp]
    while stack:
        c = stack.pop()
        assert not (c.left_only or c.right_only or c.diff_files), c.report()
        stack.extend(c.subdirs.values())
    assert (mim / 'tools' / 'train.py').is_file()
    assert (mim / 'tools' / 'test.py').is_file()
    assert (mim / 'model-index.yml').read_text() == \
        open(osp.join(REPO, 'model-index.yml')).read()


# --- model-index and license ------------------------------------------------

def test_model_index_lists_every_config_through_mim():
    """Each model of model-index.yml, read from mmrep/.mim as mim and
    mmengine read it, names a config that exists there; together they are
    every config of configs/ except the demos, _base_ files and the
    mmdeploy deploy configs (configs/mmdeploy: no models)."""
    mim = osp.join(osp.dirname(mmrep.__file__), '.mim')
    with open(osp.join(mim, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    listed = set()
    for metafile in index['Import']:
        with open(osp.join(mim, metafile)) as f:
            meta = yaml.safe_load(f)
        collections = {c['Name'] for c in meta['Collections']}
        for model in meta['Models']:
            assert model['In Collection'] in collections
            assert model['Config'].startswith('configs/')
            assert osp.isfile(osp.join(mim, model['Config']))
            listed.add(model['Config'])
    configs = zoo_configs()
    assert listed == configs
    # mim search reads the index with the model-index package
    load = pytest.importorskip('modelindex.load_model_index').load
    models = load(osp.join(mim, 'model-index.yml')).models
    assert {m.config for m in models} == configs


def test_license_is_apache_2():
    with open(osp.join(REPO, 'LICENSE')) as f:
        text = f.read()
    assert text.startswith('Copyright 2026 mmrep contributors')
    for phrase in ('Apache License', 'Version 2.0, January 2004',
                   'TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND '
                   'DISTRIBUTION', '9. Accepting Warranty or Additional '
                   'Liability.', 'END OF TERMS AND CONDITIONS'):
        assert phrase in text
    assert len(text.split()) > 1500  # the whole text, not a pointer to it
    with open(osp.join(REPO, 'NOTICE')) as f:
        notice = f.read()
    for release in ('DingXiaoH/RepMLP', 'DingXiaoH/RepVGG',
                    'ShoufaChen/CycleMLP'):
        assert f'https://github.com/{release}\n  MIT License' in notice
    assert 'mmpretrain' in notice


def test_metadata_license(declared):
    fields, _ = declared
    assert fields['License'] == 'Apache-2.0'
    with open(osp.join(REPO, 'MANIFEST.in')) as f:
        manifest = f.read().split()
    for entry in ('LICENSE', 'NOTICE', 'model-index.yml',
                  'requirements/*.txt', 'configs', 'tools'):
        assert entry in manifest
