"""timm's RepVGG weights in mmrep: timm's own models (``timm.create_model``,
every tensor random, BN statistics included), saved as ``.pth`` and
``.safetensors`` in train-time and timm-fused form, converted
(:func:`~mmrep.models.backbones.repvgg.convert_timm_repvgg`) and loaded
strictly into an mmpretrain classifier of the mmrep preset
(:func:`~mmrep.models.backbones.repvgg.timm_repvgg_arch`), give timm's
logits, before and after mmrep's fusion."""
import pytest
import safetensors.torch
import timm
import torch
import torch.nn as nn
from timm.models.byobnet import model_cfgs
from timm.utils.model import reparameterize_model as timm_reparameterize

import mmrep
from mmrep.checkpoints import CheckpointMismatchError, read_state_dict
from mmrep.models.backbones import RepVGG
from mmrep.models.backbones.repvgg import (TIMM_REPVGG_ARCHS, TIMM_SE_REFUSAL,
                                           convert_timm_repvgg,
                                           is_timm_repvgg_state,
                                           timm_repvgg_arch, timm_repvgg_key)
from mmrep.utils.testing import randomize_bn

from conftest import assert_close, build_classifier

NUM_CLASSES = 7


def timm_model(name, seed=0, device=None):
    """timm's model with every tensor random: fan-in-scaled weights, random
    biases, random BN affine parameters and statistics (positive
    variances), a non-zero batch count; eval mode. Built on the meta device
    (no initialization: every tensor is written here), or left there."""
    with torch.device('meta'):
        model = timm.create_model(name, pretrained=False,
                                  num_classes=NUM_CLASSES)
    if device == 'meta':
        return model
    model.to_empty(device='cpu')
    assert {k for k, _ in model.named_buffers()} <= {
        f'{m}.{b}' for m, bn in model.named_modules()
        if isinstance(bn, nn.modules.batchnorm._BatchNorm)
        for b in ('running_mean', 'running_var', 'num_batches_tracked')}
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            scale = 0.6 * p[0].numel() ** -0.5 if p.dim() > 1 else 0.1
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    randomize_bn(model, seed + 1)
    bns = [m for m in model.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns
    for m in bns:
        m.num_batches_tracked.fill_(seed + 3)
        assert (m.running_var > 0).all() and m.running_mean.abs().min() > 0
        assert m.weight.abs().min() > 0 and m.bias.abs().min() > 0
    return model.eval()


def mmrep_classifier(name, deploy, state=None):
    """The mmpretrain classifier of timm model ``name``'s preset, built on
    the meta device; with ``state``, loaded strictly (every tensor
    assigned) and in eval mode."""
    arch = timm_repvgg_arch(name)
    channels = RepVGG.parse_arch(arch)['width_multiplier'][-1] * 512
    cfg = dict(type='mmrep.RepVGG', arch=arch, out_indices=(3, ),
               deploy=deploy)
    with torch.device('meta'):
        clf = build_classifier(cfg, int(channels), NUM_CLASSES)
    if state is None:
        return clf
    clf.load_state_dict(state, strict=True, assign=True)
    for key, value in clf.state_dict().items():
        assert not value.is_meta, key
    return clf.eval()


def layout(state):
    return {k: tuple(v.shape) for k, v in state.items()}


@pytest.mark.parametrize('name', sorted(TIMM_REPVGG_ARCHS))
def test_every_preset_maps_one_for_one(name):
    """Names and shapes of every timm preset, train-time and timm-fused
    (meta device: nothing computed), are those of the mmrep preset's
    classifier; timm's config translates into the same arch."""
    cfg_arch = timm_repvgg_arch(model_cfgs[name])
    assert RepVGG.parse_arch(cfg_arch) == RepVGG.parse_arch(
        TIMM_REPVGG_ARCHS[name])
    model = timm_model(name, device='meta')
    for deploy in (False, True):
        if deploy:
            with torch.device('meta'):
                model = timm_reparameterize(model)
        state = model.state_dict()
        assert is_timm_repvgg_state(state)
        converted, fused = convert_timm_repvgg(state)
        assert fused == deploy
        expected = mmrep_classifier(name, deploy).state_dict()
        assert layout(converted) == layout(expected)


def read_back(path):
    if path.endswith('.safetensors'):
        return safetensors.torch.load_file(path)
    return read_state_dict(path)


CASES = [('repvgg_a0', False), ('repvgg_b1g4', False),
         ('repvgg_a0', True), ('repvgg_b1g4', True)]


@pytest.mark.parametrize('name,timm_fused', CASES,
                         ids=[f'{n}-{"fused" if f else "train"}'
                              for n, f in CASES])
def test_logits_match_timm(tmp_path, name, timm_fused):
    model = timm_model(name, seed=len(name) + timm_fused)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    if timm_fused:
        model = timm_reparameterize(model)
    with torch.no_grad():
        expected = model(x)
    tol = 1e-4 * max(1.0, expected.abs().max().item())
    state = model.state_dict()
    files = [str(tmp_path / f'{name}.pth'),
             str(tmp_path / f'{name}.safetensors')]
    torch.save(state, files[0])
    safetensors.torch.save_file(state, files[1])
    for path in files:
        converted, fused = convert_timm_repvgg(read_back(path))
        assert fused == timm_fused
        clf = mmrep_classifier(name, fused, converted)
        with torch.no_grad():
            assert_close(clf(x), expected, tol, f'{path} logits')
            clf = mmrep.reparameterize_model(clf, inplace=True)
            assert_close(clf(x), expected, tol, f'{path} fused logits')
    if name == 'repvgg_a0' and not timm_fused:
        # Train-time weights into a deploy classifier: fused on loading.
        clf = mmrep_classifier(name, True)
        clf.to_empty(device='cpu')
        assert mmrep.load_pretrained(clf, converted) == []
        with torch.no_grad():
            assert_close(clf.eval()(x), expected, tol, 'fused-on-load logits')


def test_key_map():
    assert timm_repvgg_key('stem.conv_kxk.conv.weight') == \
        'backbone.stage0.rbr_dense.conv.weight'
    assert timm_repvgg_key('stages.0.1.identity.running_var') == \
        'backbone.stage1.1.rbr_identity.running_var'
    assert timm_repvgg_key('stages.3.0.conv_1x1.bn.bias') == \
        'backbone.stage4.0.rbr_1x1.bn.bias'
    assert timm_repvgg_key('stages.2.13.reparam_conv.weight') == \
        'backbone.stage3.13.rbr_reparam.weight'
    assert timm_repvgg_key('head.fc.weight') == 'head.fc.weight'
    for key in ('stages.0.1.attn.fc1.weight', 'final_conv.conv.weight',
                'stages.0.0.conv_kxk.0.conv.weight', 'stage1.0.rbr_dense'
                '.conv.weight'):
        assert timm_repvgg_key(key) is None


def test_names_and_models_refused():
    assert timm_repvgg_arch('timm/repvgg_b3g4.rvgg_in1k') == 'B3g4'
    with pytest.raises(ValueError, match='squeeze-and-excitation'):
        timm_repvgg_arch('repvgg_d2se')
    with pytest.raises(ValueError, match='squeeze-and-excitation'):
        timm_repvgg_arch(model_cfgs['repvgg_d2se'])
    with pytest.raises(ValueError, match='unknown timm RepVGG model'):
        timm_repvgg_arch('repvgg_b1g2')
    d2se = timm.create_model('repvgg_d2se', pretrained=False,
                             device='meta').state_dict()
    with pytest.raises(CheckpointMismatchError) as e:
        convert_timm_repvgg(d2se)
    assert str(e.value) == TIMM_SE_REFUSAL
    a0 = timm_model('repvgg_a0', device='meta').state_dict()
    with pytest.raises(CheckpointMismatchError, match='final 1x1 conv'):
        convert_timm_repvgg({**a0, 'final_conv.conv.weight': a0[
            'head.fc.weight']})
    mixed = dict(a0)
    mixed['stages.0.0.reparam_conv.weight'] = a0['head.fc.weight']
    with pytest.raises(CheckpointMismatchError, match='mixes fused'):
        convert_timm_repvgg(mixed)


def test_detection():
    assert is_timm_repvgg_state(
        timm_model('repvgg_a0', device='meta').state_dict())
    with torch.device('meta'):
        original = RepVGG('A0').state_dict()
        from mmpretrain.models import RepVGG as MMPretrainRepVGG
        mmpretrain = MMPretrainRepVGG('A0').state_dict()
    assert not is_timm_repvgg_state(original)
    assert not is_timm_repvgg_state(mmpretrain)
