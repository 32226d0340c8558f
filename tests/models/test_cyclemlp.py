"""CycleMLP: Cycle FC against the original's deformable form, conformance
with the original release, presets, any input size, loading, stochastic
depth. The OpenMMLab switches are checked in test_backbone_contract.py."""
import json
import os.path as osp

import pytest
import torch
import torch.nn as nn
from conftest import (FIXTURES, assert_close, check_pretrained_features,
                      fixture_params, load_fixture, mmrep_arch)
from torchvision.ops import deform_conv2d

import mmrep
from mmrep.checkpoints import CheckpointMismatchError
from mmrep.models.backbones import CycleMLP
from mmrep.models.backbones import cyclemlp as cyclemlp_module
from mmrep.models.layers import (CycleFC, cycle_shift, cycle_stack,
                                 cycle_stack_grouped, cycle_stack_rows,
                                 cycle_stack_sum)
from mmrep.utils.testing import cycle_block_step_by_step

SMALL = dict(channels=(16, 32, 64, 128), num_blocks=(1, 1, 2, 1),
             mlp_ratios=(2, 2, 2, 2))
PRESETS = ['B1', 'B2', 'B3', 'B4', 'B5']
KERNELS = [(1, 3), (3, 1), (1, 7), (7, 1)]


def deform_cycle_fc(layer, x, weight=None, bias=None):
    """The original's computation: a 1x1 deformable conv with the layer's
    fixed offsets (torchvision)."""
    n, _, h, w = x.shape
    offset = layer.offset.to(x.dtype).expand(n, -1, h, w)
    return deform_conv2d(x, offset, layer.weight if weight is None else weight,
                         layer.bias if bias is None else bias)


# --------------------------------------------------------------------
# Cycle FC
# --------------------------------------------------------------------
@fixture_params('cyclefc_ops_s*.pt')
def test_cycle_fc_matches_original_fixture(fixture_path):
    fx = load_fixture(fixture_path)
    assert fx, 'the fixture holds no Cycle FC case'
    for name, case in fx.items():
        assert name == str(tuple(case['kernel_size'])), name
        sd = case['state_dict']
        out_c, in_c = sd['weight'].shape[:2]
        layer = CycleFC(in_c, out_c, tuple(case['kernel_size']))
        layer.load_state_dict(sd)  # the original's offsets are accepted
        assert torch.equal(layer.offset, sd['offset'])
        with torch.no_grad():
            assert_close(layer(case['input']), case['output'], 1e-5,
                         f'CycleFC{name}')


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('kernel_size', KERNELS + [(1, 1), (1, 5)])
@pytest.mark.parametrize('size', [(9, 11), (1, 1), (2, 5), (6, 2), (3, 3),
                                  (13, 7)])
def test_cycle_fc_forward_and_gradients_match_deform_conv(kernel_size, size,
                                                          dtype):
    """Exact in float64; in float32 up to summation order (the weight
    gradient sums over N * H * W products), i.e. 1e-5 relative."""
    torch.manual_seed(0)
    layer = CycleFC(10, 6, kernel_size).to(dtype)
    nn.init.normal_(layer.bias)
    x = torch.randn(2, 10, *size, dtype=dtype, requires_grad=True)
    out = layer(x)
    grad = torch.randn_like(out)
    gx, gw, gb = torch.autograd.grad(out, (x, layer.weight, layer.bias), grad)

    x2 = x.detach().clone().requires_grad_()
    w2 = layer.weight.detach().clone().requires_grad_()
    b2 = layer.bias.detach().clone().requires_grad_()
    ref = deform_cycle_fc(layer, x2, w2, b2)
    rx, rw, rb = torch.autograd.grad(ref, (x2, w2, b2), grad)
    what = f'{kernel_size} at {size}, {dtype}'
    for name, a, b in (('output', out, ref), ('input grad', gx, rx),
                       ('weight grad', gw, rw), ('bias grad', gb, rb)):
        scale = 1. if dtype == torch.float64 else max(1., b.abs().max())
        assert_close(a, b, 1e-5 * scale, f'{name} {what}')


def test_cycle_fc_channels_last_no_bias_and_second_order():
    torch.manual_seed(0)
    layer = CycleFC(9, 5, (1, 7), bias=False)
    assert layer.bias is None and 'bias=False' in repr(layer)
    x = torch.randn(2, 4, 6, 9).permute(0, 3, 1, 2)  # channels-last view
    zero = torch.zeros(5)
    with torch.no_grad():
        assert_close(layer(x), deform_cycle_fc(layer, x, bias=zero), 1e-5,
                     'channels-last input')
    # The shift is linear and its gradient is the opposite shift.
    x = torch.randn(1, 5, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: cycle_shift(t, (3, 1)), (x, ))
    assert torch.autograd.gradgradcheck(lambda t: cycle_shift(t, (1, 3)),
                                        (x, ))


def test_cycle_fc_refuses_bad_settings_and_offsets():
    with pytest.raises(ValueError, match=r'\(1, k\) or \(k, 1\)'):
        CycleFC(4, 4, (3, 3))
    with pytest.raises(ValueError, match='stride'):
        CycleFC(4, 4, (1, 3), stride=2)
    with pytest.raises(ValueError, match='padding'):
        CycleFC(4, 4, (1, 3), padding=1)
    with pytest.raises(ValueError, match='expects'):
        CycleFC(4, 4, (1, 3))(torch.zeros(1, 3, 5, 5))
    layer = CycleFC(6, 6, (1, 3))
    state = layer.state_dict()
    state['offset'] = CycleFC(6, 6, (3, 1)).offset
    with pytest.raises(CheckpointMismatchError, match='offset'):
        layer.load_state_dict(state)


@pytest.mark.parametrize('size', [(5, 7), (1, 1), (2, 1)])
def test_cycle_stack_is_shifted_copies_and_its_sum(size):
    """The stacked mixer inputs are the Cycle FC shifts, the map and a
    column of ones; their pixel sums come without the stack; the gradient
    is the adjoint of the shifts."""
    torch.manual_seed(0)
    kernels = ((1, 3), (3, 1))
    x = torch.randn(2, *size, 7, dtype=torch.float64, requires_grad=True)
    nchw = x.detach().permute(0, 3, 1, 2)
    expected = torch.cat(
        [cycle_shift(nchw, k).permute(0, 2, 3, 1) for k in kernels]
        + [x.detach(), torch.ones(2, *size, 1, dtype=x.dtype)], dim=-1)
    assert torch.equal(cycle_stack(x, kernels), expected)
    assert_close(cycle_stack_sum(x.detach(), kernels), expected.sum((1, 2)),
                 1e-12, 'stack sum')
    assert torch.autograd.gradcheck(lambda t: cycle_stack(t, kernels), (x, ))
    assert torch.autograd.gradcheck(lambda t: cycle_stack_sum(t, kernels),
                                    (x, ))


@pytest.mark.parametrize('size', [(6, 5), (1, 3), (2, 1)])
def test_cycle_stack_rows_and_grouped_columns_are_the_stack(size):
    """Any window of rows, its vertical shifts reading the rows around it
    (including pseudo-kernels taller than the map); and the stack with its
    columns grouped by residue class, with their order."""
    torch.manual_seed(0)
    x = torch.randn(2, *size, 5)
    for kernels in (((1, 3), (3, 1)), ((7, 1), (1, 5))):
        whole = cycle_stack(x, kernels)
        for top in range(size[0]):
            for end in range(top + 1, size[0] + 1):
                assert torch.equal(cycle_stack_rows(x, kernels, top, end),
                                   whole[:, top:end]), (kernels, top, end)
        grouped, order = cycle_stack_grouped(x, kernels)
        assert sorted(order.tolist()) == list(range(whole.shape[-1]))
        assert torch.equal(grouped, whole[..., order])


def test_block_products_and_pieces_equal_the_step_by_step_form(monkeypatch):
    """One product for the mixer and the residual, the MLP over pieces of
    pixels under autograd, and (without autograd) pieces of rows with the
    rows the vertical shift reads: same outputs and gradients as the
    step-by-step form."""
    torch.manual_seed(0)
    block = cyclemlp_module.CycleBlock(12, 2., qkv_bias=True, skip_lam=2.)
    for p in block.parameters():
        nn.init.normal_(p, std=0.3)
    x = torch.randn(2, 9, 5, 12, requires_grad=True)
    out, ref = block(x), cycle_block_step_by_step(block, x)
    assert_close(out, ref, 1e-5, 'train-mode output')
    grad = torch.randn_like(ref)
    params = [x] + list(block.parameters())
    names = ['input'] + [n for n, _ in block.named_parameters()]
    for a, b, name in zip(torch.autograd.grad(out, params, grad),
                          torch.autograd.grad(ref, params, grad), names):
        assert_close(a, b, 1e-5, f'gradient of {name}')
    # The MLP under autograd over pieces of 7 pixels (pieces that cross
    # rows, and a shorter last one).
    hidden = block.mlp.fc1.out_features * 4
    monkeypatch.setattr(cyclemlp_module, '_MLP_PIECE_BYTES', 2 * 7 * hidden)
    out, ref = block(x), cycle_block_step_by_step(block, x)
    assert_close(out, ref, 1e-5, 'train-mode output, MLP by pieces')
    for a, b, name in zip(torch.autograd.grad(out, params, grad),
                          torch.autograd.grad(ref, params, grad), names):
        assert_close(a, b, 1e-5, f'gradient of {name}, MLP by pieces')
    monkeypatch.setattr(cyclemlp_module, '_PIECE_BYTES', 1)  # 1-row pieces
    with torch.no_grad():
        assert_close(block.eval()(x), ref, 1e-5, 'output by pieces')


# --------------------------------------------------------------------
# CycleMLP backbone
# --------------------------------------------------------------------
class Classifier(nn.Module):
    """Backbone -> global average pool -> ``head.fc``: the original's
    classifier (its ``norm`` is the backbone's ``final_norm``), with the
    names mmpretrain's ``LinearClsHead`` uses."""

    def __init__(self, arch, num_classes):
        super().__init__()
        self.backbone = CycleMLP(arch, out_indices=(-1, ), final_norm=True)
        self.head = nn.Module()
        self.head.fc = nn.Linear(self.backbone.arch['channels'][-1],
                                 num_classes)

    def forward(self, x):
        return self.head.fc(self.backbone(x)[-1].mean((2, 3)))


@fixture_params('cyclemlp_small_s*.pt')
def test_conformance_with_original(fixture_path, tmp_path):
    fx = load_fixture(fixture_path)
    arch, x = mmrep_arch('cyclemlp', fx['arch']), fx['input']
    num_stages = len(arch['num_blocks'])

    # Logits: the original classifier's file, head included.
    clf = Classifier(arch, fx['arch']['num_classes'])
    mmrep.load_pretrained(clf, fx['state_dict'])
    clf.eval()
    with torch.no_grad():
        assert_close(clf(x), fx['logits'], 1e-4, 'logits')

    # Features: the fork_feat model's file through init_cfg.
    ckpt = str(tmp_path / 'fork_feat.pth')
    torch.save(fx['fork_feat_state_dict'], ckpt)
    assert len(fx['features']) == num_stages
    backbone = check_pretrained_features(CycleMLP, arch, ckpt, x,
                                         fx['features'])
    assert set(backbone.state_dict()) == set(fx['fork_feat_state_dict'])

    # Fewer outputs: the unused per-output norm is dropped on load.
    later = tuple(range(1, num_stages))
    last = CycleMLP(arch, out_indices=later).eval()
    mmrep.load_pretrained(last, fx['fork_feat_state_dict'])
    with torch.no_grad():
        outs = last(x)
    assert len(outs) == len(later)
    for i, a, b in zip(later, outs, fx['features'][1:]):
        assert_close(a, b, 1e-4, f'out_indices {later}: output {i}')

    # A classification checkpoint initializes a dense-prediction model:
    # stages load, the per-output norms keep their initialization.
    dense = CycleMLP(arch).eval()
    mmrep.load_pretrained(dense, fx['state_dict'])
    for k, v in fx['state_dict'].items():
        if k.startswith(('patch_embed.', 'network.')):
            assert torch.equal(dense.state_dict()[k], v), k
    last_norm = getattr(dense, f'norm{2 * (num_stages - 1)}')
    assert torch.equal(last_norm.weight, torch.ones(arch['channels'][-1]))


@fixture_params('cyclemlp_small_s*.pt')
def test_mmpretrain_classifier_loads_original_checkpoint(fixture_path):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    fx = load_fixture(fixture_path)
    num_classes, channels = fx['state_dict']['head.weight'].shape
    init_default_scope('mmpretrain')
    clf = MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='mmrep.CycleMLP',
                      arch=mmrep_arch('cyclemlp', fx['arch']),
                      out_indices=(-1, ), final_norm=True),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=num_classes,
                  in_channels=channels)))
    mmrep.load_pretrained(clf, fx['state_dict'])
    clf.eval()
    with torch.no_grad():
        assert_close(clf(fx['input'], mode='tensor'), fx['logits'], 1e-4,
                     'mmpretrain logits')


@pytest.mark.parametrize('name', PRESETS)
def test_preset_matches_original_keys_and_counts(name):
    with open(osp.join(FIXTURES, 'cyclemlp_full_keys.json')) as f:
        ref = json.load(f)[f'CycleMLP_{name}']
    head = {k: v for k, v in ref['train'].items() if k.startswith('head.')}
    n_head = sum(torch.Size(s).numel() for s in head.values())
    with torch.device('meta'):
        clf = CycleMLP(name, out_indices=(3, ), final_norm=True)
        dense = CycleMLP(name)
    shapes = {k: list(v.shape) for k, v in clf.state_dict().items()}
    assert shapes == {k: v for k, v in ref['train'].items() if k not in head}
    assert sum(p.numel() for p in clf.parameters()) + n_head == \
        ref['params']
    # Dense prediction: the original's fork_feat layout (norm0/2/4/6).
    dims = CycleMLP.arch_zoo[name]['channels']
    expected = {k: v for k, v in shapes.items() if not k.startswith('norm.')}
    for i, c in enumerate(dims):
        expected.update({f'norm{2 * i}.weight': [c], f'norm{2 * i}.bias': [c]})
    assert {k: list(v.shape) for k, v in dense.state_dict().items()} == \
        expected


def test_preset_parameter_counts():
    counts = {}
    for name in PRESETS:
        with torch.device('meta'):
            model = CycleMLP(name, out_indices=(3, ), final_norm=True)
        c = model.arch['channels'][-1]
        counts[name] = sum(p.numel() for p in model.parameters()) \
            + c * 1000 + 1000
    assert counts == dict(B1=15155400, B2=26802504, B3=38385720,
                          B4=51796552, B5=75747280)


@pytest.mark.parametrize('size', [(1, 1), (2, 5), (5, 7), (33, 65),
                                  (72, 104)])
def test_any_input_size_runs(size):
    torch.manual_seed(0)
    model = CycleMLP(SMALL).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    h, w = (max(s, 3) for s in size)
    h, w = (h + 1) // 4, (w + 1) // 4
    for i, out in enumerate(outs):
        assert out.shape == (1, SMALL['channels'][i], h, w), (i, size)
        assert out.is_contiguous() and torch.isfinite(out).all()
        h, w = -(-h // 2), -(-w // 2)


def test_bad_arch_is_refused():
    with pytest.raises(ValueError, match='unknown CycleMLP arch'):
        CycleMLP('B9')
    with pytest.raises(ValueError, match='missing keys'):
        CycleMLP(dict(channels=(8, 16), num_blocks=(1, 1)))
    with pytest.raises(ValueError, match='unknown keys'):
        CycleMLP(dict(SMALL, fork_feat=True))
    with pytest.raises(ValueError, match='differ in length'):
        CycleMLP(dict(SMALL, num_blocks=(1, 1, 1)))
    with pytest.raises(ValueError, match='transitions'):
        mmrep_arch('cyclemlp', dict(layers=(1, 1), embed_dims=(8, 16),
                                    mlp_ratios=(2, 2),
                                    transitions=(False, True)))
    with pytest.raises(ValueError, match='out_indices'):
        CycleMLP(SMALL, out_indices=(4, ))
    with pytest.raises(ValueError, match='final_norm'):
        CycleMLP(SMALL, out_indices=(0, 1), final_norm=True)
    with pytest.raises(ValueError, match='drop_path_rate'):
        CycleMLP(SMALL, drop_path_rate=1.5)
    with pytest.raises(ValueError, match='frozen_stages'):
        CycleMLP(SMALL, frozen_stages=5)
    # Preset aliases and the original's names build.
    assert CycleMLP.parse_arch('CycleMLP_B2') == CycleMLP.parse_arch('b2')


def test_mismatching_checkpoints_name_the_keys():
    model = CycleMLP(SMALL)
    other = CycleMLP(dict(SMALL, mlp_ratios=(2, 2, 2, 4)))
    with pytest.raises(CheckpointMismatchError, match='shape mismatches'):
        mmrep.load_pretrained(model, other.state_dict())
    with pytest.raises(CheckpointMismatchError, match='foo.weight'):
        mmrep.load_pretrained(model, {'foo.weight': torch.zeros(1)})
    # A fork_feat checkpoint has no classifier norm to give a classifier.
    clf = CycleMLP(SMALL, out_indices=(3, ), final_norm=True)
    with pytest.raises(CheckpointMismatchError, match="'norm.weight'"):
        mmrep.load_pretrained(clf, model.state_dict())
    # Offsets other than the fixed ones are refused.
    state = model.state_dict()
    key = 'network.0.0.attn.sfc_w.offset'
    state[key] = state[key].flip(1)
    with pytest.raises(CheckpointMismatchError, match=key):
        mmrep.load_pretrained(model, state)


def test_drop_path_rises_linearly_and_is_off_in_eval():
    """Stochastic depth rises linearly over the blocks, as in the original;
    in eval mode the model gives the outputs of one without it."""
    torch.manual_seed(0)
    plain = CycleMLP(SMALL).eval()
    model = CycleMLP(SMALL, drop_path_rate=0.3)
    rates = [b.drop_path.drop_prob if hasattr(b.drop_path, 'drop_prob')
             else 0. for i in (0, 2, 4, 6) for b in model.network[i]]
    assert rates == pytest.approx([0., 0.075, 0.15, 0.225, 0.3])
    model.load_state_dict(plain.state_dict())
    model.eval()
    x = torch.randn(2, 3, 40, 24)
    with torch.no_grad():
        for a, b in zip(model(x), plain(x)):
            assert torch.equal(a, b)
