"""Every library's way of fusing gives mmrep's fused model.

mmpretrain's converter, mmdeploy and the OpenMMLab projects call
``switch_to_deploy()`` on the backbone; timm's ``reparameterize_model``
calls ``reparameterize()`` on every module below the root, parents first;
mmrep's walker calls it children first. For every registered family (at its
tiny arch, random BN statistics, a frozen first stage) each of them gives
the same state dict, bit for bit, the same ``deploy`` flags and the same
trainability as :func:`mmrep.reparameterize_model`, and calling any of them
again changes nothing. (A backbone without branches, CycleMLP, has one
form; timm's walk never calls the root, so its ``deploy`` flag keeps what
was asked, and its state is the train-time one.)
"""
import copy
import os.path as osp
import subprocess
import sys

import pytest
import torch
from conftest import REPO, assert_close, build_classifier
from test_backbone_contract import FAMILIES, build, image, tiny_arch

import mmrep
from mmrep.models.layers import Reparameterizable, has_unfused
from mmrep.utils.testing import randomize_bn


@pytest.fixture(params=sorted(FAMILIES))
def family(request):
    return FAMILIES[request.param]


def train_time(family):
    """The family at its tiny arch, BN statistics drawn, first stage
    frozen, eval mode."""
    return randomize_bn(build(family, frozen_stages=1)).eval()


def timm_walk(model):
    from timm.utils.model import reparameterize_model
    return reparameterize_model(model)  # a fused deep copy


def switch_to_deploy(model):
    model = copy.deepcopy(model)
    model.switch_to_deploy()
    return model


def parents_first(model):
    """``reparameterize()`` on every module, parents before children."""
    model = copy.deepcopy(model)
    for module in list(model.modules()):
        if isinstance(module, Reparameterizable):
            module.reparameterize()
    return model


WALKS = {'timm': timm_walk, 'switch_to_deploy': switch_to_deploy,
         'parents_first': parents_first}


def same_fused_model(actual, expected, what):
    """Same keys, bit-equal tensors, the same requires_grad and every
    re-parameterizable module fused."""
    a, e = actual.state_dict(), expected.state_dict()
    assert list(a) == list(e), f'{what}: state dict keys differ'
    for key in e:
        assert torch.equal(a[key], e[key]), f'{what}: {key} differs'
    grads = {n: p.requires_grad for n, p in actual.named_parameters()}
    assert grads == {n: p.requires_grad
                     for n, p in expected.named_parameters()}, what
    unfused = [n for n, m in actual.named_modules()
               if n and isinstance(m, Reparameterizable) and not m.deploy]
    assert not unfused, f'{what}: not fused: {unfused}'


@pytest.mark.slow
@pytest.mark.parametrize('walk', sorted(WALKS))
def test_every_walk_gives_mmreps_fused_backbone(family, walk):
    model = train_time(family)
    expected = mmrep.reparameterize_model(model)
    fused = WALKS[walk](model)
    same_fused_model(fused, expected, walk)
    assert not model.deploy  # the train-time model is untouched
    if has_unfused(model)[0]:
        assert fused.deploy, f'{walk} leaves the backbone deploy flag False'
    else:  # nothing to fuse (CycleMLP): the fused form is the train form
        same_fused_model(fused, model, f'{walk} of a backbone without '
                         f'branches')
    with torch.no_grad():
        for f, o in zip(fused(image()), model(image())):
            assert_close(f, o, 1e-4, walk)
    # the first stage stays frozen, whoever fused it
    stem, stages = fused.stem_and_stages()
    frozen = [p for m in [*stem, *stages[0]] for p in m.parameters()]
    assert frozen and not any(p.requires_grad for p in frozen)


@pytest.mark.slow
@pytest.mark.parametrize('walk', ['mmrep', *sorted(WALKS)])
def test_fusing_twice_changes_nothing(family, walk):
    fuse = WALKS.get(walk, mmrep.reparameterize_model)
    once = fuse(train_time(family))
    twice = fuse(once)
    same_fused_model(twice, once, f'{walk} twice')
    again = copy.deepcopy(once)
    for module in again.modules():
        if isinstance(module, Reparameterizable):
            module.reparameterize()
            module.switch_to_deploy()
    same_fused_model(again, once, 'every module again')


def test_a_unit_fuses_its_children_first():
    """The case timm's walk met: a RepMLPNet unit asked to fold prebn2 into
    an ffn_fc1 that nobody fused yet fuses it itself."""
    model = train_time(FAMILIES['RepMLPNet'])
    unit = next(m for m in model.modules()
                if type(m).__name__ == 'RepMLPNetUnit')
    assert not unit.ffn_block.ffn_fc1.deploy
    unit.reparameterize()
    assert unit.deploy and unit.ffn_block.ffn_fc1.deploy
    assert unit.repmlp_block.deploy


def classifier_config(family, path):
    """An mmpretrain classifier config around the family's tiny arch."""
    arch = {k: list(v) if isinstance(v, tuple) else v
            for k, v in tiny_arch(family).items()}
    with torch.no_grad():
        channels = build(family)(image())[-1].shape[1]
    with open(path, 'w') as f:
        f.write(f"""custom_imports = dict(imports=['mmrep'])
default_scope = 'mmpretrain'
model = dict(
    type='ImageClassifier',
    backbone=dict(type='mmrep.{family.__name__}', arch={arch!r},
                  out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=5, in_channels={channels}))
""")
    return channels


@pytest.mark.slow
def test_mmpretrain_converter_gives_mmreps_fused_classifier(family, tmp_path):
    """mmpretrain's own tools/model_converters/reparameterize_model.py (as
    its package ships it) on a classifier with an mmrep backbone writes the
    state dict of :func:`mmrep.reparameterize_model`'s classifier."""
    import mmpretrain
    script = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools',
                      'model_converters', 'reparameterize_model.py')
    config = str(tmp_path / 'classifier.py')
    channels = classifier_config(family, config)
    torch.manual_seed(0)
    model = randomize_bn(build_classifier(
        dict(type=f'mmrep.{family.__name__}', arch=tiny_arch(family),
             out_indices=(3, )), channels, 5)).eval()
    checkpoint, out = tmp_path / 'train.pth', tmp_path / 'fused.pth'
    torch.save({'state_dict': model.state_dict()}, checkpoint)
    run = subprocess.run([sys.executable, script, config, str(checkpoint),
                          str(out)], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    written = torch.load(out, weights_only=True)
    written = written.get('state_dict', written)
    expected = mmrep.reparameterize_model(model).state_dict()
    assert list(written) == list(expected)
    for key, value in expected.items():
        assert torch.equal(written[key], value), key
