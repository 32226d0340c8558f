"""INT8 deployment: tools/quantize.py writes a QDQ ONNX graph and one JSON of
float32 / INT8 metrics (from the config's evaluator) and latencies;
tools/test.py evaluates .onnx files with the config's pipeline and
evaluator; bad inputs give one ``error:`` line and write nothing; the
QARepVGG block fuses exactly; the weight-range measures behave."""
import json
import os.path as osp

import numpy as np
import onnx
import pytest
import torch
from mmengine.config import Config

import mmrep  # noqa: F401
from mmrep.apis import build_model
from mmrep.datasets import make_cityscapes_like
from mmrep.deploy import reparameterize_model
from mmrep.deploy.quantize import symmetric_int8_error, weight_ranges
from mmrep.deploy.runtime import run_session, session, torch_threads
from mmrep.models.backbones.repvgg import RepVGG, RepVGGBlock
from mmrep.utils.testing import randomize_bn

from tool_runner import DEMO, main_or_error

IMAGE = (64, 128)


# Tiny models: one thread is as fast, and far faster on a busy machine.
# Trains, exports, quantizes, fuzzes or starts processes: `make test-fast`
# leaves it out (the `slow` marker, pytest.ini).
pytestmark = [pytest.mark.slow,
              pytest.mark.usefixtures('one_torch_thread')]


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    """The demo segmentor on a tiny generated Cityscapes-layout set, a
    checkpoint with random BN statistics, and one tools/quantize.py run."""
    root = tmp_path_factory.mktemp('quant')
    data = str(root / 'data')
    make_cityscapes_like(data, num_train=4, num_val=2, size=IMAGE)
    cfg = Config.fromfile(DEMO)
    cfg.merge_from_dict({
        'data_root': data, 'train_dataloader.dataset.data_root': data,
        'val_dataloader.dataset.data_root': data,
        'test_dataloader.dataset.data_root': data,
        'model.data_preprocessor.size': IMAGE})
    config = str(root / 'demo.py')
    cfg.dump(config)
    torch.manual_seed(0)
    model = randomize_bn(build_model(Config.fromfile(config)))
    ckpt = str(root / 'model.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    out = str(root / 'int8.onnx')
    result = main_or_error('quantize', [
        config, ckpt, '--out', out, '--calib-batches', '2',
        '--out-float', str(root / 'float32.onnx'), '--latency-runs', '1',
        '--runtimes', 'onnxruntime', '--threads', '1'])
    assert isinstance(result, dict), result
    return dict(root=root, config=config, ckpt=ckpt, out=out,
                float=str(root / 'float32.onnx'),
                json=str(root / 'int8.json'), result=result)


def test_quantize_writes_a_qdq_graph_and_the_json(demo):
    ops = {n.op_type for n in onnx.load(demo['out']).graph.node}
    assert {'QuantizeLinear', 'DequantizeLinear'} <= ops
    with open(demo['json']) as f:
        result = json.load(f)
    assert result == json.loads(json.dumps(demo['result']))
    for key in ('float32', 'int8', 'drop', 'speedup', 'runtime'):
        assert key in result
    assert result['runtime'] == 'onnxruntime'
    assert result['metric'] == 'mIoU'
    for form in ('float32', 'int8'):
        # mmseg's IoUMetric keys: the metrics come from the evaluator
        assert {'aAcc', 'mIoU', 'mAcc', 'latency_ms'} <= set(result[form])
        assert result[form]['latency_ms'] > 0
    assert result['drop'] == pytest.approx(
        result['float32']['mIoU'] - result['int8']['mIoU'], abs=1e-3)
    assert result['quantized_nodes'] > 0
    # UperNet is quantized with its plain head; both float heads are timed
    assert result['int8_graph_heads'] == 'plain UPerHead'
    assert set(result['float32']['latency_ms_by_runtime']) == {
        'fused eager', 'onnxruntime', 'onnxruntime, plain head'}
    assert result['speedup_over'] in result['float32'][
        'latency_ms_by_runtime']
    assert result['latency']['threads'] == 1
    assert result['calibration'] == dict(
        batches=2, source='training set, test pipeline', method='minmax',
        granularity='per-channel')


def test_test_tool_evaluates_onnx_like_the_checkpoint(demo):
    torch_metrics = main_or_error('test', [
        demo['config'], demo['ckpt'], '--work-dir',
        str(demo['root'] / 'work')])
    onnx_metrics = main_or_error('test', [demo['config'], demo['float']])
    assert isinstance(onnx_metrics, dict), onnx_metrics
    for key in ('aAcc', 'mIoU', 'mAcc'):
        assert onnx_metrics[key] == pytest.approx(torch_metrics[key],
                                                  abs=0.05)
        assert onnx_metrics[key] == pytest.approx(
            demo['result']['float32'][key], abs=0.01)
    int8_metrics = main_or_error('test', [
        demo['config'], demo['out'], '--out-metrics',
        str(demo['root'] / 'int8_metrics.json')])
    assert int8_metrics['mIoU'] == pytest.approx(
        demo['result']['int8']['mIoU'], abs=0.01)
    assert osp.isfile(demo['root'] / 'int8_metrics.json')


def test_int8_graph_runs_at_any_size(demo):
    fp, q = session(demo['float']), session(demo['out'])
    for shape in ((1, 3, 64, 96), (2, 3, 100, 150), (1, 3, 128, 256)):
        x = np.random.default_rng(0).standard_normal(shape).astype(
            np.float32)
        a, b = run_session(fp, x)[0], run_session(q, x)[0]
        assert a.shape == b.shape and a.shape[0] == shape[0]
        assert np.linalg.norm(a - b) / np.linalg.norm(a) < 0.25


def test_sessions_take_their_threads_and_torch_threads_restores(demo):
    """A session's thread count is its own option; the one change of the
    process's threads is a context that restores them."""
    before = torch.get_num_threads()
    options = session(demo['float'], before + 1).get_session_options()
    assert options.intra_op_num_threads == before + 1
    assert torch.get_num_threads() == before
    with torch_threads(before + 2):
        assert torch.get_num_threads() == before + 2
    assert torch.get_num_threads() == before


def test_bad_inputs_give_one_line_and_write_nothing(demo, tmp_path):
    out = str(tmp_path / 'never.onnx')
    metrics = str(tmp_path / 'never.json')
    base = ['--out', out, '--out-metrics', metrics, '--runtimes',
            'onnxruntime']
    cfg = Config.fromfile(demo['config'])
    cfg.test_dataloader = None
    no_test = str(tmp_path / 'no_test.py')
    cfg.dump(no_test)
    assert main_or_error('quantize', [no_test, demo['ckpt']] + base) == (
        'error: the config has no test_dataloader (needed for calibration '
        'and evaluation)')
    wrong = str(tmp_path / 'wrong.pth')
    torch.save({'state_dict': {'backbone.foo': torch.zeros(1)}}, wrong)
    line = main_or_error('quantize', [demo['config'], wrong] + base)
    assert line.startswith(f'error: {wrong} does not fit the model as '
                           f'configured: ')
    assert main_or_error('quantize', [demo['config'], demo['ckpt'],
                                      '--calib-batches', '5'] + base) == (
        'error: the calibration set (training set, test pipeline) has 4 '
        'batches of 1 (4 images); --calib-batches asks for 5')
    line = main_or_error('quantize', [
        demo['config'], demo['ckpt'], '--keep-float', 'no_such_layer',
        '--calib-batches', '2'] + base)
    assert line == ('error: --keep-float no_such_layer matches no '
                    'Conv/MatMul/Gemm node of the exported graph')
    assert not osp.exists(out) and not osp.exists(metrics)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'no_test.py', 'wrong.pth']
    line = main_or_error('test', [demo['config'], demo['out'], '--tta'])
    assert line == ('error: --tta needs the torch model; an ONNX file is '
                    'evaluated for its metrics only')


@pytest.mark.parametrize('stride,in_c,out_c,groups', [
    (1, 8, 8, 1), (1, 8, 8, 2), (2, 4, 8, 1), (1, 4, 8, 1)])
def test_qarepvgg_block_fuses_to_its_train_time_form(stride, in_c, out_c,
                                                     groups):
    torch.manual_seed(0)
    block = randomize_bn(RepVGGBlock(in_c, out_c, stride, groups,
                                     block='qarepvgg')).eval()
    assert not isinstance(block.rbr_1x1, torch.nn.Sequential)  # no BN
    assert block.rbr_1x1.bias is None
    assert (block.rbr_identity is not None) == (in_c == out_c and
                                                stride == 1)
    x = torch.randn(2, in_c, 13, 17)
    with torch.no_grad():
        expected = block(x)
        block.reparameterize()
        got = block(x)
    assert block.deploy and not hasattr(block, 'bn')
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_qarepvgg_backbone_fuses_to_the_repvgg_deploy_structure():
    arch = dict(num_blocks=(1, 2, 1, 1),
                width_multiplier=(0.25, 0.25, 0.25, 0.25),
                group_layer_map={2: 2})
    torch.manual_seed(0)
    model = randomize_bn(RepVGG(arch, block='qarepvgg')).eval()
    x = torch.randn(1, 3, 45, 61)
    with torch.no_grad():
        expected = model(x)
        fused = reparameterize_model(model)
        got = fused(x)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    deploy = RepVGG(arch, deploy=True).state_dict()
    assert {k: v.shape for k, v in fused.state_dict().items()} == {
        k: v.shape for k, v in deploy.items()}
    with pytest.raises(ValueError, match="block must be 'repvgg' or "):
        RepVGGBlock(4, 4, block='qa')


def test_weight_range_measures():
    w = torch.randn(16, 8, 3, 3)
    w[3] *= 50  # one channel far wider than the rest
    assert symmetric_int8_error(w, per_channel=True) < 0.05
    assert symmetric_int8_error(w, per_channel=False) > \
        5 * symmetric_int8_error(w, per_channel=True)
    conv = torch.nn.Conv2d(8, 16, 3)
    conv.weight.data.copy_(w)
    (row, ) = weight_ranges(torch.nn.Sequential(conv))
    assert row['name'] == '0' and row['spread'] > 10
    assert row['error_per_channel'] < row['error_per_tensor']


def test_classifier_uses_the_configs_normalization(tmp_path):
    """An mmpretrain config keeps mean/std in its top-level
    data_preprocessor; the float32 ONNX metric equals tools/test.py's on
    the checkpoint only if the graph's input is normalized the same way."""
    from mmrep.datasets import make_imagenet_like
    data = make_imagenet_like(str(tmp_path / 'data'), num_classes=5,
                              per_class_train=2, per_class_val=4, size=40)
    cfg = Config.fromfile(osp.join(osp.dirname(DEMO), '..', 'imagenet',
                                   'repvgg-a0_8xb32_in1k.py'))
    cfg.model.backbone.arch = dict(num_blocks=(1, 1, 1, 1),
                                   width_multiplier=(0.25, 0.25, 0.25, 0.25))
    cfg.model.head.in_channels = 128
    cfg.model.head.num_classes = 5
    cfg.data_preprocessor.num_classes = 5
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[key]
        loader.batch_size, loader.num_workers = 5, 0
        loader.persistent_workers = False
        loader.dataset.data_root = data
        for t in loader.dataset.pipeline:
            if t.type in ('RandomResizedCrop', 'ResizeEdge'):
                t.scale = 32
            elif t.type == 'CenterCrop':
                t.crop_size = 32
    config = str(tmp_path / 'cls.py')
    cfg.dump(config)
    assert cfg.model.get('data_preprocessor') is None  # top-level only
    torch.manual_seed(0)
    model = randomize_bn(build_model(Config.fromfile(config)))
    ckpt = str(tmp_path / 'cls.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    result = main_or_error('quantize', [
        config, ckpt, '--out', str(tmp_path / 'cls_int8.onnx'),
        '--calib-batches', '2', '--latency-runs', '1', '--runtimes',
        'onnxruntime', '--threads', '1'])
    assert isinstance(result, dict), result
    assert result['metric'] == 'accuracy/top1'
    expected = main_or_error('test', [config, ckpt, '--work-dir',
                                      str(tmp_path / 'work')])
    assert result['float32']['accuracy/top1'] == pytest.approx(
        float(expected['accuracy/top1']), abs=0.01)
    assert 'int8_graph_heads' in result and result['int8_graph_heads'] == \
        'as fused'


def test_one_stage_detector_is_quantized_and_evaluated_with_coco_metric(
        tmp_path):
    """A RetinaNet: calibrated on its training images, both graphs
    evaluated with the config's CocoMetric; the float32 graph's metrics are
    tools/test.py's on the checkpoint, and the INT8 graph's raw outputs
    stay near the float32 graph's."""
    from mmengine.config import DictAction
    from test_coco_e2e import coco_options

    from mmrep.datasets import make_coco_like
    config = osp.join(osp.dirname(DEMO), '..', 'coco',
                      'demo_retinanet_cyclemlp-tiny_1xb2-cpu_coco-'
                      'synthetic.py')
    root = make_coco_like(str(tmp_path / 'data'), num_train=2, num_val=2,
                          size=(128, 128), seed=1)
    options = coco_options(root, 1)
    cfg = Config.fromfile(config)
    cfg.merge_from_dict({k: DictAction._parse_iterable(v) for k, v in
                         (o.split('=', 1) for o in options[1:])})
    torch.manual_seed(0)
    model = randomize_bn(build_model(cfg))
    ckpt = str(tmp_path / 'retinanet.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    out, out_float = (str(tmp_path / f'det_{t}.onnx')
                      for t in ('int8', 'float32'))
    result = main_or_error('quantize', [
        config, ckpt, '--out', out, '--out-float', out_float,
        '--calib-batches', '1', '--latency-runs', '1', '--runtimes',
        'onnxruntime', '--threads', '1', *options])
    assert isinstance(result, dict), result
    assert result['metric'] == 'coco/bbox_mAP'
    assert {'QuantizeLinear', 'DequantizeLinear'} <= {
        n.op_type for n in onnx.load(out).graph.node}
    # Random weights find no box (mAP 0 in both graphs), so the INT8 graph's
    # raw outputs (class scores and box deltas of every level) on the test
    # images are compared with the float32 graph's.
    from mmrep.apis.onnx_eval import preprocessed_batches
    x = preprocessed_batches(cfg, model, 1)[0]
    want = run_session(session(out_float, 1), x)
    got = run_session(session(out, 1), x)
    levels = len(cfg.model.bbox_head.anchor_generator.strides)
    assert len(got) == len(want) == 2 * levels  # scores and deltas
    assert [g.shape for g in got] == [w.shape for w in want]
    got, want = (np.concatenate([o.ravel() for o in outs])
                 for outs in (got, want))
    assert np.linalg.norm(got - want) < 0.25 * np.linalg.norm(want)
    expected = main_or_error('test', [config, ckpt, '--work-dir',
                                      str(tmp_path / 'work'), *options])
    assert isinstance(expected, dict), expected
    coco = [k for k in expected if k.startswith('coco/')]
    assert 'coco/bbox_mAP' in coco
    for key in coco:
        assert result['float32'][key] == pytest.approx(float(expected[key]),
                                                       abs=1e-3)
        assert key in result['int8']


def test_sensitive_nodes_ranks_by_the_error_their_float_form_saves(demo,
                                                                   tmp_path):
    """The sensitivity pass behind --auto-keep-float: each candidate's gain
    is the fully quantized graph's output error minus the error with that
    node alone kept float32; the chosen nodes are those with a positive
    gain, largest first."""
    from mmrep.deploy.quantize import (output_error, quantizable_nodes,
                                       quantize_onnx, sensitive_nodes)
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((1, 3, *IMAGE)).astype(np.float32)
             for _ in range(2)]
    candidates = quantizable_nodes(demo['float'])[:3]
    assert len(candidates) == 3
    chosen, gains = sensitive_nodes(demo['float'], calib, 2,
                                    candidates=candidates)
    assert set(gains) == set(candidates)
    positive = sorted((n for n in gains if gains[n] > 0),
                      key=lambda n: -gains[n])
    assert chosen == positive[:2]
    reference = session(demo['float'])
    errors = {}
    for keep in [[]] + [[n] for n in candidates]:
        path = str(tmp_path / f'q{len(errors)}.onnx')
        quantize_onnx(demo['float'], path, calib, keep_float=keep)
        errors[tuple(keep)] = output_error(reference, session(path), calib)
    for node in candidates:
        assert gains[node] == pytest.approx(
            errors[()] - errors[(node, )], abs=1e-6)


def test_quantize_options_reach_the_graph_and_the_json(demo, tmp_path):
    """--calib-method, --per-tensor, --op-types, --eval-batches and
    --latency-shape: each shows in the INT8 graph or the JSON."""
    import onnx.numpy_helper
    from mmrep.apis import load_config
    from mmrep.apis.onnx_eval import evaluate_onnx
    out = str(tmp_path / 'conv_only.onnx')
    result = main_or_error('quantize', [
        demo['config'], demo['ckpt'], '--out', out, '--calib-batches', '2',
        '--calib-method', 'percentile', '--per-tensor', '--op-types',
        'Conv', '--eval-batches', '1', '--latency-shape', '32', '64',
        '--latency-runs', '1', '--runtimes', 'onnxruntime', '--threads',
        '2'])
    assert isinstance(result, dict), result
    # --threads is the runs' own: the process's count is restored
    assert result['latency']['threads'] == 2
    assert torch.get_num_threads() == 1  # the module's one_torch_thread
    assert result['calibration']['method'] == 'percentile'
    assert result['calibration']['granularity'] == 'per-tensor'
    assert result['quantized_op_types'] == ['Conv']
    assert result['latency']['shape'] == [1, 3, 32, 64]
    model = onnx.load(out)
    weights = {i.name: onnx.numpy_helper.to_array(i)
               for i in model.graph.initializer}
    made_by = {o: n for n in model.graph.node for o in n.output}
    int8_inputs = {}  # op type -> how many inputs are dequantized weights
    for node in model.graph.node:
        for name in node.input:
            dq = made_by.get(name)
            if dq is not None and dq.op_type == 'DequantizeLinear' and \
                    weights.get(dq.input[0], np.zeros(0)).dtype == np.int8:
                int8_inputs[node.op_type] = int8_inputs.get(
                    node.op_type, 0) + 1
                # per tensor: one scale for the whole weight
                assert weights[dq.input[1]].size == 1
    assert int8_inputs.get('Conv', 0) > 0
    assert set(int8_inputs) == {'Conv'}  # MatMul and Gemm stay float32
    cfg = load_config(demo['config'])
    first_batch = evaluate_onnx(cfg, demo['float'], max_batches=1)
    assert result['float32']['mIoU'] == pytest.approx(
        float(first_batch['mIoU']), abs=1e-3)


def test_calibration_methods_give_different_activation_ranges(demo,
                                                              tmp_path):
    """minmax, entropy and percentile calibration each set the activations'
    quantization scales their own way; min/max, which covers every
    calibration value, gives the widest range of each activation."""
    import onnx.numpy_helper
    from mmrep.deploy.quantize import quantize_onnx
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((1, 3, *IMAGE)).astype(np.float32)
             for _ in range(2)]
    scales = {}
    for method in ('minmax', 'entropy', 'percentile'):
        path = str(tmp_path / f'{method}.onnx')
        quantize_onnx(demo['float'], path, calib, method=method)
        model = onnx.load(path)
        values = {i.name: onnx.numpy_helper.to_array(i)
                  for i in model.graph.initializer}
        scales[method] = {
            n.input[0]: float(values[n.input[1]]) for n in model.graph.node
            if n.op_type == 'QuantizeLinear' and n.input[0] not in values}
    assert scales['minmax'] and set(scales['minmax']) == set(
        scales['entropy']) == set(scales['percentile'])
    for method in ('entropy', 'percentile'):
        assert scales[method] != scales['minmax']
        for name, scale in scales[method].items():
            assert scale <= scales['minmax'][name] * (1 + 1e-5), name
    assert scales['entropy'] != scales['percentile']


def test_a_runtime_that_cannot_load_the_graphs_is_left_out(monkeypatch):
    """OpenVINO's CPU plugin refuses some QDQ graphs (2026.4 on CycleMLP's:
    'Node Convert_... contains empty child edge'); the latency step then
    goes on without it, one log line, unless it was the only runtime."""
    from mmrep.apis import quantize

    def runtime_session(runtime, path, threads=None):
        if runtime == 'openvino':
            raise RuntimeError('Check failed\nat node.cpp:703')
        return object()
    monkeypatch.setattr(quantize, 'runtime_session', runtime_session)
    lines = []
    floats, ints = quantize.latency_forms(
        torch.nn.Identity(), 'float.onnx', 'int8.onnx', 1,
        ['onnxruntime', 'openvino'], log=lines.append)
    assert set(ints) == {'onnxruntime'}
    assert set(floats) == {'fused eager', 'onnxruntime'}
    assert lines == ['[quantize] openvino left out: it cannot load the '
                     'graphs (RuntimeError: Check failed)']
    with pytest.raises(RuntimeError, match='Check failed'):
        quantize.latency_forms(torch.nn.Identity(), 'float.onnx',
                               'int8.onnx', 1, ['openvino'],
                               log=lines.append)
