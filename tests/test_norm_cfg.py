"""``norm_cfg`` in every backbone with BatchNorms: SyncBN everywhere a BN
was, original checkpoints still load, and a SyncBN model fuses to the same
model as a BN one."""
import pytest
import torch
import torch.nn as nn
from conftest import (assert_close, check_pretrained_features, fixture_files,
                      load_fixture, mmrep_arch)
from torch.nn.modules.batchnorm import _BatchNorm

import mmrep
from mmrep.models.backbones import CycleMLP, RepMLPNet, RepMLPResNet, RepVGG

SYNC_BN = dict(type='SyncBN', requires_grad=True)


def _arch_without(family, key):
    def prepare(fx):
        arch = dict(fx['arch'])
        arch.pop(key, None)
        return mmrep_arch(family, arch), fx['state_dict']
    return prepare


def _res50(fx):
    state = {k: v.float() if v.is_floating_point() else v
             for k, v in fx['state_dict'].items()}
    return mmrep_arch('repmlp-res50', fx['arch']), state


# family -> (class, fixture pattern, fixture -> (arch, original state dict))
FAMILIES = {
    'repvgg': (RepVGG, 'repvgg_small_s*.pt', _arch_without('repvgg', 'num_classes')),
    'repmlpnet': (RepMLPNet, 'repmlpnet_small_s*.pt',
                  _arch_without('repmlpnet', 'num_class')),
    'repmlp-res50': (RepMLPResNet, 'repmlp_res50_img64_s*.pt', _res50),
}


def bn_types(model):
    """``{module name: type}`` of every BatchNorm of ``model``."""
    return {name: type(m) for name, m in model.named_modules()
            if isinstance(m, _BatchNorm)}


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_syncbn_backbone_loads_original_and_fuses_like_bn(family, tmp_path):
    cls, pattern, prepare = FAMILIES[family]
    for path in fixture_files(pattern):
        fx = load_fixture(path)
        arch, state = prepare(fx)
        ckpt = str(tmp_path / 'original.pth')
        torch.save(state, ckpt)
        x = fx['input']
        plain = check_pretrained_features(cls, arch, ckpt, x,
                                          fx['features'])
        sync = check_pretrained_features(cls, arch, ckpt, x, fx['features'],
                                         norm_cfg=SYNC_BN)
        # SyncBatchNorm in every position of a BN, the branches' included.
        plain_bns, sync_bns = bn_types(plain), bn_types(sync)
        assert plain_bns and set(sync_bns) == set(plain_bns)
        assert all(issubclass(t, nn.SyncBatchNorm)
                   for t in sync_bns.values())
        assert any('rbr_identity' in n or 'fc3_bn' in n or 'repconv' in n
                   for n in sync_bns)
        trainable = [{n for n, p in m.named_parameters() if p.requires_grad}
                     for m in (plain, sync)]
        assert trainable[0] == trainable[1]
        assert sync.state_dict().keys() == plain.state_dict().keys()

        # The same fused model, with the same outputs.
        fused_plain = mmrep.reparameterize_model(plain)
        fused_sync = mmrep.reparameterize_model(sync)
        assert not any(isinstance(m, nn.SyncBatchNorm)
                       for m in fused_sync.modules())
        a, b = fused_plain.state_dict(), fused_sync.state_dict()
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k
        with torch.no_grad():
            for i, (f, e) in enumerate(zip(fused_sync(x), fx['features'])):
                assert_close(f, e, 1e-4 * max(1., e.abs().max().item()),
                             f'fused stage {i} features')


@pytest.mark.parametrize('cls,arch', [
    (RepVGG, dict(num_blocks=(1, 1, 1, 1),
                  width_multiplier=(0.25, 0.25, 0.25, 0.25))),
    (RepMLPNet, dict(channels=(8, 16, 16, 16), num_blocks=(1, 1, 1, 1),
                     sharesets=(1, 2, 4, 4), partition_sizes=(4, 2, 1, 1))),
])
def test_norm_cfg_options_reach_every_bn(cls, arch):
    model = cls(arch, norm_cfg=dict(type='BN', momentum=0.01, eps=1e-3,
                                    requires_grad=False))
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(m.momentum == 0.01 and m.eps == 1e-3 for m in bns)
    assert not any(p.requires_grad for m in bns for p in m.parameters())
    # A deploy twin built from the same arguments keeps the setting.
    fused = cls(**dict(model._build_args, deploy=True))
    assert all(m.eps == 1e-3 for m in fused.modules()
               if isinstance(m, _BatchNorm))


def test_cyclemlp_has_no_batchnorm_to_configure():
    model = CycleMLP(dict(channels=(8, 8, 8, 8), num_blocks=(1, 1, 1, 1),
                          mlp_ratios=(1, 1, 1, 1)))
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())
    with pytest.raises(TypeError, match='norm_cfg'):
        CycleMLP('B1', norm_cfg=SYNC_BN)
