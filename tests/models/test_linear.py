"""CPU products through oneDNN (mmrep.models.layers.linear): the same
numbers as PyTorch's default path, taken only where nothing but speed can
differ, and the original RepMLPNet's outputs on either path."""
import pytest
import torch
import torch.nn.functional as F
from conftest import (assert_close, fixture_params, load_fixture,
                      mmrep_arch)

import mmrep
from mmrep.models.layers import linear as lin


@pytest.fixture
def onednn_calls(monkeypatch):
    """Count the calls that reach oneDNN's inner product."""
    calls = []
    real = lin._onednn_linear
    assert real is not None, 'this PyTorch build has no oneDNN linear op'

    def spy(*args):
        calls.append(tuple(args[0].shape))
        return real(*args)
    monkeypatch.setattr(lin, '_onednn_linear', spy)
    return calls


def test_onednn_is_usable_here():
    x = torch.randn(4, 4)
    assert lin.onednn_usable(x, x)
    assert not lin.onednn_usable(x.double(), x.double())
    with torch.backends.mkldnn.flags(enabled=False):
        assert not lin.onednn_usable(x, x)


@pytest.mark.parametrize('act', [None, 'relu', 'gelu'])
@pytest.mark.parametrize('with_bias', [True, False])
def test_linear_matches_f_linear(act, with_bias, onednn_calls):
    torch.manual_seed(0)
    x, w = torch.randn(300, 128), torch.randn(96, 128) / 8
    b = torch.randn(96) if with_bias else None
    ref = F.linear(x.double(), w.double(), None if b is None else b.double())
    ref = {None: ref, 'relu': F.relu(ref), 'gelu': F.gelu(ref)}[act]
    with torch.no_grad():
        out = lin.linear(x, w, b, act)   # 3.7M MACs: oneDNN
    assert onednn_calls == [(300, 128)]
    assert out.dtype == torch.float32 and out.shape == (300, 96)
    assert_close(out, ref.float(), 1e-5 * ref.abs().max().item(), act)


def test_linear_keeps_the_default_path_where_it_must(onednn_calls):
    torch.manual_seed(0)
    w = torch.randn(96, 128, requires_grad=True)
    x = torch.randn(300, 128)
    # Autograd: oneDNN's op has no backward here.
    out = lin.linear(x, w, act='gelu')
    out.sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0
    w = w.detach()
    with torch.no_grad():
        lin.linear(x.double(), w.double())          # not float32
        lin.linear(x[:2], w)                        # too small to pay
        with torch.backends.mkldnn.flags(enabled=False):
            lin.linear(x, w)                        # switched off
        torch.jit.trace(lambda t: lin.linear(t, w), (x, ), check_trace=False)
    assert onednn_calls == []
    with torch.no_grad():
        lin.linear(x, w)
    assert len(onednn_calls) == 1
    with pytest.raises(ValueError, match='act must be one of'):
        lin.linear(x, w, act='silu')


@pytest.mark.parametrize('S,M,K,calls', [(1, 256, 196, 1), (4, 256, 784, 4),
                                         (16, 128, 196, 0), (3, 5, 7, 0)])
def test_grouped_linear_matches_baddbmm(S, M, K, calls, onednn_calls):
    torch.manual_seed(0)
    # A strided view, as the partition rows of a RepMLP block are.
    x = torch.randn(M, S, K).transpose(0, 1)
    w, b = torch.randn(S, K, K) / K**0.5, torch.randn(S, K)
    ref = torch.baddbmm(b.double().unsqueeze(1), x.double(),
                        w.double().transpose(1, 2))
    with torch.no_grad():
        out = lin.grouped_linear(x, w, b)
        no_bias = lin.grouped_linear(x, w)
    assert len(onednn_calls) == 2 * calls
    assert out.shape == (S, M, K)
    tol = 1e-5 * ref.abs().max().item()
    assert_close(out, ref.float(), tol, 'with bias')
    assert_close(no_bias, (ref - b.double().unsqueeze(1)).float(), tol,
                 'without bias')


@fixture_params('repmlpnet_small_s*.pt')
@pytest.mark.parametrize('path', ['onednn', 'default'])
def test_fused_repmlpnet_matches_original_on_either_path(
        fixture_path, path, onednn_calls, monkeypatch):
    """Every product of the fused model on oneDNN (thresholds at zero), or
    none (oneDNN switched off): the original's fused logits either way."""
    from test_repmlpnet import build_classifier
    fx = load_fixture(fixture_path)
    arch = dict(fx['arch'])
    num_classes = arch.pop('num_class')
    clf = build_classifier(mmrep_arch('repmlpnet', arch), num_classes,
                           deploy=True)
    mmrep.load_pretrained(clf, fx['deploy_state_dict'])
    clf.eval()
    monkeypatch.setattr(lin, 'MIN_ONEDNN_MACS', 0)
    monkeypatch.setattr(lin, 'MIN_ONEDNN_GROUP_MACS', 0)
    with torch.no_grad(), torch.backends.mkldnn.flags(
            enabled=path == 'onednn'):
        logits = clf(fx['input'], mode='tensor')
    # Per unit: one product per share set, two in the FFN.
    expected = sum(n * (s + 2) for n, s in zip(arch['num_blocks'],
                                               arch['sharesets_nums']))
    assert len(onednn_calls) == (expected if path == 'onednn' else 0)
    assert_close(logits, fx['deploy_logits'], 1e-4, f'{path} path')
