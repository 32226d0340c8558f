"""The ports' weights through mmrep's entry points: ``tools/convert_checkpoint.py``
(source detected from the file and the names, arch from the weights) and
``init_cfg=dict(type='Pretrained', checkpoint=<port file>)``.

For every MindCV and Paddle-CycleMLP fixture (``tests/data/README.md``) the
converted classifier, built from the ``model`` dict of its ``meta``, gives
the port's logits, and the port file loaded through ``init_cfg`` gives the
same backbone features as the converted file. timm's RepVGG (random A0,
saved as ``.safetensors``) converts to timm's logits. mmpretrain's RepMLPNet
of a small custom arch (global perceptron widths rounded up to multiples of
8) converts to mmpretrain's outputs.
"""
import json
import logging
import os
import os.path as osp

import numpy as np
import pytest
import safetensors.torch
import torch
from conftest import REPO, assert_close, fixture_params, load_via_init_cfg
from mmengine.registry import init_default_scope
from tool_runner import main_or_error

from mmrep.checkpoints import load as checkpoint_load
from mmrep.models.backbones import RepMLPNet, RepVGG, repmlpnet
from mmrep.utils.testing import randomize_bn
from mmrep.utils import safe_load

PORT_LABELS = dict(mindcv='MindCV', paddle='Paddle-CycleMLP')


def convert(argv):
    """Run tools/convert_checkpoint.py in this process: 0, or its one
    ``error:`` line."""
    return main_or_error('convert_checkpoint', argv)


@pytest.fixture
def log_lines(monkeypatch):
    lines = []
    monkeypatch.setattr(checkpoint_load, 'print_log',
                        lambda msg, **kwargs: lines.append(
                            (msg, kwargs.get('level', logging.INFO))))
    return lines


def build_model(cfg):
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    return MODELS.build(cfg)


def backbone_cls(cfg):
    from mmrep.registry import MODELS
    return MODELS.get(cfg['type'].split('.')[-1])


def check_port_entry_points(path, tmp_path, log_lines):
    framework, family = osp.basename(path).split('_')[:2]
    with np.load(osp.splitext(path)[0] + '.npz') as fx:
        x = torch.from_numpy(fx['input'])
        logits = torch.from_numpy(fx['logits'])
    dst = str(tmp_path / 'converted.pth')
    assert convert([path, dst, '--family', family]) == 0
    out = safe_load(dst)
    meta = out['meta']
    assert meta['source'] == framework and meta['family'] == family
    clf = build_model(meta['model'])
    clf.load_state_dict(out['state_dict'], strict=True)
    with torch.no_grad():
        assert_close(clf.eval()(x, mode='tensor'), logits, 1e-4,
                     f'{osp.basename(path)} converted logits')

    # init_cfg=Pretrained on the port file = on the converted file.
    kwargs = dict(meta['model']['backbone'])
    cls = backbone_cls(kwargs)
    kwargs.pop('type')
    log_lines.clear()
    from_port = load_via_init_cfg(cls, path, **kwargs)
    report = [m for m, _ in log_lines if ' backbone tensors from ' in m]
    n = len(from_port.state_dict())
    assert report == [
        f'{cls.__name__}: loaded {n} of {n} backbone tensors from {path} '
        f'({PORT_LABELS[framework]}); 0 kept their initialization']
    assert not [m for m, level in log_lines if level >= logging.WARNING]
    from_converted = load_via_init_cfg(cls, dst, **kwargs)
    with torch.no_grad():
        for a, b in zip(from_port(x), from_converted(x)):
            assert_close(a, b, 0, 'port vs converted features')
    return meta


@fixture_params('mindcv_*_small_s*.ckpt')
def test_mindcv_port_converts_and_loads(fixture_path, tmp_path, log_lines):
    meta = check_port_entry_points(fixture_path, tmp_path, log_lines)
    if meta['family'] == 'repmlpnet':
        # The port's options, in the meta and in the model dict it names.
        assert meta['port_options'] == repmlpnet.MINDCV_OPTIONS
        backbone = build_model(meta['model']).backbone
        for key, value in repmlpnet.MINDCV_OPTIONS.items():
            assert meta['model']['backbone'][key] == value
            assert backbone._build_args[key] == value
        acts = [unit.ffn_block.act for stage in backbone.stages
                for unit in stage]
        assert all(a.approximate == 'tanh' for a in acts)
    else:
        assert 'port_options' not in meta


@fixture_params('paddle_*_small_s*.pdparams')
def test_paddle_port_converts_and_loads(fixture_path, tmp_path, log_lines):
    check_port_entry_points(fixture_path, tmp_path, log_lines)


@fixture_params('mindcv_repmlpnet_small_s*.ckpt')
def test_missing_port_options_are_named_once(fixture_path, log_lines):
    """A backbone without the port's tanh GELU loads the weights as they
    are (not changed silently) and one warning names the option."""
    with np.load(osp.splitext(fixture_path)[0] + '.npz') as fx:
        kwargs, _ = repmlpnet.from_mindcv_kwargs(json.loads(str(fx['arch'])))
    kwargs['gelu_approximate'] = 'none'
    model = load_via_init_cfg(RepMLPNet, fixture_path, **kwargs)
    assert model._build_args['gelu_approximate'] == 'none'
    warnings = [m for m, level in log_lines if level >= logging.WARNING]
    assert len(warnings) == 1
    assert "gelu_approximate='tanh'" in warnings[0]
    assert 'MindCV' in warnings[0] and 'embed_rounding' not in warnings[0]


def test_timm_safetensors_converts(tmp_path, log_lines):
    from test_timm_checkpoints import timm_model
    model = timm_model('repvgg_a0', seed=3)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
    src = str(tmp_path / 'repvgg_a0.safetensors')
    safetensors.torch.save_file(model.state_dict(), src)
    dst = str(tmp_path / 'converted.pth')
    assert convert([src, dst, '--family', 'repvgg']) == 0
    out = safe_load(dst)
    assert out['meta']['source'] == 'timm' and out['meta']['arch'] == 'A0'
    clf = build_model(out['meta']['model'])
    clf.load_state_dict(out['state_dict'], strict=True)
    tol = 1e-4 * max(1.0, expected.abs().max().item())
    with torch.no_grad():
        assert_close(clf.eval()(x, mode='tensor'), expected, tol,
                     'timm logits')
    log_lines.clear()
    backbone = load_via_init_cfg(RepVGG, src, 'A0', out_indices=(3, ))
    assert any(m.endswith('(timm); 0 kept their initialization')
               for m, _ in log_lines)
    with torch.no_grad():
        assert_close(backbone(x)[-1], clf.backbone(x)[-1], 0,
                     'timm init_cfg features')


def test_source_mismatch_is_refused(tmp_path):
    dst = str(tmp_path / 'dst.pth')
    ckpt = osp.join(REPO, 'tests', 'data',
                    'mindcv_repvgg_small_s0.ckpt')
    pdparams = osp.join(REPO, 'tests', 'data',
                        'paddle_cyclemlp_small_s0.pdparams')
    assert convert([ckpt, dst, '--family', 'repvgg', '--source',
                    'paddle']) == (
        'error: --source paddle, but the file is a MindSpore checkpoint '
        '(mindcv)')
    assert convert([pdparams, dst, '--family', 'cyclemlp', '--source',
                    'original']).startswith(
        'error: --source original, but the file is a PaddlePaddle')
    # A port's weights into a family it has none of.
    assert 'convert as cyclemlp only' in convert(
        [pdparams, dst, '--family', 'repvgg'])
    from test_timm_checkpoints import timm_model
    src = str(tmp_path / 'a0.pth')
    torch.save(timm_model('repvgg_a0', device='meta').to_empty(
        device='cpu').state_dict(), src)
    assert convert([src, dst, '--family', 'repvgg', '--source',
                    'mmpretrain']) == (
        'error: --source mmpretrain, but the key names are those of a timm '
        'checkpoint')
    assert not os.path.exists(dst)
    assert convert([ckpt, dst, '--family', 'repvgg', '--source',
                    'mindcv']) == 0


def test_mmpretrain_small_arch_repmlpnet(tmp_path):
    """mmpretrain rounds the global perceptron's width to a multiple of 8
    (``make_divisible``): stage widths below 32 (and others not divisible
    by 32) give ``gp`` widths the original's ``channels // 4`` does not;
    the conversion reads them into ``gp_channels``."""
    torch.manual_seed(0)
    channels = (16, 24, 40, 48)
    ref = build_model(dict(
        type='ImageClassifier',
        backbone=dict(type='RepMLPNet', img_size=64, out_indices=(3, ),
                      reparam_conv_kernels=(1, 3),
                      arch=dict(channels=list(channels),
                                depths=[1, 1, 2, 1],
                                sharesets_nums=[2, 4, 8, 16])),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=5, in_channels=48)))
    randomize_bn(ref, 1)
    ref.eval()
    widths = [ref.state_dict()[f'backbone.stages.{i}.0.repmlp_block.gp.'
                               f'conv1.conv.weight'].shape[0]
              for i in range(4)]
    assert widths != [c // 4 for c in channels]
    src, dst = str(tmp_path / 'src.pth'), str(tmp_path / 'dst.pth')
    torch.save(dict(state_dict=ref.state_dict()), src)
    assert convert([src, dst, '--family', 'repmlpnet']) == 0
    out = safe_load(dst)
    assert out['meta']['source'] == 'mmpretrain'
    assert out['meta']['arch']['gp_channels'] == tuple(widths)
    clf = build_model(out['meta']['model'])
    clf.load_state_dict(out['state_dict'], strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert_close(clf.eval()(x, mode='tensor'), ref(x, mode='tensor'),
                     1e-4, 'mmpretrain small-arch logits')


def test_gp_channels_arch_option():
    arch = dict(channels=(16, 32), num_blocks=(1, 1), sharesets=(1, 2),
                partition_sizes=(2, 1))
    default = RepMLPNet(arch, out_indices=(1, ))
    assert default.stages[0][0].repmlp_block.gp.fc1.out_channels == 4
    wide = RepMLPNet(dict(arch, gp_channels=(8, 16)), out_indices=(1, ))
    assert [s[0].repmlp_block.gp.fc1.out_channels
            for s in wide.stages] == [8, 16]
    with pytest.raises(ValueError, match='gp_channels'):
        RepMLPNet(dict(arch, gp_channels=(8, )), out_indices=(1, ))
    with pytest.raises(ValueError, match='gp_channels'):
        RepMLPNet(dict(arch, gp_channels=(8, 0)), out_indices=(1, ))
