"""RepMLPNet: conformance with the original release, presets, any input
size, Locality Injection, loading, training-mode switches."""
import copy
import json
import os.path as osp

import pytest
import torch
import torch.nn as nn
import conftest
from conftest import (FIXTURES, assert_close, build_in_scope,
                      check_pretrained_features, fixture_params, load_fixture)

import mmrep
from mmrep.models import CheckpointMismatchError
from mmrep.models.backbones import RepMLPNet
from mmrep.models.layers import RepMLPBlock
from mmrep.utils.testing import randomize_bn


def small_arch(**kw):
    arch = dict(channels=(16, 32, 64, 128), num_blocks=(1, 1, 1, 1),
                sharesets=(1, 4, 8, 16), partition_sizes=(8, 4, 2, 2))
    arch.update(kw)
    return arch


def build_classifier(arch, num_classes, deploy=False):
    """mmpretrain ImageClassifier around an mmrep RepMLPNet."""
    return conftest.build_classifier(
        dict(type='mmrep.RepMLPNet', arch=arch, out_indices=(3, ),
             final_norm=True, deploy=deploy),
        RepMLPNet.parse_arch(arch)['channels'][-1], num_classes)


@fixture_params('repmlpnet_small_s*.pt')
def test_conformance_with_original(fixture_path, tmp_path):
    fx = load_fixture(fixture_path)
    arch = dict(fx['arch'])
    num_classes = arch.pop('num_class')
    ckpt = str(tmp_path / 'original.pth')
    torch.save(fx['state_dict'], ckpt)

    # Features: the backbone loads the original file through init_cfg.
    check_pretrained_features(RepMLPNet, arch, ckpt, fx['input'],
                              fx['features'])

    # Logits: an mmpretrain classifier loads the same file, head included.
    clf = build_classifier(arch, num_classes)
    mmrep.load_pretrained(clf, ckpt)
    clf.eval()
    with torch.no_grad():
        logits = clf(fx['input'], mode='tensor')
    assert_close(logits, fx['logits'], 1e-4, 'logits')

    # Locality Injection through the one protocol.
    fused = mmrep.reparameterize_model(clf)
    assert fused.backbone.deploy and not clf.backbone.deploy
    assert not any('repconv' in k or 'fc3_bn' in k
                   for k in fused.state_dict())
    with torch.no_grad():
        assert_close(fused(fx['input'], mode='tensor'), fx['deploy_logits'],
                     1e-4, 'deploy logits')

    # The original's fused checkpoint loads into a deploy model.
    deployed = build_classifier(arch, num_classes, deploy=True)
    mmrep.load_pretrained(deployed, fx['deploy_state_dict'])
    deployed.eval()
    with torch.no_grad():
        assert_close(deployed(fx['input'], mode='tensor'),
                     fx['deploy_logits'], 1e-4, 'original deploy weights')

    # A train-time checkpoint into a deploy model is fused on load.
    fused_on_load = build_classifier(arch, num_classes, deploy=True)
    mmrep.load_pretrained(fused_on_load, ckpt)
    fused_on_load.eval()
    with torch.no_grad():
        assert_close(fused_on_load(fx['input'], mode='tensor'),
                     fx['deploy_logits'], 1e-4, 'fused on load')


PRESETS = ['T224', 'B224', 'T256', 'B256', 'D256', 'L256']


@pytest.mark.parametrize('name', PRESETS)
def test_preset_matches_original_keys_and_counts(name):
    with open(osp.join(FIXTURES, 'repmlpnet_full_keys.json')) as f:
        ref = json.load(f)[f'RepMLPNet-{name}']
    with torch.device('meta'):
        model = RepMLPNet(name, final_norm=True)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    head = {k: v for k, v in ref['train'].items() if k.startswith('head.')}
    assert shapes == {k: v for k, v in ref['train'].items() if k not in head}
    n_head = sum(torch.Size(s).numel() for s in head.values())
    assert sum(p.numel() for p in model.parameters()) + n_head == \
        ref['params_train']

    # The original fused form fits mmrep's fused form (conv-BN folded).
    with torch.device('meta'):
        model.reparameterize()
    deploy = {k: v for k, v in ref['deploy'].items() if k not in head}
    fused = {k: list(v.shape) for k, v in model.state_dict().items()}
    for key, shape in fused.items():
        src = key.replace('conv.bias', 'bn.bias')
        assert deploy.get(key, deploy.get(src)) == shape, key


def test_preset_parameter_counts_named_in_issue():
    counts = {}
    for name in PRESETS:
        with torch.device('meta'):
            model = RepMLPNet(name)
        c = model.arch['channels'][-1]
        counts[name] = sum(p.numel() for p in model.parameters()) \
            + c * 1000 + 1000
    assert counts == dict(T224=38293608, B224=68242712, T256=58687848,
                          B256=96447512, D256=86887648, L256=117641560)


@pytest.mark.parametrize('size', [(5, 7), (33, 65), (100, 37), (64, 64),
                                  (1, 1)])
def test_any_input_size_runs_and_fuses(size):
    torch.manual_seed(0)
    model = randomize_bn(RepMLPNet(small_arch())).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        outs = model(x)
        fused = mmrep.reparameterize_model(model)(x)
    h, w = size
    for i, (o, f) in enumerate(zip(outs, fused)):
        stride = 4 * 2**i
        assert o.shape[-2:] == (-(-h // stride), -(-w // stride))
        assert_close(f, o, 1e-4 * max(1.0, o.abs().max().item()),
                     f'fused stage {i} at {size}')


@pytest.mark.parametrize('size', [(13, 21), (3, 5), (16, 24)])
def test_block_pads_bottom_right_and_crops(size):
    """With the gate held at 1, a block applied to a map equals the block
    applied to that map zero-padded on the bottom/right, cropped back."""
    torch.manual_seed(0)
    block = randomize_bn(RepMLPBlock(8, (8, 8), num_sharesets=2,
                                     conv_kernels=(1, 3))).eval()
    nn.init.zeros_(block.gp.fc2.weight)
    nn.init.constant_(block.gp.fc2.bias, 100.0)  # sigmoid(100) == 1.0
    x = torch.randn(2, 8, *size)
    H, W = size
    padded = nn.functional.pad(x, (0, -W % 8, 0, -H % 8))
    with torch.no_grad():
        out = block(x)
        ref = block(padded)[..., :H, :W]
    assert out.shape == x.shape
    assert torch.equal(out, ref)


def test_block_matches_grouped_conv_form():
    """The batched-matmul fc3 equals the original grouped 1x1 conv."""
    torch.manual_seed(0)
    block = RepMLPBlock(16, (4, 6), num_sharesets=4, deploy=True).eval()
    nn.init.normal_(block.fc3.bias)
    x = torch.randn(3, 16, 8, 12)
    S, h, w = 4, 4, 6
    parts = x.reshape(3, 16, 2, h, 2, w).permute(0, 2, 4, 1, 3, 5)
    ref = block.fc3(parts.reshape(-1, S * h * w, 1, 1))
    ref = ref.reshape(3, 2, 2, 16, h, w).permute(0, 3, 1, 4, 2, 5)
    ref = ref.reshape(3, 16, 8, 12) * block.gp(x)
    with torch.no_grad():
        assert_close(block(x), ref, 1e-5, 'bmm vs grouped conv')


def test_mmpretrain_checkpoint_converts():
    from mmpretrain.models.backbones import RepMLPNet as MMPRepMLPNet
    arch = dict(channels=[32, 64, 128, 256], depths=[1, 1, 2, 1],
                sharesets_nums=[1, 4, 8, 16])
    torch.manual_seed(0)
    theirs = randomize_bn(MMPRepMLPNet(arch, img_size=64, out_indices=(3, ),
                                       reparam_conv_kernels=(1, 3))).eval()
    ours = RepMLPNet(dict(channels=arch['channels'],
                          num_blocks=arch['depths'],
                          sharesets=arch['sharesets_nums'],
                          partition_sizes=(16, 8, 4, 2)),
                     out_indices=(3, ), final_norm=True).eval()
    x = torch.randn(2, 3, 64, 64)
    mmrep.load_pretrained(ours, {'state_dict': {
        'backbone.' + k: v for k, v in theirs.state_dict().items()}})
    with torch.no_grad():
        assert_close(ours(x)[0], theirs(x)[0], 1e-4, 'mmpretrain train form')
        theirs.switch_to_deploy()
        fused = RepMLPNet(copy.deepcopy(ours._build_args['arch']),
                          out_indices=(3, ), final_norm=True,
                          deploy=True).eval()
        mmrep.load_pretrained(fused, theirs.state_dict())
        assert_close(fused(x)[0], theirs(x)[0], 1e-4, 'mmpretrain fused')


def test_bad_arch_is_refused():
    with pytest.raises(ValueError, match='unknown RepMLPNet arch'):
        RepMLPNet('T999')
    with pytest.raises(ValueError, match='missing keys'):
        RepMLPNet(dict(channels=(8, 16), num_blocks=(1, 1)))
    with pytest.raises(ValueError, match='differ in length'):
        RepMLPNet(small_arch(num_blocks=(1, 1, 1)))
    with pytest.raises(ValueError, match="stage 0's 3 share sets do not "
                       'divide its 16 channels'):
        RepMLPNet(small_arch(sharesets=(3, 4, 8, 16)))
    with pytest.raises(ValueError, match='out_indices'):
        RepMLPNet(small_arch(), out_indices=(4, ))


def test_mismatching_checkpoints_name_the_keys():
    model = RepMLPNet(small_arch())
    other = RepMLPNet(small_arch(channels=(16, 32, 64, 64),
                                 sharesets=(1, 4, 8, 8)))
    with pytest.raises(CheckpointMismatchError, match='shape mismatches'):
        mmrep.load_pretrained(model, other.state_dict())
    fused = RepMLPNet(small_arch(), deploy=True).state_dict()
    with pytest.raises(CheckpointMismatchError, match='deploy=True'):
        mmrep.load_pretrained(model, fused)
    bad = {'foo.weight': torch.zeros(1)}
    with pytest.raises(CheckpointMismatchError, match='foo.weight'):
        mmrep.load_pretrained(model, bad)


def test_frozen_stages_and_norm_eval():
    model = RepMLPNet(small_arch(), frozen_stages=2, norm_eval=True)
    model.train()
    for name, p in model.named_parameters():
        frozen = name.startswith(('conv_embedding', 'stages.0', 'stages.1',
                                  'embeds.0'))
        if name.startswith('head_norm'):  # unused without final_norm, so
            frozen = True  # no gradient for DDP to wait for
        assert p.requires_grad != frozen, name
    assert all(not m.training for m in model.modules()
               if isinstance(m, nn.BatchNorm2d))
    model = RepMLPNet(small_arch(), frozen_stages=1).train()
    assert not model.stages[0].training and model.stages[1].training
    assert model.stages[1][0].prebn1.training
    assert not model.conv_embedding.training
    # Fusion replaces layers; frozen ones stay frozen.
    model.reparameterize()
    assert not model.stages[0][0].repmlp_block.fc3.weight.requires_grad
    assert model.stages[1][0].repmlp_block.fc3.weight.requires_grad
    with pytest.raises(ValueError, match='frozen_stages'):
        RepMLPNet(small_arch(), frozen_stages=5)


def test_with_cp_gives_same_gradients():
    torch.manual_seed(0)
    plain = RepMLPNet(small_arch())
    ckpt = RepMLPNet(small_arch(), with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    for m in (plain, ckpt):
        sum(o.sum() for o in m(x)).backward()
    for (n, a), (_, b) in zip(plain.named_parameters(),
                              ckpt.named_parameters()):
        if n.startswith('head_norm'):  # unused without final_norm
            assert a.grad is None and b.grad is None
            continue
        assert_close(b.grad, a.grad, 1e-5, n)


@pytest.mark.parametrize('scope', ['mmseg', 'mmdet', 'mmpretrain'])
def test_registry_under_each_default_scope(scope):
    model = build_in_scope(scope, dict(type='mmrep.RepMLPNet',
                                       arch=small_arch()))
    assert isinstance(model, RepMLPNet)
