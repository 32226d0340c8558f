"""tools/export_onnx.py: the fused model of one config per backbone family
(a segmentor, two classifiers, a detector) runs in onnxruntime on the CPU
and reproduces the train-time torch model to 1e-4; with ``--dynamic`` one
segmentor or detector per family runs at other sizes; the pyramid pooling
exports at any size; a Mask R-CNN exports what runs without proposals."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import init_default_scope
from tool_runner import DEMO, load_tool

import mmrep  # noqa: F401
from mmrep.apis import build_model, onnx_export
from mmrep.deploy import (adaptive_avg_pool2d_by_matrices, onnx_pooling,
                          tensor_outputs)
from mmrep.models.backbones.cyclemlp import CycleBlock
from mmrep.models.layers import cycle_stack, cycle_stack_sum
from mmrep.utils.testing import randomize_bn
from mmrep.utils import safe_load

import onnxruntime  # noqa: E402,F401  (installed by tools/install.sh)

# Trains, exports, quantizes, fuzzes or starts processes: `make test-fast`
# leaves it out (the `slow` marker, pytest.ini).
pytestmark = pytest.mark.slow

IMPORTS = dict(imports=['mmrep'], allow_failed_imports=False)
CLS_HEAD = dict(type='LinearClsHead', num_classes=7,
                loss=dict(type='CrossEntropyLoss', loss_weight=1.0))


def classifier(backbone, channels):
    return dict(default_scope='mmpretrain', custom_imports=IMPORTS,
                model=dict(type='ImageClassifier', backbone=backbone,
                           neck=dict(type='GlobalAveragePooling'),
                           head=dict(CLS_HEAD, in_channels=channels)))


DET_PREPROCESSOR = dict(type='DetDataPreprocessor', mean=[0., 0., 0.],
                        std=[1., 1., 1.])


def detector():
    return dict(
        default_scope='mmdet', custom_imports=IMPORTS,
        model=dict(
            type='RetinaNet',
            data_preprocessor=DET_PREPROCESSOR,
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


def segmentor(backbone, channels):
    """A PSPNet (pyramid pooling, BN in the head) on the last stage."""
    return dict(
        default_scope='mmseg', custom_imports=IMPORTS,
        model=dict(
            type='EncoderDecoder',
            data_preprocessor=dict(type='SegDataPreProcessor',
                                   mean=[0., 0., 0.], std=[1., 1., 1.]),
            backbone=backbone,
            decode_head=dict(
                type='PSPHead', in_channels=channels, in_index=-1,
                channels=16, pool_scales=(1, 2, 3, 6), num_classes=4,
                norm_cfg=dict(type='BN'), align_corners=False,
                loss_decode=dict(type='CrossEntropyLoss')),
            test_cfg=dict(mode='whole')))


TINY_REPVGG = dict(num_blocks=(1, 1, 1, 1), width_multiplier=(0.25, ) * 4)


def mask_rcnn():
    """A small Mask R-CNN on RepVGG with BN in its FPN."""
    coder = dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4,
                 target_stds=[1.] * 4)
    roi = dict(type='SingleRoIExtractor', out_channels=16,
               featmap_strides=[8, 16, 32])
    return dict(
        default_scope='mmdet', custom_imports=IMPORTS,
        model=dict(
            type='MaskRCNN',
            data_preprocessor=DET_PREPROCESSOR,
            backbone=dict(type='mmrep.RepVGG', arch=TINY_REPVGG,
                          out_indices=(1, 2, 3)),
            neck=dict(type='FPN', in_channels=[32, 64, 128],
                      out_channels=16, num_outs=3,
                      norm_cfg=dict(type='BN')),
            rpn_head=dict(
                type='RPNHead', in_channels=16, feat_channels=16,
                anchor_generator=dict(type='AnchorGenerator', scales=[8],
                                      ratios=[1.0], strides=[8, 16, 32]),
                bbox_coder=coder,
                loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True),
                loss_bbox=dict(type='L1Loss')),
            roi_head=dict(
                type='StandardRoIHead',
                bbox_roi_extractor=dict(roi, roi_layer=dict(
                    type='RoIAlign', output_size=7, sampling_ratio=0)),
                bbox_head=dict(
                    type='Shared2FCBBoxHead', in_channels=16,
                    fc_out_channels=32, roi_feat_size=7, num_classes=3,
                    bbox_coder=coder, loss_cls=dict(type='CrossEntropyLoss'),
                    loss_bbox=dict(type='L1Loss')),
                mask_roi_extractor=dict(roi, roi_layer=dict(
                    type='RoIAlign', output_size=14, sampling_ratio=0)),
                mask_head=dict(
                    type='FCNMaskHead', num_convs=1, in_channels=16,
                    conv_out_channels=16, num_classes=3,
                    norm_cfg=dict(type='BN'),
                    loss_mask=dict(type='CrossEntropyLoss',
                                   use_mask=True))),
            train_cfg=None,
            test_cfg=dict(
                rpn=dict(nms_pre=100, max_per_img=50, min_bbox_size=0,
                         nms=dict(type='nms', iou_threshold=0.7)),
                rcnn=dict(score_thr=0.05, max_per_img=10,
                          mask_thr_binary=0.5,
                          nms=dict(type='nms', iou_threshold=0.5)))))


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


def random_checkpoint(config, tmp_path):
    """Write ``config`` (a dict or a path) and a checkpoint of its model
    with random BN statistics.

    Returns:
        tuple: config path, checkpoint path, the train-time model (eval).
    """
    if isinstance(config, dict):
        path = str(tmp_path / 'config.py')
        Config(config).dump(path)
        config = path
    model = randomize_bn(build_model(
        Config.fromfile(config)).eval())
    ckpt = str(tmp_path / 'model.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    return config, ckpt, model


def check_against_torch(model, path, x, what):
    """onnxruntime on ``x`` equals the train-time torch model to 1e-4."""
    with torch.no_grad():
        ref = tensor_outputs(model, x)
    got = onnx_export.run_onnx(path, x)
    diff, scale = onnx_export.max_difference(ref, got)
    assert diff <= 1e-4 * scale, f'{what}: max abs diff {diff:.3g}'
    return got


@pytest.mark.parametrize('case', sorted(CASES))
def test_exported_fused_model_matches_torch(case, tmp_path, capsys):
    config, shape = CASES[case]
    config, ckpt, model = random_checkpoint(config, tmp_path)
    out = str(tmp_path / 'model.onnx')
    assert load_tool('export_onnx').main([
        config, ckpt, '--out', out, '--shape', *map(str, shape),
        '--verify']) == 0
    assert 'verify with onnxruntime' in capsys.readouterr().out
    assert osp.isfile(out)

    # Against the train-time (unfused) torch model, on another input.
    x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(1))
    got = check_against_torch(model, out, x, case)
    if case == 'RepVGG-classifier':
        assert got[0].shape == (1, 7)  # class logits
    if case == 'CycleMLP-detector':
        assert len(got) == 6  # class scores and box deltas of 3 levels
    # A file exported without --dynamic refuses any other input size.
    import onnxruntime
    with pytest.raises(onnxruntime.capi.onnxruntime_pybind11_state.
                       InvalidArgument, match='Got invalid dimensions'):
        onnx_export.run_onnx(out, torch.randn(1, 3, shape[0] + 32, shape[1]))


DYNAMIC_CASES = {
    # family: (config, export H, W, three other sizes; one of each case's
    # sizes is not a multiple of 32)
    'RepMLPNet-segmentor': (DEMO, (64, 128),
                            [(96, 160), (75, 131), (40, 200)]),
    'RepMLPResNet-segmentor': (segmentor(dict(
        type='mmrep.RepMLPResNet', out_indices=(3, ),
        arch=dict(block_type='light', num_blocks=(1, 2, 2, 1),
                  img_size=(64, 64), partition=(4, 4))), 2048), (64, 64),
        [(96, 128), (70, 90), (48, 120)]),
    'RepVGG-segmentor': (segmentor(dict(
        type='mmrep.RepVGG', arch=TINY_REPVGG, out_indices=(3, )), 128),
        (64, 96), [(128, 64), (83, 117), (200, 333)]),
    'CycleMLP-detector': (detector(), (64, 96),
                          [(128, 128), (77, 101), (40, 300)]),
}


@pytest.mark.parametrize('case', sorted(DYNAMIC_CASES))
def test_dynamic_export_runs_at_other_sizes(case, tmp_path, capsys):
    config, shape, others = DYNAMIC_CASES[case]
    config, ckpt, model = random_checkpoint(config, tmp_path)
    out = str(tmp_path / 'model.onnx')
    sizes = [f'{h}x{w}' for h, w in others]
    assert load_tool('export_onnx').main([
        config, ckpt, '--out', out, '--dynamic', '--shape',
        *map(str, shape), '--verify', '--verify-shapes', *sizes]) == 0
    log = capsys.readouterr().out
    assert 'dynamic (N, 3, H, W) input' in log
    h, w = others[-1]
    for n, (h, w) in zip((1, 1, 1, 2), [shape] + others):
        assert f'verify with onnxruntime at {n}x3x{h}x{w}' in log
    assert any(h % 32 or w % 32 for h, w in others)
    # Against the train-time torch model at every other size.
    for i, (h, w) in enumerate(others):
        x = torch.randn(1 + i % 2, 3, h, w,
                        generator=torch.Generator().manual_seed(i))
        check_against_torch(model, out, x, f'{case} at {h}x{w}')


def test_verify_failure_is_reported(tmp_path, capsys, monkeypatch):
    config, ckpt, _ = random_checkpoint(DYNAMIC_CASES['RepVGG-segmentor'][0],
                                        tmp_path)
    real = onnx_export.run_onnx
    monkeypatch.setattr(onnx_export, 'run_onnx', lambda path, x: [
        o + 1 for o in real(path, x)])
    assert load_tool('export_onnx').main([
        config, ckpt, '--out', str(tmp_path / 'm.onnx'), '--dynamic',
        '--shape', '64', '64', '--verify', '--verify-shapes', '40x72']) == 2
    assert 'differs from torch by more than 1e-4' in capsys.readouterr().err


def _export_dynamic(module, x, path, names):
    """Trace ``module`` as tools/export_onnx.py does, with H and W (dims 1
    and 2 of a channels-last input) dynamic."""
    torch.onnx.export(module, (x, ), path, input_names=['x'],
                      output_names=names, opset_version=17,
                      dynamic_axes={'x': {0: 'n', 1: 'h', 2: 'w'}},
                      do_constant_folding=True, dynamo=False)


class _StackAndSum(torch.nn.Module):
    def forward(self, x):
        kernels = ((1, 3), (3, 1))
        return cycle_stack(x, kernels), cycle_stack_sum(x, kernels)


def test_cycle_stack_and_its_sum_export_at_any_size(tmp_path):
    """CycleMLP's stacked shifted inputs and their sums (the softmax
    weights' averages), exported once: onnxruntime gives the eager results
    at the export size and at sizes smaller than, larger than and not
    multiples of it (no number of the export size may be baked into the
    graph)."""
    path = str(tmp_path / 'stack.onnx')
    _export_dynamic(_StackAndSum(), torch.randn(2, 16, 32, 8), path,
                    ['stack', 'sum'])
    session = onnxruntime.InferenceSession(
        path, providers=['CPUExecutionProvider'])
    for size in [(16, 32), (5, 7), (9, 13), (40, 3), (1, 1)]:
        x = torch.randn(2, *size, 8)
        ref = _StackAndSum()(x)
        got = session.run(None, {'x': x.numpy()})
        for name, r, g in zip(('stack', 'sum'), ref, got):
            diff = (r - torch.from_numpy(g)).abs().max().item()
            assert diff <= 1e-5 * max(1., r.abs().max().item()), \
                f'{name} at {size}: max abs diff {diff:.3g}'


def test_cycle_block_with_sensitive_mixing_exports_at_any_size(tmp_path):
    """A CycleMLP block whose softmax mixing depends strongly on the
    averages (reweight weights of std 1, not the initialization's 0.02, at
    which the softmax is almost uniform whatever the averages): onnxruntime
    matches eager PyTorch at other sizes."""
    torch.manual_seed(0)
    block = CycleBlock(16).eval()
    for p in block.attn.reweight.parameters():
        torch.nn.init.normal_(p)
    path = str(tmp_path / 'block.onnx')
    with torch.no_grad():
        _export_dynamic(block, torch.randn(1, 12, 20, 16), path, ['y'])
    session = onnxruntime.InferenceSession(
        path, providers=['CPUExecutionProvider'])
    for size in [(12, 20), (7, 9), (30, 17)]:
        x = torch.randn(2, *size, 16)
        with torch.no_grad():
            ref = block(x)
        got = torch.from_numpy(session.run(None, {'x': x.numpy()})[0])
        diff = (ref - got).abs().max().item()
        assert diff <= 1e-5 * ref.abs().max().item(), \
            f'{size}: max abs diff {diff:.3g}'


@pytest.mark.parametrize('size', [(7, 13), (4, 8), (23, 35), (1, 5)])
def test_pyramid_pooling_by_matrices(size):
    x = torch.randn(2, 3, *size)
    for bins in (1, 2, 3, 6, (2, None)):
        ref = F.adaptive_avg_pool2d(x, bins)
        out = adaptive_avg_pool2d_by_matrices(x, bins)
        assert out.shape == ref.shape
        assert torch.allclose(out, ref, atol=1e-6), bins
    original = F.adaptive_avg_pool2d
    with onnx_pooling():
        assert F.adaptive_avg_pool2d is adaptive_avg_pool2d_by_matrices
    assert F.adaptive_avg_pool2d is original


def test_demo_segmentor_exports_at_its_config_size(tmp_path, capsys):
    """The demo's own 128x256: a 4x8 last stage that the pyramid pooling's
    bins 3 and 6 do not divide."""
    config, ckpt, model = random_checkpoint(DEMO, tmp_path)
    out = str(tmp_path / 'model.onnx')
    assert load_tool('export_onnx').main([config, ckpt, '--out', out,
                                          '--verify']) == 0
    assert 'at 1x3x128x256' in capsys.readouterr().out
    check_against_torch(model, out, torch.randn(1, 3, 128, 256), 'demo')
    # Exporting again to the same file says that it replaces it.
    assert load_tool('export_onnx').main([config, ckpt, '--out', out]) == 0
    assert f'note: replacing the existing {out}' in \
        capsys.readouterr().err.splitlines()


def test_mask_rcnn_reparam_and_export(tmp_path, capsys):
    """A two-stage detector: features and RPN outputs are verified and
    exported (its RoI heads need proposals)."""
    from tool_runner import run_tool
    config, ckpt, model = random_checkpoint(mask_rcnn(), tmp_path)
    proc = run_tool('tools/reparam.py', config, ckpt, '--out',
                    str(tmp_path / 'fused.pth'), '--verify', '--shape', '64',
                    '96')
    assert 'max rel diff' in proc.stdout
    fused = safe_load(str(tmp_path / 'fused.pth'))['state_dict']
    assert not any('.bn.' in k for k in fused)  # FPN and mask head folded
    out = str(tmp_path / 'model.onnx')
    assert load_tool('export_onnx').main([
        config, ckpt, '--out', out, '--dynamic', '--shape', '64', '96',
        '--verify', '--verify-shapes', '96x64', '70x90', '32x64']) == 0
    got = check_against_torch(model, out, torch.randn(1, 3, 70, 90),
                              'Mask R-CNN')
    assert len(got) == 3 + 2 * 3  # FPN levels, RPN scores and deltas


def test_bad_checkpoint_writes_nothing(tmp_path):
    wrong = str(tmp_path / 'wrong.pth')
    torch.save({'state_dict': {'backbone.foo': torch.zeros(1)}}, wrong)
    out = str(tmp_path / 'never.onnx')
    init_default_scope('mmseg')
    with pytest.raises(SystemExit) as err:
        load_tool('export_onnx').main([DEMO, wrong, '--out', out])
    assert err.value.code.startswith(
        f'error: {wrong} does not fit the model as configured: ')
    assert "['backbone.foo']" in err.value.code
    assert not osp.exists(out)
