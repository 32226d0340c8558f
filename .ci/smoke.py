"""Smoke test of an installed (non-editable) mmrep, run by .ci/run with the
interpreter of a virtualenv that holds the built wheel, from a directory
outside the checkout.

usage: python smoke.py CHECKOUT SDIST

Checks that the mmrep imported is the wheel's copy (not the checkout that an
editable install of the base environment points to), that its ``.mim``
holds real copies of configs/, tools/ and model-index.yml, that an
``mmrep::`` config reads and its model builds and runs one forward, and
that the sdist holds what a build from it needs and the docs/ pages
README.md links to.
"""
import glob
import importlib.metadata
import json
import os
import os.path as osp
import sys
import tarfile
import time


def check(condition, message):
    if not condition:
        sys.exit(f'smoke: FAILED: {message}')


def inside(path, folder):
    path, folder = osp.realpath(path), osp.realpath(folder)
    return osp.commonpath([path, folder]) == folder


def check_installed_copy(checkout):
    import mmrep
    check(inside(mmrep.__file__, sys.prefix),
          f'mmrep imported from {mmrep.__file__}, not from {sys.prefix}')
    check(not inside(mmrep.__file__, checkout),
          f'mmrep imported from the checkout ({mmrep.__file__})')
    dist = importlib.metadata.distribution('mmrep')
    direct = dist.read_text('direct_url.json')
    check(not (direct and json.loads(direct).get('dir_info', {}).get(
        'editable')), 'the mmrep distribution found is an editable install')
    check(dist.version == mmrep.__version__,
          f'metadata {dist.version} != mmrep.__version__ '
          f'{mmrep.__version__}')
    mim = osp.join(osp.dirname(mmrep.__file__), '.mim')
    for name in ('configs', 'tools', 'model-index.yml',
                 'tools/train.py', 'tools/test.py'):
        path = osp.join(mim, name)
        check(osp.exists(path) and not osp.islink(path),
              f'{path} missing or a link')
    shipped = {osp.relpath(p, osp.join(mim, 'configs')) for p in
               glob.glob(osp.join(mim, 'configs', '**', '*.py'),
                         recursive=True)}
    expected = {osp.relpath(p, osp.join(checkout, 'configs')) for p in
                glob.glob(osp.join(checkout, 'configs', '**', '*.py'),
                          recursive=True)}
    check(shipped == expected,
          f'configs differ from the checkout: {shipped ^ expected}')
    return mmrep


def check_config_and_model(mmrep):
    import torch
    from mmengine.registry import init_default_scope
    from mmrep.apis.config import read_config
    name = ('mmrep::cityscapes/'
            'upernet_repmlpnet-t224_8xb2-80k_cityscapes-512x1024.py')
    cfg = read_config(name)
    check(inside(cfg.filename, osp.dirname(mmrep.__file__)),
          f'{name} read from {cfg.filename}')
    check(cfg.model.backbone.type == 'mmrep.RepMLPNet',
          f'backbone {cfg.model.backbone.type}')
    # No weights: the backbone's init_cfg may name an ImageNet checkpoint.
    cfg.model.backbone.pop('init_cfg', None)
    cfg.model.pop('pretrained', None)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    from mmseg.registry import MODELS
    model = MODELS.build(cfg.model).eval()
    with torch.no_grad():
        # 256x512: stage maps the config's partitions (64, 32, 16, 8) divide
        out = model(torch.rand(1, 3, 256, 512), mode='tensor')
    check(tuple(out.shape) == (1, 19, 64, 128), f'output {tuple(out.shape)}')


def check_sdist(sdist, checkout):
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    root = names[0].split('/')[0]
    members = {n[len(root) + 1:] for n in names if n.startswith(root + '/')}
    for name in ('LICENSE', 'NOTICE', 'README.md', 'MANIFEST.in',
                 'model-index.yml', 'setup.py', 'pyproject.toml',
                 'tools/train.py', 'tools/test.py', 'tools/dist_train.sh'):
        check(name in members, f'{name} missing from {sdist}')
    for kind in ('requirements', 'configs', 'docs'):
        expected = {osp.relpath(p, checkout) for p in glob.glob(
            osp.join(checkout, kind, '**', '*'), recursive=True)
            if osp.isfile(p) and '__pycache__' not in p}
        missing = expected - members
        check(not missing, f'missing from {sdist}: {sorted(missing)}')
    check(not any(m.startswith('mmrep/.mim') for m in members),
          'the sdist holds mmrep/.mim (setup.py makes it)')


def main():
    checkout, sdist = sys.argv[1:3]
    start = time.time()
    check(not inside(os.getcwd(), checkout),
          f'run from {os.getcwd()}, inside the checkout')
    mmrep = check_installed_copy(checkout)
    check_config_and_model(mmrep)
    check_sdist(sdist, checkout)
    print(f'smoke: ok: mmrep {mmrep.__version__} from '
          f'{osp.dirname(mmrep.__file__)} ({time.time() - start:.0f} s)')


if __name__ == '__main__':
    main()
