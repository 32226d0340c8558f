"""Shared test helpers.

The conformance fixtures (outputs of the original implementations on random
weights) live in the directory named by ``MMREP_FIXTURES``, by default
``../shared/fixtures`` next to the repository.
"""
import glob
import os
import os.path as osp

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
FIXTURES = os.environ.get('MMREP_FIXTURES',
                          osp.join(REPO, '..', 'shared', 'fixtures'))


def fixture_files(pattern):
    """Sorted fixture files matching ``pattern`` (e.g. ``repvgg_small_s*.pt``).

    Fails (does not skip) when none is found: the conformance tests are the
    ground truth and must run.
    """
    files = sorted(glob.glob(osp.join(FIXTURES, pattern)))
    assert files, f'no fixture matches {pattern} in {FIXTURES} (MMREP_FIXTURES)'
    return files


def load_fixture(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def fixture_params(pattern):
    """``pytest.mark.parametrize`` over the fixture files of a pattern."""
    files = sorted(glob.glob(osp.join(FIXTURES, pattern)))
    if not files:
        files = [osp.join(FIXTURES, pattern)]  # reported as missing
    return pytest.mark.parametrize('fixture_path', files, ids=osp.basename)


def assert_close(actual, expected, atol=1e-4, what=''):
    """Max-abs-difference check with a readable message."""
    assert actual.shape == expected.shape, \
        f'{what}: shape {tuple(actual.shape)} vs {tuple(expected.shape)}'
    diff = (actual.float() - expected.float()).abs().max().item()
    assert diff <= atol, f'{what}: max abs diff {diff:.3g} > {atol}'


def load_via_init_cfg(cls, checkpoint, *args, **kwargs):
    """Build ``cls(*args, **kwargs)`` with ``init_cfg=Pretrained`` on
    ``checkpoint`` (the path a config takes), initialize it, eval mode."""
    model = cls(*args, init_cfg=dict(type='Pretrained',
                                     checkpoint=str(checkpoint)), **kwargs)
    model.init_weights()
    return model.eval()


def check_pretrained_features(cls, arch, checkpoint, x, expected, **kwargs):
    """A backbone loading ``checkpoint`` through ``init_cfg`` reproduces the
    fixture's stage features to 1e-4.

    Args:
        cls (type): the backbone class.
        arch (dict): its arch, in the original's names.
        checkpoint (str): the original's weights file.
        x (Tensor): the fixture's input.
        expected (list[Tensor]): the fixture's features, one per stage.
        **kwargs: further backbone arguments.

    Returns:
        nn.Module: the backbone, in eval mode.
    """
    backbone = load_via_init_cfg(cls, checkpoint, arch, **kwargs)
    with torch.no_grad():
        feats = backbone(x)
    assert len(feats) == len(expected)
    for i, (a, b) in enumerate(zip(feats, expected)):
        assert_close(a, b, 1e-4, f'stage {i} features')
    return backbone


def build_in_scope(scope, cfg):
    """Build ``cfg`` as ``scope``'s tools would: that library's MODELS
    registry, with ``scope`` as the default scope.

    Args:
        scope (str): ``'mmseg'``, ``'mmdet'`` or ``'mmpretrain'``.
        cfg (dict): the model config.

    Returns:
        nn.Module: the built model.
    """
    import importlib

    from mmengine.registry import init_default_scope
    registry = importlib.import_module(f'{scope}.registry').MODELS
    init_default_scope(scope)
    return registry.build(cfg)


def build_classifier(backbone, in_channels, num_classes):
    """An mmpretrain ImageClassifier (GAP + linear head) around a backbone.

    Args:
        backbone (dict): the backbone config (``type='mmrep.*'``).
        in_channels (int): channels of the backbone's last output.
        num_classes (int): classes of the head.

    Returns:
        nn.Module: the classifier.
    """
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    return MODELS.build(dict(
        type='ImageClassifier', backbone=backbone,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=num_classes,
                  in_channels=in_channels)))


def check_stage_shapes_and_fusion(model, x):
    """Stage ``i`` of ``model`` has ``ceil(size / (4 * 2**i))`` rows and
    columns at input ``x``, and its fused copy gives the same outputs."""
    import mmrep
    with torch.no_grad():
        outs = model(x)
        fused = mmrep.reparameterize_model(model)(x)
    n, _, h, w = x.shape
    for i, (o, f) in enumerate(zip(outs, fused)):
        stride = 4 * 2**i
        assert o.shape == (n, model.channels[i], -(-h // stride),
                           -(-w // stride))
        assert_close(f, o, 1e-4 * max(1.0, o.abs().max().item()),
                     f'fused stage {i + 1} at {tuple(x.shape[-2:])}')
