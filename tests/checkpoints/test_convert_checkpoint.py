"""tools/convert_checkpoint.py on weights laid out as the original releases
(names and shapes from the fixtures' ``*_full_keys.json`` listings, random
values) and as mmpretrain's own models: every key is consumed, nothing is
missing, and the result loads strictly into the model a ``configs/imagenet``
config builds."""
import json
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmrep  # noqa: F401
from mmrep.checkpoints.conversion import mmrep_arch
from mmrep.deploy import make_deploy_config
from mmrep.models.layers.cycle_fc import cycle_offset
from mmrep.utils import safe_load

from conftest import FIXTURES
from tool_runner import REPO, main_or_error, run_tool

CONFIG_DIR = osp.join(REPO, 'configs', 'imagenet')


def convert(argv):
    """Run tools/convert_checkpoint.py in this process.

    Returns:
        int | str: its exit status (0) when it wrote DST, else the
        ``error:`` line it exits with (status 1).
    """
    return main_or_error('convert_checkpoint', argv)


def listing(family_file, preset):
    with open(osp.join(FIXTURES, f'{family_file}_full_keys.json')) as f:
        return json.load(f)[preset]


def synthetic_state(shapes, seed=0):
    """Random tensors of the listed shapes (positive, so BN statistics are
    valid); CycleMLP's ``offset`` buffers get the fixed values the original
    computes, as every real checkpoint holds."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith('.offset'):
            kernel = (1, 3) if '.sfc_h.' in key else (3, 1)
            state[key] = cycle_offset(shape[1] // 2, kernel)
        elif key.endswith('num_batches_tracked'):
            state[key] = torch.tensor(7)
        else:
            state[key] = torch.rand(shape, generator=g) + 0.5
    return state


def model_from_config(config, deploy=False):
    """Build a config's classifier on the meta device."""
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(osp.join(CONFIG_DIR, config))
    if deploy:
        cfg = make_deploy_config(cfg)
    init_default_scope('mmpretrain')
    with torch.device('meta'):
        return MODELS.build(cfg.model)


def load_strictly(model, state_dict):
    """Strict load into a meta-device model: every key present, no extra
    key, every shape equal (``assign`` takes the tensors over)."""
    model.load_state_dict(state_dict, strict=True, assign=True)
    for name, p in model.state_dict().items():
        assert not p.is_meta, name


CASES = [
    # family, listing file, preset, form, expected arch, config
    ('repvgg', 'repvgg', 'RepVGG-A0', 'train', 'A0',
     'repvgg-a0_8xb32_in1k.py'),
    ('repvgg', 'repvgg', 'RepVGG-A0', 'deploy', 'A0',
     'repvgg-a0_8xb32_in1k.py'),
    ('repvgg', 'repvgg', 'RepVGG-B1g4', 'train', 'B1g4',
     'repvgg-b1g4_8xb32_in1k.py'),
    ('repmlpnet', 'repmlpnet', 'RepMLPNet-T224', 'train', 'T224',
     'repmlpnet-t224_8xb32_in1k.py'),
    ('repmlpnet', 'repmlpnet', 'RepMLPNet-T256', 'deploy', 'T256',
     'repmlpnet-t256_8xb32_in1k-256px.py'),
    ('cyclemlp', 'cyclemlp', 'CycleMLP_B1', 'train', 'B1',
     'cyclemlp-b1_8xb128_in1k.py'),
    ('repmlp-res50', 'repmlp_res50', 'RepMLP-Res50-Bottleneck-224-g8',
     'train', 'bottleneck-224', 'repmlp-res50-bottleneck-224_8xb32_in1k.py'),
    ('repmlp-res50', 'repmlp_res50', 'RepMLP-Res50-Bottleneck-224-g8',
     'deploy', 'bottleneck-224', 'repmlp-res50-bottleneck-224_8xb32_in1k.py'),
]


@pytest.mark.slow  # full-size models
@pytest.mark.parametrize('family,listing_file,preset,form,arch,config', CASES,
                         ids=[f'{c[2]}-{c[3]}' for c in CASES])
def test_original_release_converts(tmp_path, family, listing_file,
                                   preset, form, arch, config):
    shapes = listing(listing_file, preset)[form]
    src_state = synthetic_state(shapes)
    src, dst = str(tmp_path / 'src.pth'), str(tmp_path / 'dst.pth')
    torch.save(src_state, src)
    assert convert([src, dst, '--family', family]) == 0  # arch inferred
    out = safe_load(dst)
    meta, state = out['meta'], out['state_dict']
    assert meta['arch'] == arch and meta['family'] == family
    assert meta['source'] == 'original'
    assert meta['deploy'] == (form == 'deploy')
    assert meta['num_classes'] == 1000

    # The classifier: original `linear.*` / `head.*` became `head.fc.*`.
    src_head = {k: v for k, v in src_state.items()
                if k.startswith(('linear.', 'head.'))}
    assert sorted(k.split('.')[-1] for k in src_head) == ['bias', 'weight']
    for k, v in src_head.items():
        assert torch.equal(state['head.fc.' + k.split('.')[-1]], v)
    src_backbone = {k: v for k, v in src_state.items() if k not in src_head}
    if form == 'train':
        # Train-time weights keep their names and values, one for one.
        assert set(state) == {'backbone.' + k for k in src_backbone} | {
            'head.fc.weight', 'head.fc.bias'}
        for k, v in src_backbone.items():
            assert torch.equal(state['backbone.' + k], v), k
    load_strictly(model_from_config(config, deploy=(form == 'deploy')),
                  state)


def test_explicit_arch_and_backbone_only(tmp_path):
    src_state = synthetic_state(listing('cyclemlp', 'CycleMLP_B1')['train'])
    src, dst = str(tmp_path / 'src.pth'), str(tmp_path / 'dst.pth')
    torch.save(src_state, src)
    assert convert([src, dst, '--family', 'cyclemlp', '--arch', 'B1',
                      '--source', 'original', '--backbone-only']) == 0
    out = safe_load(dst)
    state = out['state_dict']
    assert out['meta']['num_classes'] is None
    assert set(state) == {k for k in src_state if not k.startswith('head.')}
    # Loads into a dense-prediction backbone (all four outputs): the
    # classifier norm is dropped, the per-output norms keep their init.
    backbone = mmrep.models.backbones.CycleMLP(
        'B1', init_cfg=dict(type='Pretrained', checkpoint=dst))
    backbone.init_weights()
    assert torch.equal(backbone.network[0][0].mlp.fc1.weight,
                       src_state['network.0.0.mlp.fc1.weight'])


def test_replacing_an_existing_output_is_said(tmp_path, capsys):
    src_state = synthetic_state(listing('cyclemlp', 'CycleMLP_B1')['train'])
    src, dst = str(tmp_path / 'src.pth'), str(tmp_path / 'dst.pth')
    torch.save(src_state, src)
    argv = [src, dst, '--family', 'cyclemlp', '--backbone-only']
    assert convert(argv) == 0
    assert 'replacing' not in capsys.readouterr().err
    assert convert(argv) == 0
    assert capsys.readouterr().err.splitlines() == [
        f'note: replacing the existing {dst}']


def test_cyclemlp_dense_prediction_weights(tmp_path):
    """The original's ``fork_feat`` weights (a norm per output, no
    classifier) convert as a backbone only."""
    shapes = {k: v for k, v in listing('cyclemlp', 'CycleMLP_B1')[
        'train'].items() if not k.startswith(('head.', 'norm.'))}
    for i, dim in enumerate((64, 128, 320, 512)):
        shapes[f'norm{2 * i}.weight'] = shapes[f'norm{2 * i}.bias'] = [dim]
    src, dst = str(tmp_path / 'src.pth'), str(tmp_path / 'dst.pth')
    torch.save(synthetic_state(shapes), src)
    assert '--backbone-only' in convert([src, dst, '--family', 'cyclemlp'])
    assert convert([src, dst, '--family', 'cyclemlp',
                      '--backbone-only']) == 0
    out = safe_load(dst)
    assert out['meta']['arch'] == 'B1'
    assert set(out['state_dict']) == set(shapes)
    with torch.device('meta'):
        backbone = mmrep.models.backbones.CycleMLP('B1')
    load_strictly(backbone, out['state_dict'])


def test_mmpretrain_repvgg_matches_numerically(tmp_path):
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    reference = MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='RepVGG', arch='A0', out_indices=(3, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=1280)))
    for m in reference.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    reference.eval()
    src, dst = str(tmp_path / 'src.pth'), str(tmp_path / 'dst.pth')
    torch.save(dict(state_dict=reference.state_dict(), meta=dict()), src)
    assert convert([src, dst, '--family', 'repvgg',
                      '--source', 'mmpretrain']) == 0
    out = safe_load(dst)
    assert out['meta']['arch'] == 'A0' and out['meta']['num_classes'] == 10
    model = MODELS.build(out['meta']['model'])
    model.load_state_dict(out['state_dict'], strict=True)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = reference(x, mode='tensor')
        actual = model(x, mode='tensor')
    assert (actual - expected).abs().max() < 1e-4


# A full-size model (B224); test_port_entry_points.py converts a small
# mmpretrain RepMLPNet in the fast tier.
@pytest.mark.slow
def test_mmpretrain_repmlpnet_converts(tmp_path):
    from mmpretrain.models.backbones import RepMLPNet
    # mmpretrain's RepMLPNet-B224 (its config's arguments), on the meta
    # device; random weights of its names and shapes.
    with torch.device('meta'):
        backbone = RepMLPNet('b', img_size=224, reparam_conv_kernels=(1, 3))
    state = {'backbone.' + k: (torch.tensor(0) if v.dim() == 0 else
                               torch.rand(v.shape) + 0.5)
             for k, v in backbone.state_dict().items()}
    state['head.fc.weight'] = torch.randn(1000, 768)
    state['head.fc.bias'] = torch.randn(1000)
    src, dst = str(tmp_path / 'src.pth'), str(tmp_path / 'dst.pth')
    torch.save(dict(state_dict=state), src)
    assert convert([src, dst, '--family', 'repmlpnet']) == 0
    out = safe_load(dst)
    assert out['meta']['arch'] == 'B224'
    assert out['meta']['source'] == 'mmpretrain'
    load_strictly(model_from_config('repmlpnet-b224_8xb32_in1k.py'),
                  out['state_dict'])


def test_mismatches_are_refused_with_key_names(tmp_path):
    src_state = synthetic_state(listing('repvgg', 'RepVGG-A0')['train'])
    src, dst = str(tmp_path / 'src.pth'), str(tmp_path / 'dst.pth')

    broken = dict(src_state)
    del broken['stage1.0.rbr_dense.conv.weight']
    broken['stage1.0.extra.weight'] = torch.zeros(3)
    broken['stage2.0.rbr_1x1.conv.weight'] = torch.zeros(96, 48, 3, 3)
    torch.save(broken, src)
    err = convert([src, dst, '--family', 'repvgg', '--arch', 'A0'])
    for key in ('stage1.0.rbr_dense.conv.weight', 'stage1.0.extra.weight',
                'stage2.0.rbr_1x1.conv.weight'):
        assert key in err
    err = convert([src, dst, '--family', 'repvgg'])  # inferred
    assert "closest is 'A0'" in err and 'stage1.0.extra.weight' in err

    # Keys beside the backbone and the classifier are not dropped silently.
    torch.save({**src_state, 'ema.step': torch.tensor(3)}, src)
    assert 'ema.step' in convert([src, dst, '--family', 'repvgg'])

    torch.save(src_state, src)
    assert 'B0' in convert([src, dst, '--family', 'repvgg', '--arch', 'B0'])
    assert "'Z9'" in convert([src, dst, '--family', 'repvgg', '--arch', 'Z9'])
    assert convert([src, dst, '--family', 'repvgg', '--source',
                    'mmpretrain']) == (
        'error: --source mmpretrain, but the key names are those of an '
        'original checkpoint')
    assert convert([src, dst, '--family', 'repmlpnet']).startswith(
        'error: the weights fit no repmlpnet preset')

    # No classifier: only --backbone-only can convert it.
    torch.save({k: v for k, v in src_state.items()
                if not k.startswith('linear.')}, src)
    assert '--backbone-only' in convert([src, dst, '--family', 'repvgg'])
    assert not os.path.exists(dst)  # nothing written on failure
    assert convert([src, dst, '--family', 'repvgg', '--backbone-only']) == 0
    assert os.path.exists(dst)


def test_unsafe_pickles_are_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ('echo pwned',))

    src, dst = str(tmp_path / 'src.pth'), str(tmp_path / 'dst.pth')
    torch.save({'state_dict': {'x': torch.zeros(1)}, 'p': Payload()}, src)
    assert convert([src, dst, '--family', 'repvgg']).startswith(
        f'error: refused to load {src}: ')
    assert not os.path.exists(dst)


@pytest.mark.slow  # a subprocess; the other tests call main in-process
def test_cli_runs(tmp_path):
    """The command line itself (one subprocess; the rest call main)."""
    src_state = synthetic_state(listing('repvgg', 'RepVGG-A0')['deploy'])
    src, dst = str(tmp_path / 'src.pth'), str(tmp_path / 'dst.pth')
    torch.save(src_state, src)
    proc = run_tool('tools/convert_checkpoint.py', src, dst, '--family',
                    'repvgg')
    assert 'A0' in proc.stdout and 'fused' in proc.stdout


@pytest.mark.parametrize('family, original', [
    ('repmlpnet', dict(channels=(8, 16), hs=(4, 2), ws=(4, 2),
                       sharesets_nums=(1, 2), num_blocks=(1, 1),
                       reparam_conv_k=(1, 3), num_class=10)),
    ('repvgg', dict(num_blocks=(1, 1), width_multiplier=(0.125, 0.25),
                    override_groups_map={2: 2}, num_classes=10)),
    ('repmlp-res50', dict(num_blocks=(1, 2, 2, 1), img_H=64, img_W=64,
                          h=4, w=4, reparam_conv_k=(1, 3), num_classes=5)),
    ('cyclemlp', dict(layers=(1, 1), embed_dims=(8, 16), mlp_ratios=(2, 2),
                      transitions=(True, True), num_classes=10)),
])
def test_models_take_mmrep_names_and_the_translator_maps_the_originals(
        family, original):
    """The models refuse the original constructors' names (naming them);
    ``mmrep_arch`` turns them into an arch the model builds."""
    from mmrep.models.backbones import CycleMLP, RepMLPNet, RepMLPResNet, \
        RepVGG
    cls = dict(repmlpnet=RepMLPNet, repvgg=RepVGG, cyclemlp=CycleMLP)\
        .get(family, RepMLPResNet)
    with pytest.raises(ValueError, match='malformed .* arch dict: unknown '
                                         'keys'):
        cls(dict(original), out_indices=(-1, ))
    arch = mmrep_arch(family, original)
    model = cls(arch, out_indices=(-1, ))
    assert model.num_stages == len(arch['num_blocks'])
    if family == 'repmlpnet':
        assert model.arch['partition_sizes'] == ((4, 4), (2, 2))
        assert model.arch['sharesets'] == (1, 2)
    if family == 'repmlp-res50':
        assert model.arch['img_size'] == (64, 64)
        assert model.arch['partition'] == (4, 4)
