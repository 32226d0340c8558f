"""tools/model_table.py: the classifier of every preset has exactly the
original release's parameter count (1000-class head), train-time and, where
the listings give it, fused; and the table is produced."""
import json
import os.path as osp

import pytest

from conftest import FIXTURES
from tool_runner import load_tool

from mmrep.apis import model_table as table
from mmrep.checkpoints import CHECKPOINT_FAMILIES

# Original release names -> (family, mmrep preset).
RENAME = {
    'RepMLP-Res50-Bottleneck-224-g8': 'bottleneck-224',
    'RepMLP-Res50-Light-224-g4': 'light-224',
}


def original_counts():
    """``(family, arch, form, count)`` for every count in the listings."""
    cases = []
    for family, listing in (('repmlpnet', 'repmlpnet'), ('repvgg', 'repvgg'),
                            ('repmlp-res50', 'repmlp_res50'),
                            ('cyclemlp', 'cyclemlp')):
        with open(osp.join(FIXTURES, f'{listing}_full_keys.json')) as f:
            data = json.load(f)
        for name, entry in data.items():
            arch = RENAME.get(name, name.split('-')[-1].split('_')[-1])
            for key, form in (('params_train', 'train'), ('params', 'train'),
                              ('params_deploy', 'deploy')):
                if key in entry:
                    cases.append((family, arch, form, entry[key]))
    return cases


CASES = original_counts()


def test_every_listed_model_is_a_preset():
    assert len(CASES) >= 6 + 11 * 2 + 2 * 2 + 5
    for family, arch, _, _ in CASES:
        assert arch in CHECKPOINT_FAMILIES[family].model.arch_zoo
    assert {(f, a) for f, a, _, _ in CASES} <= {
        (f, a) for f, a, _ in table.presets()}


@pytest.mark.parametrize('family,arch,form,expected', CASES,
                         ids=[f'{c[0]}-{c[1]}-{c[2]}' for c in CASES])
def test_parameter_count_equals_original(family, arch, form, expected):
    model = table.build_classifier(family, arch, deploy=(form == 'deploy'),
                                   device='meta')
    assert table.count_params(model) == expected


def test_table_row_and_markdown():
    numbers = table.measure('repvgg', 'A0', 64, speed=True, batch=2,
                            iters=1)
    assert numbers['params'] == 9108968
    assert numbers['fused_params'] == 8309384
    # RepVGG-A0 costs 1.36 GFLOPs at 224x224; 64x64 is 12.25x fewer pixels
    # (the classifier head's 1.28 MFLOPs aside).
    assert 1.0e8 < numbers['flops'] < 1.2e8
    assert numbers['throughput'] > 0
    text = table.markdown([('repvgg', 'A0', 64, numbers)], speed=True,
                          batch=2)
    lines = text.splitlines()
    assert lines[0].startswith('| model | input | params (M)')
    assert lines[2].startswith('| RepVGG-A0 | 64x64 | 9.11 | 8.31 |')


def test_tool_refuses_an_unknown_family(tmp_path):
    out = tmp_path / 'table.md'
    with pytest.raises(SystemExit) as err:
        load_tool('model_table').main(['--families', 'repvgg,vit',
                                       '--out', str(out)])
    assert err.value.code == (
        "error: unknown families ['vit']; choose from ['repvgg', "
        "'repmlpnet', 'repmlp-res50', 'cyclemlp']")
    assert not out.exists()
