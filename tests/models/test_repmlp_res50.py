"""RepMLP v1 (unit, Bottleneck and Light blocks) and RepMLP-Res50:
conformance with the original release, full-size layouts, any input size,
the dilated form, loading. The OpenMMLab switches are checked in
test_backbone_contract.py (here: ``with_cp`` for the light block too)."""
import json
import os.path as osp

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import conftest
from conftest import (FIXTURES, assert_close, check_pretrained_features,
                      fixture_params, load_fixture, mmrep_arch)
from test_backbone_contract import check_with_cp

import mmrep
from mmrep.checkpoints import CheckpointMismatchError
from mmrep.models.backbones import RepMLPResNet
from mmrep.models.backbones.repmlp_resnet import (RepMLPBottleneckBlock,
                                                RepMLPLightBlock,
                                                RepMLPUnit)
from mmrep.utils.testing import randomize_bn


def output_of(fx):
    return fx['logits'] if 'logits' in fx else fx['output']


def small_arch(**kw):
    """Original-style args: c3 grid 2x2 (global perceptron on), c4 grid 1x1."""
    arch = dict(num_blocks=(1, 2, 2, 1), block_type='bottleneck', img_H=64,
                img_W=64, h=4, w=4, reparam_conv_k=(1, 3),
                fc1_fc2_reduction=1, fc3_groups=4)
    arch.update(kw)
    return mmrep_arch('repmlp-res50', arch)


def build_classifier(arch, num_classes, deploy=False, channels=2048):
    """mmpretrain ImageClassifier around an mmrep RepMLPResNet (whose last
    stage has ``channels`` outputs)."""
    return conftest.build_classifier(
        dict(type='mmrep.RepMLPResNet', arch=arch, out_indices=(-1, ),
             deploy=deploy), channels, num_classes)


# --------------------------------------------------------------------------
# Conformance with the original release
# --------------------------------------------------------------------------
def check_module_fixture(fixture_path, cls):
    fx = load_fixture(fixture_path)
    model = cls(**fx['arch'])
    model.load_state_dict(fx['state_dict'], strict=True)
    model.eval()
    x = fx['input']
    with torch.no_grad():
        assert_close(model(x), output_of(fx), 1e-4, 'train-time output')
        fused = mmrep.reparameterize_model(model)
        assert fused.deploy and not model.deploy
        assert fused.state_dict().keys() == fx['deploy_state_dict'].keys()
        assert_close(fused(x), fx['deploy_logits'], 1e-4, 'fused output')
        # The original's fused weights load into the fused form.
        deployed = cls(**fx['arch'], deploy=True).eval()
        deployed.load_state_dict(fx['deploy_state_dict'], strict=True)
        assert_close(deployed(x), fx['deploy_logits'], 1e-4,
                     'original fused weights')


@fixture_params('repmlp_v1_unit_s*.pt')
def test_unit_conforms(fixture_path):
    check_module_fixture(fixture_path, RepMLPUnit)


@fixture_params('repmlp_bottleneck_block_s*.pt')
def test_bottleneck_block_conforms(fixture_path):
    check_module_fixture(fixture_path, RepMLPBottleneckBlock)


@fixture_params('repmlp_light_block_s*.pt')
def test_light_block_conforms(fixture_path):
    check_module_fixture(fixture_path, RepMLPLightBlock)


@fixture_params('repmlp_res50_img64_s*.pt')
def test_res50_conforms(fixture_path, tmp_path):
    fx = load_fixture(fixture_path)
    state = {k: v.float() if v.is_floating_point() else v
             for k, v in fx['state_dict'].items()}
    arch = mmrep_arch('repmlp-res50', fx['arch'])
    num_classes, channels = state['linear.weight'].shape
    ckpt = str(tmp_path / 'original.pth')
    torch.save(state, ckpt)
    x = fx['input']

    # Features: the backbone loads the original file through init_cfg.
    check_pretrained_features(RepMLPResNet, arch, ckpt, x, fx['features'])

    # Logits: a classifier loads the same file, its head included.
    clf = build_classifier(arch, num_classes, channels=channels)
    mmrep.load_pretrained(clf, ckpt)
    clf.eval()
    with torch.no_grad():
        assert_close(clf(x, mode='tensor'), fx['logits'], 1e-4, 'logits')
        fused = mmrep.reparameterize_model(clf)
        assert fused.backbone.deploy and not clf.backbone.deploy
        assert_close(fused(x, mode='tensor'), fx['deploy_logits'], 1e-4,
                     'deploy logits')
    shapes = {k: list(v.shape) for k, v in fused.backbone.state_dict().items()}
    assert shapes == {k: v for k, v in fx['deploy_state_dict_shapes'].items()
                      if not k.startswith('linear.')}

    # A train-time checkpoint into a deploy model is fused on load ...
    on_load = build_classifier(arch, num_classes, deploy=True,
                               channels=channels)
    mmrep.load_pretrained(on_load, ckpt)
    on_load.eval()
    with torch.no_grad():
        assert_close(on_load(x, mode='tensor'), fx['deploy_logits'], 1e-4,
                     'fused on load')
    # ... and a fused one cannot go into a train-time model.
    with pytest.raises(CheckpointMismatchError, match='deploy=True'):
        mmrep.load_pretrained(RepMLPResNet(arch),
                              fused.backbone.state_dict())


# --------------------------------------------------------------------------
# Full-size presets
# --------------------------------------------------------------------------
@pytest.mark.parametrize('preset,ref_name', [
    ('bottleneck-224', 'RepMLP-Res50-Bottleneck-224-g8'),
    ('RepMLP-Res50-Light-224', 'RepMLP-Res50-Light-224-g4')])
def test_presets_match_original_keys_and_counts(preset, ref_name):
    with open(osp.join(FIXTURES, 'repmlp_res50_full_keys.json')) as f:
        ref = json.load(f)[ref_name]
    head = sum(torch.Size(s).numel() for k, s in ref['train'].items()
               if k.startswith('linear.'))
    with torch.device('meta'):
        model = RepMLPResNet(preset)
    for form in ('train', 'deploy'):
        if form == 'deploy':
            with torch.device('meta'):
                mmrep.reparameterize_model(model, inplace=True)
        shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
        assert shapes == {k: v for k, v in ref[form].items()
                          if not k.startswith('linear.')}, form
        assert sum(p.numel() for p in model.parameters()) + head == \
            ref[f'params_{form}'], form


@pytest.mark.parametrize('preset,groups', [
    ('bottleneck-224-g4/8', (4, 8)), ('bottleneck-224-g8/16', (8, 16)),
    ('light-224-g4/8', (4, 8)), ('light-224-g8/16', (8, 16))])
def test_per_stage_group_presets(preset, groups):
    with torch.device('meta'):
        model = RepMLPResNet(preset)
    units = [m for m in model.modules() if isinstance(m, RepMLPUnit)]
    assert len(units) == 3 + 5  # every non-first block of c3 and c4
    c3, c4 = units[:3], units[3:]
    assert {u.fc3_groups for u in c3} == {groups[0]}
    assert {u.fc3_groups for u in c4} == {groups[1]}
    assert {u.grid for u in c3} == {(4, 4)}
    assert {u.grid for u in c4} == {(2, 2)}


# --------------------------------------------------------------------------
# Any input size
# --------------------------------------------------------------------------
def random_unit(**kw):
    args = dict(in_channels=16, out_channels=16, H=16, W=24, h=8, w=8,
                reparam_conv_k=(1, 3, 5), fc1_fc2_reduction=1, fc3_groups=4)
    args.update(kw)
    torch.manual_seed(0)
    return randomize_bn(RepMLPUnit(**args)).eval()


@pytest.mark.parametrize('size', [
    (16, 24),   # the configured map
    (13, 21),   # padded, same 2x3 grid
    (5, 3),     # smaller than one partition
    (40, 40),   # a 5x5 grid instead of 2x3
    (1, 1)])
def test_unit_any_size_runs_and_fuses(size):
    unit = random_unit()
    x = torch.randn(2, 16, *size)
    with torch.no_grad():
        out = unit(x)
        fused = mmrep.reparameterize_model(unit)(x)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    assert_close(fused, out, 1e-4 * max(1.0, out.abs().max().item()),
                 f'fused at {size}')


@pytest.mark.parametrize('size', [(13, 21), (5, 3), (9, 17)])
def test_unit_pads_bottom_right_and_crops(size):
    """With the global term held at 0, a unit applied to a map equals the
    unit applied to that map zero-padded on the bottom/right, cropped."""
    unit = random_unit()
    nn.init.zeros_(unit.fc1_fc2.fc2.weight)
    nn.init.zeros_(unit.fc1_fc2.fc2.bias)
    x = torch.randn(2, 16, *size)
    H, W = size
    padded = F.pad(x, (0, -W % 8, 0, -H % 8))
    with torch.no_grad():
        assert_close(unit(x), unit(padded)[..., :H, :W], 1e-6, 'padding')


def test_unit_global_term_uses_pixels_inside_the_map():
    """On a padded map a partition's average divides by the number of its
    pixels inside the map, not by h*w."""
    unit = random_unit()
    xp = F.pad(torch.randn(1, 16, 13, 21), (0, 3, 0, 3))
    counts = torch.tensor([[8. * 8, 8 * 8, 8 * 5], [5 * 8, 5 * 8, 5 * 5]])
    mean = F.avg_pool2d(xp, 8) * 64 / counts
    with torch.no_grad():
        v = unit.fc1_fc2(unit.avg(mean).reshape(1, -1)).reshape(1, 16, 2, 3)
        assert_close(unit._global_term(xp, 13, 21, 2, 3), v, 1e-5,
                     'global term on a padded map')


def test_unit_grid_mapping_is_exact_for_the_configured_grid():
    """A map twice the configured size: the grid of averages is pooled to the
    configured grid, so a map of 2x2-constant partitions gives the global
    term of its half-size counterpart, repeated."""
    unit = random_unit()
    small = torch.randn(1, 16, 16, 24)
    # Each 8x8 partition of ``small`` becomes a 2x2 block of partitions.
    big = small.reshape(1, 16, 2, 8, 3, 8).repeat_interleave(2, 2)
    big = big.repeat_interleave(2, 4).reshape(1, 16, 32, 48)
    with torch.no_grad():
        v_small = unit._global_term(small, 16, 24, 2, 3)
        v_big = unit._global_term(big, 32, 48, 4, 6)
    expect = v_small.repeat_interleave(2, 2).repeat_interleave(2, 3)
    assert_close(v_big, expect, 1e-5, 'grid mapping')


def test_dilated_unit_is_the_unit_on_each_phase():
    """dilation=2 applies the unit to the 4 interleaved sub-maps."""
    unit = random_unit(H=8, W=8, h=8, w=8)  # no global perceptron
    dilated = RepMLPUnit(16, 16, 8, 8, 8, 8, (1, 3, 5), 1, 4, dilation=2)
    dilated.load_state_dict(unit.state_dict())
    dilated.eval()
    x = torch.randn(2, 16, 32, 16)
    expect = torch.empty_like(x)
    with torch.no_grad():
        for a in range(2):
            for b in range(2):
                expect[..., a::2, b::2] = unit(x[..., a::2, b::2])
        assert_close(dilated(x), expect, 1e-5, 'dilated unit')


def test_unit_refuses_bad_input():
    with pytest.raises(ValueError, match='multiple of the partition'):
        RepMLPUnit(16, 16, 14, 14, 4, 4)
    with pytest.raises(ValueError, match='fc3_groups'):
        RepMLPUnit(16, 16, 8, 8, 4, 4, fc3_groups=3)
    with pytest.raises(ValueError, match='odd'):
        RepMLPUnit(16, 16, 8, 8, 4, 4, reparam_conv_k=(2, ))
    with pytest.raises(ValueError, match=r'\(N, 16, H, W\)'):
        RepMLPUnit(16, 16, 8, 8, 4, 4)(torch.randn(1, 8, 8, 8))


@pytest.mark.parametrize('block_type', ['bottleneck', 'light'])
@pytest.mark.parametrize('size', [(64, 64), (37, 53), (20, 20), (96, 128)])
def test_backbone_any_size_runs_and_fuses(block_type, size):
    torch.manual_seed(0)
    model = randomize_bn(RepMLPResNet(small_arch(block_type=block_type)))
    model.eval()
    conftest.check_stage_shapes_and_fusion(model, torch.randn(1, 3, *size))


def test_dilated_form_gives_stride_8():
    torch.manual_seed(0)
    plain = RepMLPResNet(small_arch())
    model = RepMLPResNet(small_arch(), strides=(1, 2, 1, 1),
                         dilations=(1, 1, 2, 4))
    # Same parameters, so pretrained weights load unchanged.
    model.load_state_dict(plain.state_dict(), strict=True)
    randomize_bn(model).eval()
    assert model.stage4[0].conv2.conv.dilation == (4, 4)
    assert model.stage3[1].btnk_conv2.conv.dilation == (2, 2)
    assert model.stage3[1].btnk_repmlp.dilation == 2
    x = torch.randn(1, 3, 72, 56)
    with torch.no_grad():
        outs = model(x)
        fused = mmrep.reparameterize_model(model)(x)
    assert [o.shape[-2:] for o in outs] == [(18, 14), (9, 7), (9, 7), (9, 7)]
    for o, f in zip(outs, fused):
        assert_close(f, o, 1e-4 * max(1.0, o.abs().max().item()), 'fused')


# --------------------------------------------------------------------------
# Training-mode switches of the light block, arguments
# --------------------------------------------------------------------------
def test_with_cp_light_block(monkeypatch):
    """The contract's ``with_cp`` check (test_backbone_contract.py runs the
    bottleneck block) for the light block."""
    check_with_cp(RepMLPResNet, RepMLPResNet.parse_arch(
        small_arch(block_type='light')), torch.randn(2, 3, 32, 32),
        monkeypatch)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match='unknown RepMLPResNet arch'):
        RepMLPResNet('bottleneck-256')
    with pytest.raises(ValueError, match='missing keys'):
        RepMLPResNet(dict(block_type='light'))
    with pytest.raises(ValueError, match='unknown keys'):
        RepMLPResNet(small_arch(deploy=True))
    with pytest.raises(ValueError, match='block_type'):
        RepMLPResNet(small_arch(block_type='tiny'))
    with pytest.raises(ValueError, match='stage2.1: .*fc3_groups'):
        RepMLPResNet(small_arch(fc3_groups=3))
    with pytest.raises(ValueError, match='multiple of the partition'):
        RepMLPResNet(small_arch(img_H=56, img_W=56))
    with pytest.raises(ValueError, match='dilations'):
        RepMLPResNet(small_arch(), dilations=(1, 2))
    with pytest.raises(ValueError, match='out_indices'):
        RepMLPResNet(small_arch(), out_indices=(4, ))


def test_base_block_type_is_plain_resnet50():
    with torch.device('meta'):
        model = RepMLPResNet(dict(num_blocks=(3, 4, 6, 3),
                                  block_type='base'))
    assert not any(isinstance(m, RepMLPUnit) for m in model.modules())
    assert sum(p.numel() for p in model.parameters()) == 23508032


def test_bottleneck_224_parameter_counts():
    """The released RepMLP-Res50-Bottleneck-224 with its 1000-class head:
    41,071,144 parameters train-time, 40,871,528 fused."""
    head = 2048 * 1000 + 1000
    with torch.device('meta'):
        model = RepMLPResNet('bottleneck-224')
        assert sum(p.numel() for p in model.parameters()) + head == 41071144
        mmrep.reparameterize_model(model, inplace=True)
        assert sum(p.numel() for p in model.parameters()) + head == 40871528
