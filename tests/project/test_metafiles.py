"""Every config folder has a README with its table and an OpenMMLab
model-index ``metafile.yml`` that lists each of its configs."""
import os.path as osp

import pytest
import yaml
from conftest import REPO, zoo_configs

FOLDERS = ('ade20k', 'camvid', 'cityscapes', 'coco', 'imagenet')
DENSE = ('ade20k', 'camvid', 'cityscapes', 'coco')


def configs_in(folder):
    return {c for c in zoo_configs()
            if c.startswith(osp.join('configs', folder) + osp.sep)}


@pytest.mark.parametrize('folder', FOLDERS)
def test_metafile_lists_every_config(folder):
    with open(osp.join(REPO, 'configs', folder, 'metafile.yml')) as f:
        meta = yaml.safe_load(f)
    collections = {c['Name']: c for c in meta['Collections']}
    for c in collections.values():
        assert c['Paper']['URL'].startswith('https://arxiv.org/abs/')
        assert c['README'] == f'configs/{folder}/README.md'
    models = meta['Models']
    assert {m['Config'] for m in models} == configs_in(folder)
    for m in models:
        assert m['Name'] == osp.basename(m['Config'])[:-3]
        assert m['In Collection'] in collections
        assert m['Metadata']['Batch Size'] > 0
        for result in m.get('Results', []):
            assert all(isinstance(v, float) and 0 < v < 100
                       for v in result['Metrics'].values())


@pytest.mark.parametrize('folder', DENSE)
def test_dense_readme_has_every_config(folder):
    with open(osp.join(REPO, 'configs', folder, 'README.md')) as f:
        readme = f.read()
    for config in configs_in(folder):
        assert f'`{osp.basename(config)}`' in readme, config


def test_model_index_imports_every_metafile():
    with open(osp.join(REPO, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    assert index['Import'] == [f'configs/{folder}/metafile.yml'
                               for folder in FOLDERS]
