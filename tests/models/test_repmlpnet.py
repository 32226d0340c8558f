"""RepMLPNet: conformance with the original release and mmpretrain,
presets, any input size, partition orders, Locality Injection, loading.
The OpenMMLab switches are checked in test_backbone_contract.py."""
import copy
import json
import os.path as osp

import pytest
import torch
import torch.nn as nn
import conftest
from conftest import (FIXTURES, assert_close, check_pretrained_features,
                      fixture_params, load_fixture, load_via_init_cfg,
                      mmrep_arch)

import mmrep
from mmrep.checkpoints import CheckpointMismatchError
from mmrep.models.backbones import RepMLPNet
from mmrep.models.backbones.repmlpnet import RepMLPBlock
from mmrep.utils.testing import randomize_bn


def small_arch(**kw):
    arch = dict(channels=(16, 32, 64, 128), num_blocks=(1, 1, 1, 1),
                sharesets=(1, 4, 8, 16), partition_sizes=(8, 4, 2, 2))
    arch.update(kw)
    return arch


def build_classifier(arch, num_classes, deploy=False, **kwargs):
    """mmpretrain ImageClassifier around an mmrep RepMLPNet."""
    return conftest.build_classifier(
        dict(type='mmrep.RepMLPNet', arch=arch, out_indices=(-1, ),
             final_norm=True, deploy=deploy, **kwargs),
        RepMLPNet.parse_arch(arch)['channels'][-1], num_classes)


def check_original_fixture(fx, tmp_path, suffix='', **kwargs):
    """Features, logits and fused logits of an original RepMLPNet fixture.

    Args:
        fx (dict): the fixture.
        tmp_path (Path): where the original weights are saved.
        suffix (str): which of the fixture's outputs to match (``''``: the
            original's, ``'_spatial'``: partitions kept in place).
        **kwargs: backbone options (``partition_order``).
    """
    arch = dict(fx['arch'])
    num_classes = arch.pop('num_class')
    arch = mmrep_arch('repmlpnet', arch)
    ckpt = str(tmp_path / 'original.pth')
    torch.save(fx['state_dict'], ckpt)

    # Features: the backbone loads the original file through init_cfg.
    check_pretrained_features(RepMLPNet, arch, ckpt, fx['input'],
                              fx['features' + suffix], **kwargs)

    # Logits: an mmpretrain classifier loads the same file, head included.
    clf = build_classifier(arch, num_classes, **kwargs)
    mmrep.load_pretrained(clf, ckpt)
    clf.eval()
    with torch.no_grad():
        logits = clf(fx['input'], mode='tensor')
    assert_close(logits, fx['logits' + suffix], 1e-4, 'logits')

    # Locality Injection through the one protocol.
    fused = mmrep.reparameterize_model(clf)
    assert fused.backbone.deploy and not clf.backbone.deploy
    assert not any('repconv' in k or 'fc3_bn' in k
                   for k in fused.state_dict())
    with torch.no_grad():
        assert_close(fused(fx['input'], mode='tensor'),
                     fx['deploy_logits' + suffix], 1e-4, 'deploy logits')

    # The original's fused checkpoint loads into a deploy model.
    deployed = build_classifier(arch, num_classes, deploy=True, **kwargs)
    mmrep.load_pretrained(deployed, fx['deploy_state_dict'])
    deployed.eval()
    with torch.no_grad():
        assert_close(deployed(fx['input'], mode='tensor'),
                     fx['deploy_logits' + suffix], 1e-4,
                     'original deploy weights')

    # A train-time checkpoint into a deploy model is fused on load.
    fused_on_load = build_classifier(arch, num_classes, deploy=True,
                                     **kwargs)
    mmrep.load_pretrained(fused_on_load, ckpt)
    fused_on_load.eval()
    with torch.no_grad():
        assert_close(fused_on_load(fx['input'], mode='tensor'),
                     fx['deploy_logits' + suffix], 1e-4, 'fused on load')


def one_partition_per_stage(fx):
    """Whether every stage map of the fixture's input is one partition."""
    H, W = fx['input'].shape[-2:]
    arch = fx['arch']
    return all(-(-H // (4 * 2**i)) == h and -(-W // (4 * 2**i)) == w
               for i, (h, w) in enumerate(zip(arch['hs'], arch['ws'])))


@fixture_params('repmlpnet_small_s*.pt')
@pytest.mark.parametrize('order', ['spatial', 'original'])
def test_conformance_with_original(fixture_path, order, tmp_path):
    """One partition per stage map: both partition orders compute what the
    original does."""
    fx = load_fixture(fixture_path)
    if order == 'spatial' and not one_partition_per_stage(fx):
        pytest.skip('several partitions per stage: this fixture format holds '
                    'only the original order\'s outputs')
    check_original_fixture(fx, tmp_path, partition_order=order)


@fixture_params('repmlpnet_multipart_s*.pt')
@pytest.mark.parametrize('order', ['spatial', 'original'])
def test_multipart_conformance(fixture_path, order, tmp_path):
    """Several partitions per stage map: the default order keeps each
    partition's result in place (the fixture's ``*_spatial`` outputs);
    ``partition_order='original'`` gives the original release's outputs."""
    fx = load_fixture(fixture_path)
    check_original_fixture(fx, tmp_path,
                           '_spatial' if order == 'spatial' else '',
                           partition_order=order)


def test_partition_orders_differ_on_several_partitions():
    """The option matters exactly when a map holds several partitions and a
    share set several channels; a bad value is refused."""
    torch.manual_seed(0)
    spatial = randomize_bn(RepMLPBlock(8, (4, 4), num_sharesets=2)).eval()
    original = RepMLPBlock(8, (4, 4), num_sharesets=2,
                           partition_order='original').eval()
    original.load_state_dict(spatial.state_dict())
    with torch.no_grad():
        one = torch.randn(2, 8, 4, 4)
        assert torch.equal(spatial(one), original(one))
        many = torch.randn(2, 8, 8, 12)
        assert (spatial(many) - original(many)).abs().max() > 1e-2
    with pytest.raises(ValueError, match="partition_order must be one of "
                       r"\('spatial', 'original'\), got 'paper'"):
        RepMLPNet(small_arch(), partition_order='paper')


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
        mmrep.reparameterize_model(model, inplace=True)
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


@pytest.mark.parametrize('order', ['spatial', 'original'])
@pytest.mark.parametrize('size', [(5, 7), (33, 65), (100, 37), (64, 64),
                                  (1, 1)])
def test_any_input_size_runs_and_fuses(size, order):
    torch.manual_seed(0)
    model = randomize_bn(RepMLPNet(small_arch(),
                                   partition_order=order)).eval()
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


@pytest.mark.parametrize('order', ['spatial', 'original'])
@pytest.mark.parametrize('size', [(13, 21), (3, 5), (16, 24)])
def test_block_pads_bottom_right_and_crops(size, order):
    """With the gate held at 1, a block applied to a map equals the block
    applied to that map zero-padded on the bottom/right, cropped back."""
    torch.manual_seed(0)
    block = randomize_bn(RepMLPBlock(8, (8, 8), num_sharesets=2,
                                     conv_kernels=(1, 3),
                                     partition_order=order)).eval()
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


MMP_ARCH = dict(channels=[32, 64, 128, 256], depths=[1, 1, 2, 1],
                sharesets_nums=[1, 4, 8, 16])
# mmrep's arch for mmpretrain's RepMLPNet(MMP_ARCH, img_size=64).
MMP_AS_MMREP = dict(channels=MMP_ARCH['channels'],
                    num_blocks=MMP_ARCH['depths'],
                    sharesets=MMP_ARCH['sharesets_nums'],
                    partition_sizes=(16, 8, 4, 2))


def mmpretrain_repmlpnet(**kwargs):
    """mmpretrain's own RepMLPNet (MMP_ARCH at 64x64), random weights and
    BN statistics, eval mode."""
    from mmpretrain.models.backbones import RepMLPNet as MMPRepMLPNet
    torch.manual_seed(0)
    return randomize_bn(MMPRepMLPNet(
        copy.deepcopy(MMP_ARCH), img_size=64, out_indices=(3, ),
        reparam_conv_kernels=(1, 3), **kwargs)).eval()


def assert_matches_mmpretrain(ours, theirs, what):
    """Equal to 1e-4 relative to the largest magnitude: both sides are
    float32 computations in a different order (outputs here reach ~60, so an
    absolute 1e-4 would be below float32 rounding; mmpretrain's own fused
    and train-time forms differ by ~5e-5)."""
    assert_close(ours, theirs, 1e-4 * max(1., theirs.abs().max().item()),
                 what)


def tall_local_perceptron(block, x, hp, wp):
    """The conv branches as the original runs them: ``M`` images of ``S``
    channels, each ConvBN module applied in turn."""
    N, C = x.shape[:2]
    h, w, S = block.h, block.w, block.num_sharesets
    local = x.reshape(N, C, hp, h, wp, w).permute(0, 2, 4, 1, 3, 5)
    local = local.reshape(-1, S, h, w)
    return sum(getattr(block, f'repconv{k}')(local)
               for k in block.conv_kernels).view(-1, C, h, w)


@pytest.mark.parametrize('size', [(8, 12), (7, 10)])
def test_training_step_equals_straightforward_branches(size, monkeypatch):
    """The local perceptron computed channels-last over all channels gives
    the straightforward form's outputs, every gradient and the same BN
    running statistics after one training step. In float64: the 1x1
    branch's weight gradient is zero up to rounding (BN in training mode
    makes the output invariant to that weight's scale), so float32 would
    compare rounding noise."""
    torch.manual_seed(0)
    block = randomize_bn(RepMLPBlock(8, (4, 4), num_sharesets=2,
                                     conv_kernels=(1, 3, 5))).double()
    block.train()
    ref_block = copy.deepcopy(block)
    x = torch.randn(2, 8, *size, dtype=torch.float64)
    grad = torch.randn(2, 8, *size, dtype=torch.float64)
    x_ref = x.clone().requires_grad_()
    x.requires_grad_()
    out = block(x)
    out.backward(grad)
    with monkeypatch.context() as m:
        m.setattr(RepMLPBlock, 'local_perceptron', tall_local_perceptron)
        ref = ref_block(x_ref)
        ref.backward(grad)
    pairs = [('output', out, ref), ('input gradient', x.grad, x_ref.grad)]
    pairs += [(f'gradient of {name}', p.grad, q.grad) for (name, p), q in
              zip(block.named_parameters(), ref_block.parameters())]
    pairs += [(name, b, c) for (name, b), c in
              zip(block.named_buffers(), ref_block.buffers())]
    for what, a, b in pairs:  # in float64, unlike assert_close
        diff = (a - b).abs().max().item()
        assert diff <= 1e-10, f'{what}: max abs diff {diff:.3g}'



def _in_our_names(theirs, ours_like, values):
    """mmpretrain's state dict with ``values`` (name -> tensor) in place of
    its entries, loaded into a fresh model built like ``ours_like``: the
    same tensors under mmrep's names."""
    state = dict(theirs.state_dict(), **values)
    twin = RepMLPNet(**ours_like._build_args).to(torch.float64)
    mmrep.load_pretrained(twin, {'state_dict': {
        'backbone.' + k: v for k, v in state.items()}})
    return twin


def test_training_step_equals_mmpretrain():
    """One float64 training step of the whole backbone, mmrep against
    mmpretrain's RepMLPNet (the original's layout: the partition FC as a
    grouped 1x1 convolution, the conv branches on ``N * partitions * C/S``
    images of ``S`` channels): the outputs, every parameter's gradient and
    every BN's running statistics afterwards. mmpretrain runs only its
    ``img_size``, one partition per stage; several partitions are covered
    by the fixtures (forward) and by
    :func:`test_training_step_equals_straightforward_branches`."""
    theirs = mmpretrain_repmlpnet()
    ours = RepMLPNet(MMP_AS_MMREP, out_indices=(3, ), final_norm=True)
    mmrep.load_pretrained(ours, {'state_dict': {
        'backbone.' + k: v for k, v in theirs.state_dict().items()}})
    theirs.to(torch.float64)
    theirs.train()
    ours.to(torch.float64)
    ours.train()
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    out, ref = ours(x)[0], theirs(x)[0]
    grad = torch.randn_like(out)
    out.backward(grad)
    ref.backward(grad)
    diff = (out - ref).abs().max().item()
    assert diff <= 1e-9 * max(1., ref.abs().max().item()), f'output: {diff}'
    grads = _in_our_names(theirs, ours, {
        k: p.grad for k, p in theirs.named_parameters()})
    stats = _in_our_names(theirs, ours, {})
    for (name, p), q in zip(ours.named_parameters(), grads.parameters()):
        assert p.grad is not None, f'{name}: no gradient'
        diff = (p.grad - q).abs().max().item()
        assert diff <= 1e-9 * max(1., q.abs().max().item()), \
            f'gradient of {name}: max abs diff {diff:.3g}'
    for (name, b), c in zip(ours.named_buffers(), stats.buffers()):
        if b.is_floating_point():
            diff = (b - c).abs().max().item()
            assert diff <= 1e-9 * max(1., c.abs().max().item()), \
                f'{name} after the step: max abs diff {diff:.3g}'
        else:
            assert torch.equal(b, c), name


def test_mmpretrain_checkpoint_converts():
    theirs = mmpretrain_repmlpnet()
    ours = RepMLPNet(MMP_AS_MMREP, out_indices=(3, ), final_norm=True).eval()
    x = torch.randn(2, 3, 64, 64)
    mmrep.load_pretrained(ours, {'state_dict': {
        'backbone.' + k: v for k, v in theirs.state_dict().items()}})
    with torch.no_grad():
        assert_matches_mmpretrain(ours(x)[0], theirs(x)[0],
                                  'mmpretrain train form')
        theirs.switch_to_deploy()
        fused = RepMLPNet(copy.deepcopy(ours._build_args['arch']),
                          out_indices=(3, ), final_norm=True,
                          deploy=True).eval()
        mmrep.load_pretrained(fused, theirs.state_dict())
        assert_matches_mmpretrain(fused(x)[0], theirs(x)[0],
                                  'mmpretrain fused')


@pytest.mark.parametrize('saved_as', ['classifier', 'backbone'])
def test_mmpretrain_checkpoint_without_final_norm(saved_as, tmp_path):
    """mmpretrain's ``final_norm=False`` saves no final-norm tensors: the
    checkpoint loads into ``final_norm=False`` models (the unused
    ``head_norm`` keeps its initialization) and is refused, naming the
    missing keys, by ``final_norm=True``."""
    theirs = mmpretrain_repmlpnet(final_norm=False)
    state = theirs.state_dict()
    assert not any(k.startswith('final_norm.') for k in state)
    if saved_as == 'classifier':  # mmpretrain's ImageClassifier layout
        clf = conftest.build_classifier(dict(
            type='RepMLPNet', arch=copy.deepcopy(MMP_ARCH), img_size=64,
            out_indices=(3, ), reparam_conv_kernels=(1, 3),
            final_norm=False), 256, 5)
        clf.backbone.load_state_dict(state)
        clf.eval()
        state = clf.state_dict()
    ckpt = str(tmp_path / 'mmpretrain.pth')
    torch.save({'state_dict': state, 'meta': {}}, ckpt)
    x = torch.randn(2, 3, 64, 64)
    backbone = load_via_init_cfg(RepMLPNet, ckpt, MMP_AS_MMREP,
                                 out_indices=(3, ))
    with torch.no_grad():
        assert_matches_mmpretrain(backbone(x)[0], theirs(x)[0], 'features')
        if saved_as == 'classifier':
            ours = conftest.build_classifier(
                dict(type='mmrep.RepMLPNet', arch=MMP_AS_MMREP,
                     out_indices=(3, )), 256, 5)
            mmrep.load_pretrained(ours, ckpt)
            assert_matches_mmpretrain(ours.eval()(x, mode='tensor'),
                                      clf(x, mode='tensor'), 'logits')
    with pytest.raises(CheckpointMismatchError,
                       match=r"missing keys \(5\): \['head_norm.weight', "
                       r"'head_norm.bias', 'head_norm.running_mean', "
                       r"'head_norm.running_var', "
                       r"'head_norm.num_batches_tracked'\]"):
        mmrep.load_pretrained(RepMLPNet(MMP_AS_MMREP, final_norm=True), ckpt)


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


def test_fitted_partitions_split_each_map_into_fewest_equal_parts():
    from mmrep.models.backbones.repmlpnet import fitted_partitions
    for n in range(1, 130):
        for limit in (1, 2, 3, 5, 7, 8, 14, 16, 28, 32, 56):
            ((p, q), ) = fitted_partitions([(n, n)], [(limit, limit)])
            assert p == q
            parts = -(-n // p)  # partitions of p along the side
            assert p <= limit
            assert parts == -(-n // limit)  # the fewest that fit the limit
            assert parts * p - n < parts  # under a row per partition
            if n <= limit:
                assert p == n
    # each side on its own
    assert fitted_partitions([(90, 120), (23, 30)], [(16, 32), (4, 8)]) == \
        ((15, 30), (4, 8))


def test_auto_partition_sizes_follow_the_crop(monkeypatch):
    from mmrep.models.backbones import repmlpnet
    logged = []
    monkeypatch.setattr(repmlpnet, 'print_log',
                        lambda msg, **kwargs: logged.append(msg))
    arch = small_arch(partition_sizes=((16, 32), (8, 16), (4, 8), (2, 4)))
    for size in ((192, 256), (360, 480), (100, 60)):
        logged.clear()
        model = RepMLPNet(arch, partition_sizes='auto', input_size=size)
        maps = model.stage_map_sizes(size)
        chosen = model.arch['partition_sizes']
        assert chosen == repmlpnet.fitted_partitions(
            maps, ((16, 32), (8, 16), (4, 8), (2, 4)))
        assert logged == [
            f"RepMLPNet partition_sizes='auto' for input {size[0]}x{size[1]}"
            f": stage maps {', '.join(f'{h}x{w}' for h, w in maps)} -> "
            f"partitions {', '.join(f'{h}x{w}' for h, w in chosen)}"]
        # the blocks are built with them, and nothing pads by much
        assert [(stage[0].repmlp_block.h, stage[0].repmlp_block.w)
                for stage in model.stages] == list(chosen)
        assert not model.warn_if_mostly_padding(size)
    # at 360x480 the T224 preset's partitions become 45x40 ... 6x5
    with torch.device('meta'):
        t224 = RepMLPNet('T224', partition_sizes='auto',
                         input_size=(360, 480))
    assert t224.arch['partition_sizes'] == (
        (45, 40), (23, 20), (12, 10), (6, 5))
    # a forward at the crop gives the stage maps
    model = RepMLPNet(arch, partition_sizes='auto',
                      input_size=(100, 60)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 100, 60))
    assert [tuple(o.shape[-2:]) for o in outs] == \
        model.stage_map_sizes((100, 60))


@pytest.mark.parametrize('input_size', [None, (0, 256), (192, ), 'big'])
def test_auto_partition_sizes_need_the_crop(input_size):
    with pytest.raises(mmrep.MmrepError) as e:
        RepMLPNet(small_arch(), partition_sizes='auto',
                  input_size=input_size)
    assert str(e.value) == (
        "RepMLPNet partition_sizes='auto' needs input_size=(H, W), the "
        f'training crop; got input_size={input_size!r}')


def test_padding_warning_suggests_the_auto_partitions(monkeypatch):
    from mmrep.models.backbones import repmlpnet
    logged = []
    monkeypatch.setattr(repmlpnet, 'print_log',
                        lambda msg, **kwargs: logged.append(msg))
    with torch.device('meta'):
        t224 = RepMLPNet('T224')
        auto = RepMLPNet('T224', partition_sizes='auto',
                         input_size=(64, 96))
    assert t224.warn_if_mostly_padding((64, 96))
    suggested = tuple(h if h == w else (h, w)
                      for h, w in auto.arch['partition_sizes'])
    assert logged[-1].endswith(f'partition_sizes={suggested} fit these maps')
