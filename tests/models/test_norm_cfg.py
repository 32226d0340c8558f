"""``norm_cfg=SyncBN`` with the original releases' checkpoints: a SyncBN
backbone loads each fixture's original weights through ``init_cfg`` and
gives its features, train-time and fused. The ``norm_cfg`` contract itself
(SyncBN in every BN position, the same fused model as with BN, the options
reaching every BN, CycleMLP refusing ``norm_cfg``) is checked for every
family in test_backbone_contract.py."""
import pytest
import torch
import torch.nn as nn
from conftest import (assert_close, check_pretrained_features, fixture_files,
                      load_fixture, mmrep_arch)

import mmrep
from mmrep.models.backbones import RepMLPNet, RepMLPResNet, RepVGG

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


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_syncbn_backbone_loads_original_checkpoint(family, tmp_path):
    cls, pattern, prepare = FAMILIES[family]
    for path in fixture_files(pattern):
        fx = load_fixture(path)
        arch, state = prepare(fx)
        ckpt = str(tmp_path / 'original.pth')
        torch.save(state, ckpt)
        x = fx['input']
        sync = check_pretrained_features(cls, arch, ckpt, x, fx['features'],
                                         norm_cfg=SYNC_BN)
        assert any(isinstance(m, nn.SyncBatchNorm) for m in sync.modules())
        fused = mmrep.reparameterize_model(sync)
        assert not any(isinstance(m, nn.SyncBatchNorm)
                       for m in fused.modules())
        with torch.no_grad():
            for i, (f, e) in enumerate(zip(fused(x), fx['features'])):
                assert_close(f, e, 1e-4 * max(1., e.abs().max().item()),
                             f'fused stage {i} features')
