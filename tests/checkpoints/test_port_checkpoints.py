"""Weights of the MindCV (RepMLPNet, RepVGG) and Paddle-CycleMLP ports load
into mmrep and reproduce the ports' own outputs.

Each fixture pair (``tests/data/README.md``) is a port's checkpoint in its
framework's format and an ``.npz`` with the port's constructor arguments
(``arch``), an input and the port's logits. The family is read from the file
name (``mindcv_<family>_...``, ``paddle_<family>_...``), the arch from the
``.npz``: any arch the port accepts runs through these tests. The
checkpoints are read without either framework
(:mod:`mmrep.checkpoints.readers`).
"""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from conftest import assert_close, build_classifier, fixture_params

import mmrep
from mmrep.checkpoints import release_fused_form
from mmrep.checkpoints.readers import read_mindspore, read_paddle
from mmrep.models.backbones import CycleMLP, RepMLPNet, RepVGG
from mmrep.models.backbones import cyclemlp, repmlpnet, repvgg

# --------------------------------------------------------------------
# The ports
# --------------------------------------------------------------------
#: (framework, family) -> (reader, backbone class, kwargs translation,
#: key map).
PORTS = {
    ('mindcv', 'repmlpnet'): (read_mindspore, RepMLPNet,
                              repmlpnet.from_mindcv_kwargs,
                              repmlpnet.from_mindcv_state_dict),
    ('mindcv', 'repvgg'): (read_mindspore, RepVGG,
                           repvgg.from_mindcv_kwargs,
                           repvgg.from_mindcv_state_dict),
    ('paddle', 'cyclemlp'): (read_paddle, CycleMLP,
                             cyclemlp.from_paddle_kwargs,
                             cyclemlp.from_paddle_state_dict),
}


def load_port_fixture(path):
    """The port, its arguments and outputs, and its weights in mmrep names.

    Args:
        path (str): the port's checkpoint; its ``.npz`` lies next to it.

    Returns:
        dict: ``port`` (a :data:`PORTS` key), ``arch`` (the port's
        arguments), ``input``, ``logits``, ``kwargs`` (mmrep backbone),
        ``num_classes``, ``backbone`` and ``head`` (converted weights).
    """
    framework, family = osp.basename(path).split('_')[:2]
    assert (framework, family) in PORTS, f'no port {framework} {family}'
    read, _, to_kwargs, to_state = PORTS[(framework, family)]
    with np.load(osp.splitext(path)[0] + '.npz') as fx:
        arch = json.loads(str(fx['arch']))
        x = torch.from_numpy(fx['input'])
        logits = torch.from_numpy(fx['logits'])
    kwargs, num_classes = to_kwargs(arch)
    backbone, head = to_state(read(path))
    return dict(port=(framework, family), arch=arch, input=x, logits=logits,
                kwargs=kwargs, num_classes=num_classes, backbone=backbone,
                head=head)


def port_classifier(fx):
    """An mmpretrain classifier holding the port's converted weights
    (loaded strictly), in eval mode."""
    cls = PORTS[fx['port']][1]
    assert set(fx['head']) == {'fc.weight', 'fc.bias'}
    num_classes, in_channels = fx['head']['fc.weight'].shape
    assert num_classes == fx['num_classes']
    clf = build_classifier(dict(type='mmrep.' + cls.__name__,
                                **fx['kwargs']), in_channels, num_classes)
    backbone = fx['backbone']
    if clf.backbone.deploy:  # the port's fused form: the original's
        backbone = release_fused_form(clf.backbone, backbone)
    state = {'backbone.' + k: v for k, v in backbone.items()}
    state.update({'head.' + k: v for k, v in fx['head'].items()})
    clf.load_state_dict(state, strict=True)
    return clf.eval()


def check_port_logits(path):
    """The port's logits, before and after re-parameterization."""
    fx = load_port_fixture(path)
    clf = port_classifier(fx)
    with torch.no_grad():
        assert_close(clf(fx['input'], mode='tensor'), fx['logits'], 1e-4,
                     'logits')
        fused = mmrep.reparameterize_model(clf)
        assert fused.backbone.deploy
        assert_close(fused(fx['input'], mode='tensor'), fx['logits'], 1e-4,
                     're-parameterized logits')


@fixture_params('mindcv_*_small_s*.ckpt')
def test_mindcv_port_reproduces_logits(fixture_path):
    check_port_logits(fixture_path)


@fixture_params('paddle_*_small_s*.pdparams')
def test_paddle_port_reproduces_logits(fixture_path):
    check_port_logits(fixture_path)


# --------------------------------------------------------------------
# The translations
# --------------------------------------------------------------------
@fixture_params('mindcv_repmlpnet_small_s*.ckpt')
def test_mindcv_repmlpnet_kwargs_carry_port_options(fixture_path):
    """The port's tanh GELU, its partition order and its embeddings'
    rounding are set, and stay set through re-parameterization; the
    port's ``in_channels`` and ``num_class`` leave the arch; its unused
    ``conv2d`` is not converted."""
    fx = load_port_fixture(fixture_path)
    kwargs = fx['kwargs']
    for key, value in repmlpnet.MINDCV_OPTIONS.items():
        assert kwargs[key] == value, key
    assert kwargs['gelu_approximate'] == 'tanh'
    assert not {'in_channels', 'num_class'} & set(kwargs['arch'])
    assert kwargs['in_channels'] == fx['arch'].get('in_channels', 3)
    assert not any(k.startswith('conv2d.') for k in fx['backbone'])
    clf = port_classifier(fx)
    fused = mmrep.reparameterize_model(clf)
    for model in (clf, fused):
        args = model.backbone._build_args
        assert args['gelu_approximate'] == 'tanh'
        assert args['partition_order'] == 'original'
        acts = [m.ffn_block.act for stage in model.backbone.stages
                for m in stage]
        assert acts and all(a.approximate == 'tanh' for a in acts)


def test_mindcv_repmlpnet_defaults_are_the_ports():
    """Arguments a MindCV arch leaves out take the port's defaults (its
    ``reparam_conv_k=(3, )``, not the original's ``(1, 3)``)."""
    kwargs, num_classes = repmlpnet.from_mindcv_kwargs(
        dict(num_class=7, in_channels=1))
    assert num_classes == 7 and kwargs['in_channels'] == 1
    arch = RepMLPNet.parse_arch(kwargs['arch'])
    assert arch['conv_kernels'] == (3, )
    assert arch['channels'] == (192, 384, 768, 1536)
    assert arch['partition_sizes'] == ((64, 64), (32, 32), (16, 16), (8, 8))


def test_mindcv_repvgg_group_map_keys_and_se():
    kwargs, num_classes = repvgg.from_mindcv_kwargs(dict(
        num_blocks=[1, 2, 2, 1], width_multiplier=[0.25] * 4,
        override_group_map={'2': 2, '4': 4}, num_classes=5, in_channels=1))
    assert num_classes == 5 and kwargs['in_channels'] == 1
    assert kwargs['arch']['group_layer_map'] == {2: 2, 4: 4}
    assert 'in_channels' not in kwargs['arch']
    with pytest.raises(ValueError, match='use_se'):
        repvgg.from_mindcv_kwargs(dict(num_blocks=[1, 1, 1, 1],
                                       width_multiplier=[1] * 4,
                                       use_se=True))


def test_paddle_cyclemlp_kwargs_and_linear_layout():
    """Paddle's (in, out) Linear weights are transposed; conv weights,
    norms and offsets are not; ``fork_feat`` returns every stage."""
    kwargs, num_classes = cyclemlp.from_paddle_kwargs(dict(
        layers=[1, 1, 1, 1], embed_dims=[8, 16, 24, 32],
        mlp_ratios=[2, 2, 2, 2], transitions=[True] * 4, num_classes=3,
        in_chans=3, patch_size=7, drop_path_rate=0.1))
    assert num_classes == 3 and kwargs['final_norm']
    assert kwargs['arch']['channels'] == (8, 16, 24, 32)
    dense, none = cyclemlp.from_paddle_kwargs(dict(
        layers=[1, 1], embed_dims=[8, 16], mlp_ratios=[2, 2],
        transitions=[True, True], fork_feat=True))
    assert none is None and dense['out_indices'] == (0, 1)
    state = {'network.0.0.mlp.fc1.weight': np.ones((8, 16), np.float32),
             'network.0.0.attn.sfc_h.weight': np.ones((8, 8, 1, 1),
                                                      np.float32),
             'norm.weight': np.ones(8, np.float32),
             'head.weight': np.ones((8, 3), np.float32),
             'StructuredToParameterName@@': {'x': 'y'}}
    backbone, head = cyclemlp.from_paddle_state_dict(state)
    assert backbone['network.0.0.mlp.fc1.weight'].shape == (16, 8)
    assert backbone['network.0.0.attn.sfc_h.weight'].shape == (8, 8, 1, 1)
    assert head['fc.weight'].shape == (3, 8)
    assert 'StructuredToParameterName@@' not in backbone


# --------------------------------------------------------------------
# The options the ports need
# --------------------------------------------------------------------
def test_tanh_gelu_fused_ffn_matches_train_form():
    """The fused FFN (oneDNN on the CPU) applies the tanh GELU too."""
    torch.manual_seed(0)
    arch = dict(channels=(16, 32), num_blocks=(1, 1), sharesets=(2, 4),
                partition_sizes=(4, 2))
    model = RepMLPNet(arch, out_indices=(0, 1),
                      gelu_approximate='tanh').eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        outs = model(x)
        fused = mmrep.reparameterize_model(model)(x)
        exact = RepMLPNet(arch, out_indices=(0, 1)).eval()
        exact.load_state_dict(model.state_dict())
        erf = exact(x)
    for a, b in zip(outs, fused):
        assert_close(b, a, 1e-4, 'fused tanh GELU')
    assert (outs[-1] - erf[-1]).abs().max() > 1e-6  # a different GELU
    with pytest.raises(ValueError, match='gelu_approximate'):
        RepMLPNet(arch, out_indices=(0, 1), gelu_approximate='erf')


def test_onednn_linear_applies_tanh_gelu():
    """``linear(..., act='gelu_tanh')`` on oneDNN (a product big enough
    for it) and on the plain path."""
    from mmrep.models.layers.linear import linear
    torch.manual_seed(0)
    x, w, b = torch.randn(1024, 64), torch.randn(256, 64) / 8, torch.randn(256)
    with torch.no_grad():
        expected = torch.nn.functional.gelu(x @ w.t() + b, approximate='tanh')
        assert_close(linear(x, w, b, act='gelu_tanh'), expected, 1e-5,
                     'oneDNN tanh GELU')
        assert_close(linear(x[:4], w, b, act='gelu_tanh'), expected[:4],
                     1e-5, 'plain tanh GELU')


@pytest.mark.parametrize('size', [(70, 45), (66, 50), (36, 52)])
def test_floor_embeddings_drop_the_remainder(size):
    """``embed_rounding='floor'``: stage maps round down, and the result
    equals the padded model's on an image cropped to fit."""
    arch = dict(channels=(8, 16, 16), num_blocks=(1, 1, 1),
                sharesets=(1, 2, 4), partition_sizes=(1, 1, 1))
    torch.manual_seed(0)
    floor = RepMLPNet(arch, out_indices=(0, 1, 2),
                      embed_rounding='floor').eval()
    ceil = RepMLPNet(arch, out_indices=(0, 1, 2)).eval()
    ceil.load_state_dict(floor.state_dict())
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        outs = floor(x)
    sizes = floor.stage_map_sizes(size)
    assert [tuple(o.shape[-2:]) for o in outs] == sizes
    H, W = size
    h, w = H // 4, W // 4
    for i in range(1, len(sizes)):
        assert sizes[i] == (sizes[i - 1][0] // 2, sizes[i - 1][1] // 2)
    if h % 4 == 0 and w % 4 == 0:  # nothing dropped after the image
        with torch.no_grad():
            cropped = ceil(x[..., :h * 4, :w * 4])
        for a, b in zip(outs, cropped):
            assert_close(a, b, 1e-5, 'floor vs cropped')
    with pytest.raises(ValueError, match='embed_rounding'):
        RepMLPNet(arch, out_indices=(0, 1, 2), embed_rounding='round')
