"""The OpenMMLab contract of every mmrep backbone: ``out_indices``,
``in_channels``, ``frozen_stages``, ``with_cp``, ``norm_eval``,
``norm_cfg``, the registry scopes, ``init_cfg``, and fused outputs equal to
the train-time ones.

Each test is parametrized over the backbone families registered in scope
``mmrep`` (every class of ``mmrep.registry.MODELS`` deriving from
:class:`~mmrep.models.backbones.base.RepBackbone`), so a new family is
checked without a line here. Each family runs at a small arch derived from
its smallest preset (:func:`tiny_arch`) on a ``2 x 3 x 32 x 48`` input.
The family test files keep what is the family's own: conformance with the
original releases, presets, arch rules and family-only options.
"""
import functools
import inspect
import itertools

import pytest
import torch
import torch.nn as nn
from conftest import assert_close, build_in_scope
from torch.nn.modules.batchnorm import _BatchNorm

import mmrep
import mmrep.models.backbones as backbones
from mmrep.checkpoints import CHECKPOINT_FAMILIES
from mmrep.models.backbones.base import RepBackbone
from mmrep.registry import MODELS
from mmrep.utils.testing import randomize_bn

#: What dropping blocks from the smallest preset does not give: small widths
#: (and partitions that fit :data:`INPUT_SIZE`), and a second block where a
#: kind of branch lives only in non-first blocks (RepVGG's identity BN,
#: RepMLP-Res50's RepMLP units in c3 / c4), so that fusion meets every
#: branch. A family missing here runs its smallest preset, one block per
#: stage.
SHRINK = {
    'CycleMLP': dict(channels=(8, 16, 32, 64), mlp_ratios=(2, 2, 2, 2)),
    'RepMLPNet': dict(channels=(8, 16, 32, 64), sharesets=(1, 2, 4, 8),
                      partition_sizes=(4, 2, 1, 1)),
    'RepMLPResNet': dict(num_blocks=(1, 2, 2, 1), img_size=(32, 48),
                         partition=(2, 3)),
    'RepVGG': dict(num_blocks=(1, 2, 1, 1), width_multiplier=(0.125, ) * 4,
                   group_layer_map={3: 2, 5: 4}),
}
INPUT_SIZE = (2, 3, 32, 48)
SCOPES = ['mmseg', 'mmdet', 'mmpretrain']
SYNC_BN = dict(type='SyncBN', requires_grad=True)


def registered_families():
    """``{class name: class}`` of the registered families
    (``CHECKPOINT_FAMILIES``; tests/project/test_layout.py checks that they are the
    backbones registered in scope mmrep)."""
    return {f.model.__name__: f.model
            for f in CHECKPOINT_FAMILIES.values()}


FAMILIES = registered_families()


@pytest.fixture(params=sorted(FAMILIES))
def family(request):
    return FAMILIES[request.param]


@functools.lru_cache(maxsize=None)
def smallest_preset(cls):
    """The preset of ``cls.arch_zoo`` with the fewest parameters (counted
    on the meta device)."""
    def count(name):
        with torch.device('meta'):
            return sum(p.numel() for p in cls(name).parameters())
    return min(cls.arch_zoo, key=count)


def tiny_arch(cls):
    """The smallest preset's settings with one block per stage, updated with
    the family's :data:`SHRINK` entry."""
    arch = cls.parse_arch(smallest_preset(cls))
    arch['num_blocks'] = (1, ) * len(arch['num_blocks'])
    arch.update(SHRINK.get(cls.__name__, {}))
    return cls.parse_arch(arch)


def build(cls, seed=0, **kwargs):
    """``cls`` at its tiny arch, weights drawn from ``seed``."""
    torch.manual_seed(seed)
    return cls(tiny_arch(cls), **kwargs)


def all_stages(cls):
    return tuple(range(len(tiny_arch(cls)['num_blocks'])))


def image(seed=0):
    return torch.randn(*INPUT_SIZE, generator=torch.Generator()
                       .manual_seed(seed))


def declared_channels(model):
    """The channels of each stage as the family declares them: its
    ``channels`` (RepVGG, RepMLP-Res50) or its arch's (RepMLPNet,
    CycleMLP)."""
    channels = getattr(model, 'channels', None)
    return tuple(model.arch['channels'] if channels is None else channels)


def close(actual, expected, what, rtol=1e-5):
    """Equal to ``rtol`` relative to the largest magnitude of ``expected``
    (absolute below magnitude 1; :func:`conftest.assert_close`)."""
    assert_close(actual, expected, rtol, what)


def norm_modules(model):
    """The norm layers ``norm_eval`` keeps in eval mode, BatchNorms
    included."""
    types = (_BatchNorm, *type(model).norm_eval_types)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, types)]


def module_prefixes(model, modules):
    """The ``named_modules`` names of ``modules``, as state-dict prefixes."""
    ids = {id(m) for m in modules}
    return tuple(f'{n}.' for n, m in model.named_modules() if id(m) in ids)


def grad_or_none(p):
    return None if p.grad is None else p.grad.clone()


# --------------------------------------------------------------------------
# the families
# --------------------------------------------------------------------------
def test_every_exported_backbone_is_registered():
    """The parametrization is not empty: every backbone ``mmrep.models``
    exports is a registered family, and :data:`SHRINK` names no other."""
    exported = {name: getattr(backbones, name) for name in backbones.__all__
                if issubclass(getattr(backbones, name), RepBackbone)}
    assert exported and exported == {n: FAMILIES[n] for n in exported}
    assert set(SHRINK) <= set(FAMILIES)


# --------------------------------------------------------------------------
# out_indices
# --------------------------------------------------------------------------
def test_out_indices(family):
    """Every stage at its declared channels; a subset (a negative index
    too) returns exactly those stages' maps; indices out of range are
    refused."""
    n = len(all_stages(family))
    full = build(family, out_indices=all_stages(family)).eval()
    x = image()
    with torch.no_grad():
        outs = full(x)
    channels = declared_channels(full)
    assert len(outs) == len(channels) == n
    for i, out in enumerate(outs):
        assert out.shape[:2] == (x.shape[0], channels[i]), f'stage {i}'
        if i:
            assert out.shape[-2] <= outs[i - 1].shape[-2] and \
                out.shape[-1] <= outs[i - 1].shape[-1], f'stage {i}'

    some = build(family, out_indices=(1, -1)).eval()
    assert some.out_indices == (1, n - 1)
    state = full.state_dict()  # every output's layers: a superset
    some.load_state_dict({k: state[k] for k in some.state_dict()})
    with torch.no_grad():
        picked = some(x)
    assert len(picked) == 2
    assert torch.equal(picked[0], outs[1]) and torch.equal(picked[1], outs[-1])
    for bad in ((n, ), (-n - 1, )):
        with pytest.raises(ValueError, match='out_indices'):
            build(family, out_indices=bad)


# --------------------------------------------------------------------------
# in_channels
# --------------------------------------------------------------------------
def test_in_channels(family):
    """Any positive int of image channels is built and runs; anything else
    is refused at construction (as the arch values are), not at the first
    forward pass."""
    name = family.__name__
    for bad in (0, -3, 3.0, '3', True, None, (3, )):
        with pytest.raises(ValueError) as err:
            build(family, in_channels=bad)
        assert str(err.value) == \
            f'{name} in_channels={bad!r}: {bad!r} is not a positive int'
    model = build(family, in_channels=1).eval()
    with torch.no_grad():
        outs = model(image()[:, :1])
    assert len(outs) == len(model.out_indices)
    assert model.in_channels == 1


# --------------------------------------------------------------------------
# frozen_stages
# --------------------------------------------------------------------------
@pytest.mark.parametrize('which', ['stem', 'two stages', 'all'])
def test_frozen_stages(family, which):
    """``frozen_stages=k``: the stem and the first ``k`` stages (the
    family's :meth:`stem_and_stages`) get no gradients and stay in eval mode
    after ``train()``; the later ones train. An optimizer step changes no
    tensor of the frozen modules and no output of the frozen stages, and
    changes every later stage. Frozen layers stay frozen through fusion;
    ``k`` above the number of stages is refused."""
    n = len(all_stages(family))
    k = dict(stem=0, all=n).get(which, 2)
    model = build(family, frozen_stages=k,
                  out_indices=all_stages(family)).train()
    free = build(family).train()
    assert model.training
    stem, stages = model.stem_and_stages()
    assert len(stages) == n
    frozen = [*stem, *itertools.chain(*stages[:k])]
    live = [list(s) for s in stages[k:]]

    def check_groups(m, what):
        s, st = m.stem_and_stages()
        for module in [*s, *itertools.chain(*st[:k])]:
            assert all(not p.requires_grad for p in module.parameters()), \
                what
        for stage in st[k:]:
            for module in stage:
                assert all(p.requires_grad for p in module.parameters()), \
                    what

    assert all(list(m.parameters()) for m in stem), 'a stem without weights'
    check_groups(model, 'before fusion')
    for module in frozen:
        assert not any(m.training for m in module.modules())
    for module in itertools.chain(*live):
        assert all(m.training for m in module.modules())
    # Parameters outside the stem and the stages: as without freezing.
    grouped = {id(p) for m in [*stem, *itertools.chain(*stages)]
               for p in m.parameters()}
    for (name, p), q in zip(model.named_parameters(), free.parameters()):
        if id(p) not in grouped:
            assert p.requires_grad == q.requires_grad, name

    # One training step.
    x = image()
    with torch.no_grad():
        before_outs = [o.clone() for o in model(x)]
    before = {k_: v.clone() for k_, v in model.state_dict().items()}
    optim = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9,
                            weight_decay=1e-2)
    loss = sum((o ** 2).mean() for o in model(x))
    if loss.requires_grad:
        loss.backward()
        optim.step()
    after = model.state_dict()
    frozen_keys = [key for key in after
                   if key.startswith(module_prefixes(model, frozen))]
    assert frozen_keys
    for key in frozen_keys:
        assert torch.equal(after[key], before[key]), f'{key} changed'
    for i, stage in enumerate(live, k):
        prefixes = module_prefixes(model, stage)
        assert any(not torch.equal(p, before[key])
                   for key, p in model.named_parameters()
                   if key.startswith(prefixes)), \
            f'no parameter of stage {i} trained'
    with torch.no_grad():
        after_outs = model(x)
    for i, (a, b) in enumerate(zip(before_outs, after_outs)):
        assert torch.equal(a, b) == (i < k), \
            f'stage {i} output {"changed" if i < k else "did not change"}'

    # Fusion replaces layers: the new ones of frozen stages are frozen.
    mmrep.reparameterize_model(model, inplace=True)
    check_groups(model, 'after fusion')
    if which == 'all':
        with pytest.raises(ValueError, match='frozen_stages'):
            build(family, frozen_stages=n + 1)


# --------------------------------------------------------------------------
# with_cp
# --------------------------------------------------------------------------
def check_with_cp(cls, arch, x, monkeypatch):
    """``with_cp=True`` checkpoints blocks and gives the outputs, the input
    gradient and every parameter gradient of ``with_cp=False`` (same
    weights, training mode); exactly the trainable parameters get a gradient
    (DDP waits for no other)."""
    calls = []
    checkpoint = torch.utils.checkpoint.checkpoint

    def counted(*args, **kwargs):
        calls.append(1)
        return checkpoint(*args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, 'checkpoint', counted)
    torch.manual_seed(0)
    plain = cls(arch, out_indices=tuple(range(len(arch['num_blocks']))))
    with_cp = cls(arch, out_indices=plain.out_indices, with_cp=True)
    with_cp.load_state_dict(plain.state_dict())
    results = []
    for model in (plain, with_cp):
        model.train()
        del calls[:]
        xi = x.clone().requires_grad_()
        outs = model(xi)
        sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum()
            for o in outs).backward()
        results.append((len(calls), outs, xi.grad,
                        [grad_or_none(p) for p in model.parameters()]))
    (n_plain, outs, gx, grads), (n_cp, outs_cp, gx_cp, grads_cp) = results
    assert n_plain == 0 and n_cp >= len(outs), \
        f'{n_cp} checkpointed calls for {len(outs)} stages'
    for i, (a, b) in enumerate(zip(outs_cp, outs)):
        close(a, b, f'stage {i} output')
    close(gx_cp, gx, 'input gradient')
    for (name, p), a, b in zip(plain.named_parameters(), grads_cp, grads):
        assert (a is not None) == (b is not None) == p.requires_grad, \
            f'{name}: requires_grad {p.requires_grad}, gradient ' \
            f'{b is not None} (with_cp: {a is not None})'
        if a is not None:
            close(a, b, f'gradient of {name}')


def test_with_cp(family, monkeypatch):
    check_with_cp(family, tiny_arch(family), image(), monkeypatch)


# --------------------------------------------------------------------------
# norm_eval
# --------------------------------------------------------------------------
def test_norm_eval(family):
    """``norm_eval=True``: after ``train()`` (also a second one) every norm
    layer is in eval mode and the rest trains, a forward changes no running
    statistic and gives the eval-mode outputs, and no parameter is frozen
    by it. Without it, BatchNorms train and their statistics move."""
    model = randomize_bn(build(family, norm_eval=True,
                               out_indices=all_stages(family)))
    free = build(family).train()
    norms = norm_modules(model)
    assert norms, 'no norm layer to keep in eval mode'
    x = image()
    with torch.no_grad():
        expected = model.eval()(x)
    for _ in range(2):
        model.train()
        assert model.training
        norm_ids = {id(m) for _, m in norms}
        for name, m in model.named_modules():
            assert m.training != (id(m) in norm_ids), name
    assert [p.requires_grad for p in model.parameters()] == \
        [p.requires_grad for p in free.parameters()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        outs = model(x)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f'{k} changed'
    for i, (a, b) in enumerate(zip(outs, expected)):
        assert torch.equal(a, b), f'stage {i}: train-mode output'

    bns = [m for m in free.modules() if isinstance(m, _BatchNorm)]
    assert all(m.training for m in bns)
    stats = [m.running_mean.clone() for m in bns]
    with torch.no_grad():
        free(x)
    assert not bns or not all(torch.equal(m.running_mean, s)
                              for m, s in zip(bns, stats))


# --------------------------------------------------------------------------
# norm_cfg
# --------------------------------------------------------------------------
def bn_types(model):
    """``{module name: type}`` of every BatchNorm of ``model``."""
    return {name: type(m) for name, m in model.named_modules()
            if isinstance(m, _BatchNorm)}


def takes_norm_cfg(cls):
    return 'norm_cfg' in inspect.signature(cls).parameters


def test_norm_cfg_syncbn(family, tmp_path):
    """``norm_cfg=SyncBN``: a SyncBatchNorm in every position of a BN (the
    branches' included), the same state-dict keys and trainable parameters,
    a BN model's file loads through ``init_cfg``, and it fuses to the BN
    model's fused weights and outputs, with no SyncBatchNorm left. A family
    without BatchNorm (CycleMLP, whose norms are LayerNorms) takes no
    ``norm_cfg`` and refuses one."""
    if not takes_norm_cfg(family):
        assert not bn_types(build(family))
        with pytest.raises(TypeError, match='norm_cfg'):
            build(family, norm_cfg=SYNC_BN)
        return
    out_indices = all_stages(family)
    plain = randomize_bn(build(family, out_indices=out_indices)).eval()
    ckpt = str(tmp_path / 'bn.pth')
    torch.save(plain.state_dict(), ckpt)
    sync = build(family, seed=1, out_indices=out_indices, norm_cfg=SYNC_BN,
                 init_cfg=dict(type='Pretrained', checkpoint=ckpt))
    plain_bns, sync_bns = bn_types(plain), bn_types(sync)
    assert plain_bns and set(sync_bns) == set(plain_bns)
    assert all(issubclass(t, nn.SyncBatchNorm) for t in sync_bns.values())
    assert sync.state_dict().keys() == plain.state_dict().keys()
    assert [n for n, p in sync.named_parameters() if p.requires_grad] == \
        [n for n, p in plain.named_parameters() if p.requires_grad]
    sync.init_weights()
    sync.eval()
    x = image()
    with torch.no_grad():
        for i, (a, b) in enumerate(zip(sync(x), plain(x))):
            assert torch.equal(a, b), f'stage {i}: SyncBN model output'

    fused_plain = mmrep.reparameterize_model(plain)
    fused_sync = mmrep.reparameterize_model(sync)
    assert not any(isinstance(m, nn.SyncBatchNorm)
                   for m in fused_sync.modules())
    a, b = fused_plain.state_dict(), fused_sync.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    with torch.no_grad():
        for i, (f, e) in enumerate(zip(fused_sync(x), fused_plain(x))):
            assert torch.equal(f, e), f'stage {i}: fused SyncBN output'


def test_norm_cfg_options_reach_every_bn(family):
    """``momentum``, ``eps`` and ``requires_grad`` of ``norm_cfg`` reach
    every BatchNorm; the fusion uses that ``eps`` (fused outputs equal the
    train-time ones) and a deploy twin built from the same arguments keeps
    it."""
    if not takes_norm_cfg(family):
        pytest.skip(f'{family.__name__} takes no norm_cfg '
                    '(test_norm_cfg_syncbn checks the refusal)')
    cfg = dict(type='BN', momentum=0.01, eps=0.5, requires_grad=False)
    model = build(family, norm_cfg=cfg, out_indices=all_stages(family))
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(m.momentum == 0.01 and m.eps == 0.5 for m in bns)
    assert not any(p.requires_grad for m in bns for p in m.parameters())
    twin = family(**dict(model._build_args, deploy=True))
    assert all(m.eps == 0.5 for m in twin.modules()
               if isinstance(m, _BatchNorm))
    randomize_bn(model).eval()
    x = image()
    with torch.no_grad():
        for i, (f, e) in enumerate(zip(mmrep.reparameterize_model(model)(x),
                                       model(x))):
            close(f, e, f'stage {i}: fused with eps=0.5', 1e-4)


# --------------------------------------------------------------------------
# registry scopes
# --------------------------------------------------------------------------
@pytest.mark.parametrize('scope', SCOPES)
def test_registry_under_default_scope(family, scope):
    """``type='mmrep.<Name>'`` builds mmrep's class (not a namesake of that
    library: mmpretrain has a RepVGG and a RepMLPNet) with the given
    arguments, a deploy config's too, under that library's default scope and
    MODELS registry."""
    n = len(all_stages(family))
    model = build_in_scope(scope, dict(
        type=f'mmrep.{family.__name__}', arch=tiny_arch(family),
        out_indices=(-1, ), deploy=True))
    assert type(model) is family
    assert model.out_indices == (n - 1, ) and model.deploy


def test_registry_in_mmrep_scope(family):
    """``type='<Name>'`` under default scope mmrep, through mmrep's MODELS
    and through mmengine's root registry."""
    from mmengine.registry import MODELS as ROOT_MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmrep')
    cfg = dict(type=family.__name__, arch=tiny_arch(family),
               out_indices=(0, ))
    for registry in (MODELS, ROOT_MODELS):
        model = registry.build(dict(cfg))
        assert type(model) is family and model.out_indices == (0, )
    assert MODELS.get(family.__name__) is family


# --------------------------------------------------------------------------
# init_cfg
# --------------------------------------------------------------------------
def test_init_cfg(family, tmp_path):
    """``init_cfg=Pretrained`` on a file saved from another instance (its
    bare state dict, or a runner checkpoint of a model around it) loads
    exactly that instance's weights and statistics; ``init_cfg=None`` keeps
    a random initialization, another one for another seed."""
    out_indices = all_stages(family)
    source = randomize_bn(build(family, seed=1, out_indices=out_indices))
    state = source.state_dict()
    files = dict(state_dict=state, runner={
        'state_dict': {f'backbone.{k}': v for k, v in state.items()},
        'meta': {}})
    x = image()
    with torch.no_grad():
        expected = source.eval()(x)

    def weights(m):
        return [p.detach().clone() for n, p in m.named_parameters()
                if n.endswith('weight') and p.dim() > 1]

    random = build(family, seed=2, out_indices=out_indices, init_cfg=None)
    random.init_weights()
    with torch.no_grad():
        assert not torch.equal(random.eval()(x)[-1], expected[-1])
    for layout, content in files.items():
        ckpt = str(tmp_path / f'{layout}.pth')
        torch.save(content, ckpt)
        loaded = build(family, seed=3, out_indices=out_indices,
                       init_cfg=dict(type='Pretrained', checkpoint=ckpt))
        initial = weights(loaded)
        assert initial and not any(
            torch.equal(a, b) for a, b in zip(initial, weights(random))), \
            'the same random weights for another seed'
        loaded.init_weights()
        for k, v in state.items():
            assert torch.equal(loaded.state_dict()[k], v), f'{layout}: {k}'
        with torch.no_grad():
            for i, (a, b) in enumerate(zip(loaded.eval()(x), expected)):
                assert torch.equal(a, b), f'{layout}: stage {i} output'


# --------------------------------------------------------------------------
# fused == train-time
# --------------------------------------------------------------------------
def test_fused_equals_train_time(family):
    """With random BN statistics, ``mmrep.reparameterize_model`` gives the
    train-time eval outputs of every stage to 1e-4 relative, leaves the
    model as it was, and returns the layout of a ``deploy=True`` build (no
    train-time branch left, the BNs it folds gone, the same trainable
    parameters; its weights load there and give its outputs). A family
    with nothing to fuse comes out with the same tensors and the same
    outputs, bit for bit."""
    model = randomize_bn(build(family, out_indices=all_stages(family)))
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = image()
    with torch.no_grad():
        expected = model(x)
        fused = mmrep.reparameterize_model(model)
        outs = fused(x)
    assert not model.deploy and not model._build_args['deploy']
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert fused.deploy and fused._build_args['deploy'] and not fused.training
    assert len(outs) == len(expected) == len(all_stages(family))
    for i, (f, e) in enumerate(zip(outs, expected)):
        close(f, e, f'fused stage {i}', 1e-4)

    fused_state = fused.state_dict()
    twin = family(**fused._build_args).eval()
    assert fused_state.keys() == twin.state_dict().keys()
    assert set(bn_types(fused)) == set(bn_types(twin))
    assert not any(getattr(m, 'deploy', True) is False
                   for m in fused.modules())
    assert [(n, p.requires_grad) for n, p in fused.named_parameters()] == \
        [(n, p.requires_grad) for n, p in twin.named_parameters()]
    twin.load_state_dict(fused_state)
    with torch.no_grad():
        for i, (a, b) in enumerate(zip(twin(x), outs)):
            assert torch.equal(a, b), f'stage {i}: deploy build'
    if fused_state.keys() == state.keys():  # nothing to fuse
        assert all(torch.equal(v, state[k]) for k, v in fused_state.items())
        for i, (f, e) in enumerate(zip(outs, expected)):
            assert torch.equal(f, e), f'stage {i} changed'
    elif bn_types(model):
        assert len(bn_types(fused)) < len(bn_types(model))
