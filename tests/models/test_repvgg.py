"""RepVGG: conformance with the original release, presets, checkpoint
conversion, any input size, block fusion. The OpenMMLab switches are
checked in test_backbone_contract.py."""
import json
import os.path as osp

import pytest
import torch
import torch.nn as nn
import conftest
from conftest import (FIXTURES, assert_close, check_pretrained_features,
                      fixture_params, load_fixture, mmrep_arch)

import mmrep
from mmrep.checkpoints import CheckpointMismatchError, convert_state_dict
from mmrep.models.backbones import RepVGG
from mmrep.models.backbones.repvgg import RepVGGBlock
from mmrep.utils.testing import randomize_bn

SMALL = dict(num_blocks=(1, 2, 2, 1), width_multiplier=(0.25, 0.25, 0.25, 0.5),
             group_layer_map={3: 2, 5: 4})


class Classifier(nn.Module):
    """Backbone -> global average pool -> ``head.fc``: the original's
    classifier, with the names mmpretrain's ``LinearClsHead`` uses."""

    def __init__(self, arch, num_classes, deploy=False):
        super().__init__()
        self.backbone = RepVGG(arch, out_indices=(-1, ), deploy=deploy)
        self.head = nn.Module()
        self.head.fc = nn.Linear(self.backbone.channels[-1], num_classes)

    def forward(self, x):
        return self.head.fc(self.backbone(x)[-1].mean((2, 3)))


@fixture_params('repvgg_small_s*.pt')
def test_conformance_with_original(fixture_path, tmp_path):
    fx = load_fixture(fixture_path)
    arch, x = mmrep_arch('repvgg', fx['arch']), fx['input']
    num_classes = fx['arch']['num_classes']
    ckpt = str(tmp_path / 'original.pth')
    torch.save(fx['state_dict'], ckpt)

    # Features: the backbone loads the original file through init_cfg.
    check_pretrained_features(RepVGG, arch, ckpt, x, fx['features'])

    # The original classifier's linear.* becomes the head's fc.*.
    _, head = convert_state_dict(RepVGG, fx['state_dict'])
    assert set(head) == {'fc.weight', 'fc.bias'}
    assert torch.equal(head['fc.weight'], fx['state_dict']['linear.weight'])

    # Logits: a classifier loads the same file, head included.
    clf = Classifier(arch, num_classes)
    assert mmrep.load_pretrained(clf, ckpt) == []
    clf.eval()
    with torch.no_grad():
        assert_close(clf(x), fx['logits'], 1e-4, 'logits')

    # Re-parameterization through the one protocol.
    fused = mmrep.reparameterize_model(clf)
    assert fused.backbone.deploy and not clf.backbone.deploy
    assert fused.backbone._build_args['deploy']
    assert not any('rbr_dense' in k or 'rbr_1x1' in k or 'rbr_identity' in k
                   for k in fused.state_dict())
    with torch.no_grad():
        assert_close(fused(x), fx['deploy_logits'], 1e-4, 'deploy logits')

    # The original's fused checkpoint loads into a deploy model.
    deployed = Classifier(arch, num_classes, deploy=True)
    mmrep.load_pretrained(deployed, fx['deploy_state_dict'])
    deployed.eval()
    with torch.no_grad():
        assert_close(deployed(x), fx['deploy_logits'], 1e-4,
                     'original deploy weights')
    assert {'backbone.' + k for k in fx['deploy_state_dict']
            if not k.startswith('linear.')} == \
        {k for k in deployed.state_dict() if k.startswith('backbone.')}

    # A train-time checkpoint into a deploy model is fused on load.
    fused_on_load = Classifier(arch, num_classes, deploy=True)
    mmrep.load_pretrained(fused_on_load, ckpt)
    fused_on_load.eval()
    with torch.no_grad():
        assert_close(fused_on_load(x), fx['deploy_logits'], 1e-4,
                     'fused on load')


@fixture_params('repvgg_small_s*.pt')
def test_conformance_in_mmpretrain_classifier(fixture_path):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS as MMP_MODELS
    fx = load_fixture(fixture_path)
    arch = mmrep_arch('repvgg', fx['arch'])

    def build(deploy=False):
        init_default_scope('mmpretrain')
        num_classes, channels = fx['state_dict']['linear.weight'].shape
        return MMP_MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='mmrep.RepVGG', arch=arch, out_indices=(-1, ),
                          deploy=deploy),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=num_classes,
                      in_channels=channels)))

    clf = build()
    mmrep.load_pretrained(clf, fx['state_dict'])
    clf.eval()
    with torch.no_grad():
        assert_close(clf(fx['input'], mode='tensor'), fx['logits'], 1e-4,
                     'mmpretrain classifier logits')
        fused = mmrep.reparameterize_model(clf)
        assert_close(fused(fx['input'], mode='tensor'), fx['deploy_logits'],
                     1e-4, 'mmpretrain classifier deploy logits')
    deployed = build(deploy=True)
    mmrep.load_pretrained(deployed, fx['deploy_state_dict'])
    deployed.eval()
    with torch.no_grad():
        assert_close(deployed(fx['input'], mode='tensor'),
                     fx['deploy_logits'], 1e-4, 'original deploy weights')


def _full_keys():
    with open(osp.join(FIXTURES, 'repvgg_full_keys.json')) as f:
        return json.load(f)


_BUFFERS = ('running_mean', 'running_var', 'num_batches_tracked')


def _count_params(shapes):
    return sum(torch.Size(s).numel() for k, s in shapes.items()
               if not k.endswith(_BUFFERS))


def _check_against_listing(name, ref):
    """Train-time and fused key/shape sets and parameter counts of a preset
    (built on the meta device) equal the original's listing."""
    with torch.device('meta'):
        model = RepVGG(name)
    head = {k: v for k, v in ref['train'].items() if k.startswith('linear.')}
    assert set(head) == {'linear.weight', 'linear.bias'}
    n_head = _count_params(head)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {k: v for k, v in ref['train'].items() if k not in head}
    assert sum(p.numel() for p in model.parameters()) + n_head == \
        ref['params_train']

    with torch.device('meta'):
        mmrep.reparameterize_model(model, inplace=True)
        built_fused = RepVGG(name, deploy=True)
    deploy = {k: v for k, v in ref['deploy'].items() if k not in head}
    for m in (model, built_fused):
        assert {k: list(v.shape) for k, v in m.state_dict().items()} == deploy
        assert sum(p.numel() for p in m.parameters()) + n_head == \
            ref['params_deploy']


LISTED = ['A0', 'A1', 'A2', 'B0', 'B1', 'B1g2', 'B1g4', 'B2', 'B2g4', 'B3',
          'B3g4']


@pytest.mark.parametrize('name', LISTED)
def test_preset_matches_original_keys_and_counts(name):
    _check_against_listing(name, _full_keys()[f'RepVGG-{name}'])


@pytest.mark.parametrize('name', ['B2g2', 'B3g2'])
def test_g2_preset_matches_grouped_original(name):
    """The listing lacks B2g2 and B3g2: derive them from B2 / B3 by halving
    the input width of the kernels of blocks 2, 4, .., 26."""
    base = _full_keys()[f'RepVGG-{name[:2]}']
    num_blocks = RepVGG.arch_zoo[name]['num_blocks']
    first = [sum(num_blocks[:i]) + 1 for i in range(len(num_blocks))]

    def grouped(shapes):
        out = {}
        for key, shape in shapes.items():
            parts = key.split('.')
            if len(shape) == 4 and parts[0] != 'stage0':
                layer = first[int(parts[0][len('stage'):]) - 1] + int(parts[1])
                if layer % 2 == 0:
                    shape = [shape[0], shape[1] // 2, *shape[2:]]
            out[key] = shape
        return out

    ref = dict(train=grouped(base['train']), deploy=grouped(base['deploy']))
    ref['params_train'] = _count_params(ref['train'])
    ref['params_deploy'] = _count_params(ref['deploy'])
    assert ref['params_train'] < base['params_train']
    _check_against_listing(name, ref)


def test_a0_parameter_counts():
    with torch.device('meta'):
        model = RepVGG('RepVGG-A0')
    head = 1280 * 1000 + 1000
    assert sum(p.numel() for p in model.parameters()) + head == 9108968
    with torch.device('meta'):
        mmrep.reparameterize_model(model, inplace=True)
    assert sum(p.numel() for p in model.parameters()) + head == 8309384


def test_mmpretrain_checkpoint_converts():
    from mmpretrain.models.backbones import RepVGG as MMPRepVGG
    arch = dict(num_blocks=[1, 2, 2, 1], width_factor=[0.25, 0.25, 0.5, 0.5],
                group_layer_map={2: 2, 5: 2}, se_cfg=None)
    torch.manual_seed(0)
    theirs = randomize_bn(MMPRepVGG(arch, out_indices=(0, 1, 2, 3)))
    theirs.eval()  # mmpretrain's train() does not return the module
    ours = RepVGG(mmrep_arch('repvgg', arch)).eval()
    x = torch.randn(2, 3, 45, 61)
    mmrep.load_pretrained(ours, {'state_dict': {
        'backbone.' + k: v for k, v in theirs.state_dict().items()}})
    with torch.no_grad():
        for i, (a, b) in enumerate(zip(ours(x), theirs(x))):
            assert_close(a, b, 1e-4, f'mmpretrain train form, stage {i + 1}')
        theirs.switch_to_deploy()
        fused = RepVGG(mmrep_arch('repvgg', arch), deploy=True).eval()
        mmrep.load_pretrained(fused, theirs.state_dict())
        for i, (a, b) in enumerate(zip(fused(x), theirs(x))):
            assert_close(a, b, 1e-4, f'mmpretrain fused, stage {i + 1}')


def test_mmpretrain_names_are_converted():
    t = torch.zeros(1)
    state = {
        'stem.branch_3x3.conv.weight': t,
        'stem.branch_3x3.norm.running_var': t,
        'stem.branch_1x1.norm.weight': t,
        'stage_2.1.branch_norm.bias': t,
        'stage_4.0.branch_reparam.weight': t,
        'head.fc.weight': t,
    }
    backbone, head = convert_state_dict(RepVGG, state)
    assert set(backbone) == {
        'stage0.rbr_dense.conv.weight', 'stage0.rbr_dense.bn.running_var',
        'stage0.rbr_1x1.bn.weight', 'stage2.1.rbr_identity.bias',
        'stage4.0.rbr_reparam.weight'}
    assert set(head) == {'fc.weight'}


@pytest.mark.parametrize('groups', [1, 4])
def test_block_fusion_is_exact(groups):
    torch.manual_seed(0)
    block = randomize_bn(RepVGGBlock(8, 8, groups=groups)).eval()
    assert block.rbr_identity is not None
    x = torch.randn(2, 8, 9, 11)
    with torch.no_grad():
        ref = block(x)
        block.reparameterize()
        assert block.deploy and not hasattr(block, 'rbr_dense')
        assert_close(block(x), ref, 1e-5, f'groups={groups}')
    assert RepVGGBlock(8, 8, stride=2).rbr_identity is None
    assert RepVGGBlock(8, 16).rbr_identity is None


@pytest.mark.parametrize('size', [(37, 53), (1, 1), (5, 7), (64, 64)])
def test_any_input_size_runs_and_fuses(size):
    torch.manual_seed(0)
    model = randomize_bn(RepVGG(SMALL)).eval()
    conftest.check_stage_shapes_and_fusion(model, torch.randn(2, 3, *size))


def test_mismatching_checkpoints_name_the_keys():
    model = RepVGG(SMALL)
    other = RepVGG(dict(SMALL, width_multiplier=(0.25, 0.25, 0.25, 0.25)))
    with pytest.raises(CheckpointMismatchError, match='stage4.0'):
        mmrep.load_pretrained(model, other.state_dict())
    fused = RepVGG(SMALL, deploy=True).state_dict()
    with pytest.raises(CheckpointMismatchError, match='deploy=True'):
        mmrep.load_pretrained(model, fused)
    state = dict(model.state_dict())
    del state['stage2.1.rbr_identity.weight']
    with pytest.raises(CheckpointMismatchError,
                       match='stage2.1.rbr_identity.weight'):
        mmrep.load_pretrained(model, state)


def test_bad_arch_is_refused():
    with pytest.raises(ValueError, match='unknown RepVGG arch'):
        RepVGG('C9')
    with pytest.raises(ValueError, match='missing keys'):
        RepVGG(dict(num_blocks=(1, 1, 1, 1)))
    with pytest.raises(ValueError, match='unknown keys'):
        RepVGG(dict(SMALL, depth=3))
    with pytest.raises(ValueError, match='one num_blocks'):
        RepVGG(dict(SMALL, num_blocks=(1, 1, 1)))
    with pytest.raises(ValueError, match='numbered 1..6'):
        RepVGG(dict(SMALL, group_layer_map={7: 2}))
    with pytest.raises(ValueError, match='must divide'):
        RepVGG(dict(SMALL, group_layer_map={2: 3}))
    with pytest.raises(ValueError, match='se_cfg'):
        RepVGG(dict(SMALL, se_cfg=dict(ratio=16)))
    with pytest.raises(ValueError, match='preset name or a dict'):
        RepVGG(3)


def test_preset_names_and_original_arguments():
    a = RepVGG.parse_arch('repvgg-b1G2')
    assert a == RepVGG.parse_arch('B1g2')
    assert a['group_layer_map'][26] == 2 and 27 not in a['group_layer_map']
    # Original constructor names build the same model.
    orig = dict(num_blocks=[1, 2, 2, 1], num_classes=10,
                width_multiplier=[0.25, 0.25, 0.25, 0.5],
                override_groups_map={3: 2, 5: 4})
    assert RepVGG.parse_arch(mmrep_arch('repvgg', orig)) == \
        RepVGG.parse_arch(SMALL)
