"""tools/export_onnx.py: the fused model of one config per backbone family
(a segmentor, two classifiers, a detector) runs in onnxruntime on the CPU
and reproduces the train-time torch model to 1e-4."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from tool_runner import DEMO, load_tool

import mmrep  # noqa: F401
from mmrep.utils.testing import randomize_bn

import onnxruntime  # noqa: E402,F401  (installed by tools/install.sh)

IMPORTS = dict(imports=['mmrep'], allow_failed_imports=False)
CLS_HEAD = dict(type='LinearClsHead', num_classes=7,
                loss=dict(type='CrossEntropyLoss', loss_weight=1.0))


def classifier(backbone, channels):
    return dict(default_scope='mmpretrain', custom_imports=IMPORTS,
                model=dict(type='ImageClassifier', backbone=backbone,
                           neck=dict(type='GlobalAveragePooling'),
                           head=dict(CLS_HEAD, in_channels=channels)))


def detector():
    return dict(
        default_scope='mmdet', custom_imports=IMPORTS,
        model=dict(
            type='RetinaNet',
            data_preprocessor=dict(type='DetDataPreprocessor',
                                   mean=[0., 0., 0.], std=[1., 1., 1.]),
            backbone=dict(type='mmrep.CycleMLP',
                          arch=dict(channels=(8, 16, 32, 64),
                                    num_blocks=(1, 1, 1, 1),
                                    mlp_ratios=(2, 2, 2, 2)),
                          out_indices=(1, 2, 3)),
            neck=dict(type='FPN', in_channels=[16, 32, 64], out_channels=16,
                      num_outs=3),
            bbox_head=dict(
                type='RetinaHead', num_classes=3, in_channels=16,
                stacked_convs=1, feat_channels=16,
                anchor_generator=dict(type='AnchorGenerator',
                                      octave_base_scale=4,
                                      scales_per_octave=1, ratios=[1.0],
                                      strides=[8, 16, 32]),
                bbox_coder=dict(type='DeltaXYWHBBoxCoder'),
                loss_cls=dict(type='FocalLoss', use_sigmoid=True),
                loss_bbox=dict(type='L1Loss'))))


CASES = {
    # family: (config, input H, W)
    'RepMLPNet-segmentor': (DEMO, (192, 384)),
    # The original release's partition order, on padded maps of several
    # partitions (stage 1: 10x14 -> 3x4 partitions of 4x4).
    'RepMLPNet-original-order-classifier': (classifier(
        dict(type='mmrep.RepMLPNet',
             arch=dict(channels=(8, 16, 32, 64), num_blocks=(1, 1, 1, 1),
                       sharesets=(2, 4, 8, 16),
                       partition_sizes=(4, 4, 2, 2)),
             partition_order='original', out_indices=(3, ),
             final_norm=True), 64), (40, 56)),
    'RepVGG-classifier': (classifier(
        dict(type='mmrep.RepVGG', arch=dict(num_blocks=(1, 2, 1, 1),
                                            width_multiplier=(0.25, ) * 4,
                                            group_layer_map={2: 2}),
             out_indices=(3, )), 128), (48, 64)),
    'RepMLPResNet-classifier': (classifier(
        dict(type='mmrep.RepMLPResNet',
             arch=dict(block_type='light', num_blocks=(1, 2, 2, 1),
                       img_size=(64, 64), partition=(4, 4)),
             out_indices=(3, )), 2048), (64, 64)),
    'CycleMLP-detector': (detector(), (64, 96)),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_exported_fused_model_matches_torch(case, tmp_path, capsys):
    config, shape = CASES[case]
    if isinstance(config, dict):
        path = str(tmp_path / 'config.py')
        Config(config).dump(path)
        config = path
    cfg = Config.fromfile(config)
    tool = load_tool('export_onnx')
    model = randomize_bn(tool.build_model(cfg).eval())
    ckpt = str(tmp_path / 'model.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    out = str(tmp_path / 'model.onnx')
    assert tool.main([config, ckpt, '--out', out, '--shape', *map(
        str, shape), '--verify']) == 0
    assert 'verify with onnxruntime' in capsys.readouterr().out
    assert osp.isfile(out)

    # Against the train-time (unfused) torch model, on another input.
    x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = list(tool.TensorForward(model.eval())(x))
    got = tool.run_onnx(out, x)
    diff, scale = tool.max_difference(ref, got)
    assert diff <= 1e-4 * scale, f'{case}: max abs diff {diff:.3g}'
    if case == 'RepVGG-classifier':
        assert got[0].shape == (1, 7)  # class logits
    if case == 'CycleMLP-detector':
        assert len(got) == 6  # class scores and box deltas of 3 levels


def test_bad_checkpoint_writes_nothing(tmp_path, capsys):
    wrong = str(tmp_path / 'wrong.pth')
    torch.save({'state_dict': {'backbone.foo': torch.zeros(1)}}, wrong)
    out = str(tmp_path / 'never.onnx')
    init_default_scope('mmseg')
    assert load_tool('export_onnx').main([DEMO, wrong, '--out', out]) == 1
    assert 'backbone.foo' in capsys.readouterr().err
    assert not osp.exists(out)
