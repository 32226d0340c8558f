"""INT8 deployment of a config's model, for tools/quantize.py: fuse, export
the dynamic ONNX graph, calibrate on the config's own data, write the QDQ
graph, evaluate float32 and INT8 with the config's evaluator and time both.

Calibration batches come from the training set read through the test
pipeline (the images the model learnt from, without random augmentation),
or from the test set when the config has no training dataloader whose
dataset takes a pipeline; both go through the model's data preprocessor
(its mean/std, padding), as the graph's input does.
"""
import copy
import json
import os
import os.path as osp
import shutil
import statistics
import tempfile
import time

import numpy as np
import torch

from ..deploy import tensor_outputs
from ..deploy.heads import plain_heads
from ..deploy.quantize import (DEFAULT_OP_TYPES, match_nodes, op_counts,
                               quantize_onnx, relative_errors,
                               sensitive_nodes)
from ..deploy.runtime import has_openvino, run_session, runtime_session
from ..utils import atomic_write
from .forms import load_fused
from .onnx_eval import (OnnxPredictor, build_test_dataloader, evaluate,
                        preprocessed_batches, with_data_preprocessor)
from ..deploy.walker import check_finite_state
from .onnx_export import export
from .refusals import BadArgumentError, check_writable
from .test_outputs import metrics_as_json

#: The metric the drop is taken on, by the first key a config's evaluator
#: reports (in this order).
PRIMARY_METRICS = ('mIoU', 'accuracy/top1', 'coco/bbox_mAP', 'coco/segm_mAP')


def primary_metric(metrics):
    """The metric a drop is measured on.

    Args:
        metrics (dict): evaluator output.

    Returns:
        str: the first of :data:`PRIMARY_METRICS` present, else the first
        key.
    """
    return next((k for k in PRIMARY_METRICS if k in metrics),
                next(iter(metrics)))


def calibration_config(cfg):
    """The dataloader config calibration reads.

    Args:
        cfg (Config): the config.

    Returns:
        tuple[dict, str]: the dataloader config (the training dataset with
        the test dataset's pipeline, shuffled with a fixed seed, at the test
        batch size; or the test dataloader) and a phrase naming the source.

    Raises:
        BadArgumentError: the config has no test dataloader.
    """
    test = cfg.get('test_dataloader')
    if not test:
        raise BadArgumentError('the config has no test_dataloader (needed '
                               'for calibration and evaluation)')
    if not cfg.get('test_evaluator'):
        raise BadArgumentError('the config has no test_evaluator')
    loader = copy.deepcopy(test.to_dict() if hasattr(test, 'to_dict')
                           else dict(test))
    train = cfg.get('train_dataloader') or {}
    dataset = train.get('dataset') or {}
    pipeline = loader.get('dataset', {}).get('pipeline')
    if 'pipeline' in dataset and pipeline is not None:
        dataset = copy.deepcopy(dataset.to_dict() if hasattr(
            dataset, 'to_dict') else dict(dataset))
        dataset['pipeline'] = pipeline
        loader['dataset'] = dataset
        loader['sampler'] = dict(type='DefaultSampler', shuffle=True)
        return loader, 'training set, test pipeline'
    return loader, 'test set'


def time_forms(forms, x, runs=5, warmup=1, pause=0.1):
    """Median latency of several forms on the same input, interleaved.

    Every round runs each form once, in turn, so the forms share the
    machine's state; the median over rounds is kept. Each run starts after
    a short pause, so that the thread pool of the form before it (PyTorch's
    OpenMP threads, another onnxruntime session's) has stopped spinning and
    does not take the cores of the form being timed.

    Args:
        forms (dict[str, callable]): name -> a function of the input.
        x (np.ndarray): the input batch.
        runs (int): timed rounds. Default: 5.
        warmup (int): untimed rounds first. Default: 1.
        pause (float): seconds of idle before each run. Default: 0.1.

    Returns:
        dict[str, float]: name -> median milliseconds.
    """
    times = {name: [] for name in forms}
    for i in range(warmup + runs):
        for name, fn in forms.items():
            time.sleep(pause)
            start = time.perf_counter()
            fn(x)
            if i >= warmup:
                times[name].append(1e3 * (time.perf_counter() - start))
    return {name: statistics.median(t) for name, t in times.items()}


def int8_output_errors(float_form, int8_forms, x):
    """Relative L2 distance of each INT8 runtime's outputs to float32.

    Args:
        float_form (callable): the float32 onnxruntime form.
        int8_forms (dict[str, callable]): runtime -> INT8 form.
        x (np.ndarray): the input.

    Returns:
        dict[str, float]: runtime -> mean over outputs of
        :func:`~mmrep.deploy.quantize.relative_errors`.
    """
    ref = float_form(x)
    return {name: float(np.mean(relative_errors(ref, form(x))))
            for name, form in int8_forms.items()}


def latency_forms(fused, float_path, int8_path, threads, runtimes,
                  plain_path=None):
    """The float32 and INT8 forms to time.

    Args:
        fused (nn.Module): the fused torch model.
        float_path (str): the float .onnx file.
        int8_path (str): the INT8 .onnx file.
        threads (int): threads of every form.
        runtimes (list[str]): ONNX runtimes to try (onnxruntime, openvino).
        plain_path (str, optional): the float graph with plain heads
            (:func:`~mmrep.deploy.heads.plain_heads`), timed too.

    Returns:
        tuple[dict, dict]: float32 forms and INT8 forms, name -> function.
    """
    def eager(x):
        with torch.inference_mode():
            tensor_outputs(fused, torch.from_numpy(x))
    floats = {'fused eager': eager}
    ints = {}
    for rt in runtimes:
        f, q = (runtime_session(rt, p, threads)
                for p in (float_path, int8_path))
        floats[rt] = lambda x, s=f: run_session(s, x)
        ints[rt] = lambda x, s=q: run_session(s, x)
    if 'onnxruntime' not in floats:  # the reference for output errors
        s = runtime_session('onnxruntime', float_path, threads)
        floats['onnxruntime'] = lambda x: run_session(s, x)
    if plain_path:
        p = runtime_session('onnxruntime', plain_path, threads)
        floats['onnxruntime, plain head'] = lambda x: run_session(p, x)
    return floats, ints


def quantize_config(cfg, checkpoint, out, calib_batches=8,
                    calib_method='minmax', per_channel=True, keep_float=(),
                    auto_keep_float=0, op_types=DEFAULT_OP_TYPES,
                    threads=None, latency_shape=None, latency_runs=5,
                    runtimes=None, out_metrics=None, out_float=None,
                    eval_batches=None, int8_plain_heads=True, log=print):
    """Quantize a config's model to INT8 and measure what it costs.

    The outputs are checked first
    (:func:`~mmrep.apis.refusals.check_writable`); everything is computed
    in a temporary folder; ``out``, ``out_metrics`` (and ``out_float``) are
    written at the end only.

    Args:
        cfg (Config): the (train-time) config, without ``init_cfg``.
        checkpoint (str): a train-time or fused checkpoint of its model.
        out (str): the INT8 .onnx file (QDQ).
        calib_batches (int): calibration batches. Default: 8.
        calib_method (str): ``'minmax'``, ``'entropy'`` or
            ``'percentile'``. Default: ``'minmax'``.
        per_channel (bool): per-output-channel weight scales. Default: True.
        keep_float (list[str]): patterns of nodes kept float32
            (:func:`~mmrep.deploy.quantize.match_nodes`).
        auto_keep_float (int): also keep this many nodes float32, the ones
            INT8 hurts most (:func:`~mmrep.deploy.quantize.sensitive_nodes`).
            Default: 0.
        op_types (tuple[str]): the operators quantized.
        threads (int, optional): threads of every runtime (default:
            torch's).
        latency_shape (tuple[int, int], optional): ``(H, W)`` of the timed
            batch-1 input (default: the first calibration batch's size).
        latency_runs (int): timed rounds. Default: 5.
        runtimes (list[str], optional): ONNX runtimes timed (default:
            onnxruntime, and OpenVINO when it is installed); the fastest
            INT8 one is chosen and evaluates the INT8 model.
        out_metrics (str, optional): the JSON (default: ``out`` with
            ``.json``).
        out_float (str, optional): also keep the float32 .onnx here.
        eval_batches (int, optional): evaluate the first batches only.
        int8_plain_heads (bool): quantize the graph with mmseg's plain
            ``UPerHead`` instead of its deploy form
            (:func:`~mmrep.deploy.heads.plain_heads`: one 3x3
            convolution, which runs in INT8, where the deploy form has
            products of activations that stay float32); the float32 forms
            are timed with both heads and ``speedup`` is taken against the
            fastest. Default: True.
        log (callable): progress messages. Default: ``print``.

    Returns:
        dict: what the JSON holds.

    Raises:
        BadArgumentError: no test dataloader or evaluator, a calibration
            set smaller than ``calib_batches``, ``keep_float`` patterns
            that match no node, bad counts, an output that cannot be
            written.
        CheckpointMismatchError: the checkpoint is not the config's model.
        NonFiniteWeightsError: NaN or Inf among its weights (the first
            one named).
    """
    out_metrics = out_metrics or osp.splitext(out)[0] + '.json'
    for path, what in ((out, '--out'), (out_float, '--out-float'),
                       (out_metrics, '--out-metrics')):
        if path:
            check_writable(path, what)
    if calib_batches < 1:
        raise BadArgumentError(f'--calib-batches must be positive, got '
                               f'{calib_batches}')
    if auto_keep_float < 0:
        raise BadArgumentError('--auto-keep-float must be >= 0')
    threads = threads or torch.get_num_threads()
    cfg = with_data_preprocessor(copy.deepcopy(cfg))
    loader_cfg, source = calibration_config(cfg)
    test_loader = build_test_dataloader(cfg)
    fused = load_fused(cfg, checkpoint).fused
    check_finite_state(fused.state_dict(), f'in {checkpoint}',
                       'refusing to quantize it')
    from mmengine.runner import Runner
    cal_loader = Runner.build_dataloader(loader_cfg, seed=0)
    if len(cal_loader) < calib_batches:
        bs = cal_loader.batch_size
        raise BadArgumentError(
            f'the calibration set ({source}) has {len(cal_loader)} batches '
            f'of {bs} ({len(cal_loader.dataset)} images); --calib-batches '
            f'asks for {calib_batches}')
    torch.set_num_threads(threads)
    calib = preprocessed_batches(cfg, fused, calib_batches,
                                 dataloader=cal_loader)
    runtimes = list(runtimes or (['onnxruntime'] + (
        ['openvino'] if has_openvino() else [])))
    with tempfile.TemporaryDirectory() as tmp:
        float_path = osp.join(tmp, 'float32.onnx')
        int8_path = osp.join(tmp, 'int8.onnx')
        example = torch.from_numpy(calib[0][:1])
        export(fused, example, float_path, dynamic=True)
        # The float graph that is quantized: with plain heads, if any.
        graph, plain_path = float_path, None
        plain = copy.deepcopy(fused) if int8_plain_heads else None
        if plain is not None and plain_heads(plain):
            plain_path = graph = osp.join(tmp, 'float32_plain_heads.onnx')
            export(plain, example, plain_path, dynamic=True)
        keep = []
        if keep_float:
            keep = match_nodes(graph, keep_float, op_types)
            if not keep:
                raise BadArgumentError(
                    f'--keep-float {" ".join(keep_float)} matches no '
                    f'{"/".join(op_types)} node of the exported graph')
        kwargs = dict(method=calib_method, per_channel=per_channel,
                      op_types=op_types)
        auto = []
        if auto_keep_float:
            log('[quantize] sensitivity pass over the quantizable nodes')
            auto, _ = sensitive_nodes(graph, calib, auto_keep_float,
                                      keep_float=keep, threads=threads,
                                      **kwargs)
        log(f'[quantize] calibrating on {len(calib)} batches ({source}, '
            f'{calib_method}, per-{"channel" if per_channel else "tensor"})')
        info = quantize_onnx(graph, int8_path, calib,
                             keep_float=keep + auto, **kwargs)
        shape = tuple(latency_shape or calib[0].shape[2:])
        x = np.random.default_rng(0).standard_normal(
            (1, 3, *shape)).astype(np.float32)
        load = os.getloadavg()
        floats, ints = latency_forms(fused, float_path, int8_path, threads,
                                     runtimes, plain_path)
        times = time_forms({**{f'float32 {k}': v for k, v in floats.items()},
                            **{f'int8 {k}': v for k, v in ints.items()}},
                           x, latency_runs)
        load = [round(v, 2) for v in load + os.getloadavg()]
        float_ms = {k: times[f'float32 {k}'] for k in floats}
        int8_ms = {k: times[f'int8 {k}'] for k in ints}
        errors = int8_output_errors(floats['onnxruntime'], ints, x)
        # A runtime whose INT8 outputs stray far from the others' is not
        # chosen however fast it runs.
        trusted = [k for k in ints if errors[k] <= 1.5 * min(errors.values())
                   + 1e-3]
        runtime = min(trusted, key=int8_ms.get)
        fastest_float = min(float_ms, key=float_ms.get)
        log(f'[quantize] evaluating float32 (onnxruntime) and INT8 '
            f'({runtime})')
        float_metrics = evaluate(cfg, OnnxPredictor(
            cfg, runtime_session('onnxruntime', float_path, threads))
            .test_step, test_loader, eval_batches)
        int8_metrics = evaluate(cfg, OnnxPredictor(
            cfg, runtime_session(runtime, int8_path, threads)).test_step,
            test_loader, eval_batches)
        metric = primary_metric(float_metrics)
        result = {
            'float32': {**_plain(float_metrics),
                        'latency_ms': round(min(float_ms.values()), 2),
                        'latency_ms_by_runtime': _round(float_ms)},
            'int8': {**_plain(int8_metrics),
                     'latency_ms': round(int8_ms[runtime], 2),
                     'latency_ms_by_runtime': _round(int8_ms)},
            'metric': metric,
            'drop': round(float(float_metrics[metric]) -
                          float(int8_metrics[metric]), 4),
            'speedup': round(float_ms[fastest_float] / int8_ms[runtime],
                             3),
            'speedup_over': fastest_float,
            'speedup_same_runtime': round(float_ms[runtime] /
                                          int8_ms[runtime], 3),
            'runtime': runtime,
            'int8_output_error_by_runtime': {k: round(v, 5)
                                             for k, v in errors.items()},
            'latency': dict(shape=[1, 3, *shape], threads=threads,
                            runs=latency_runs, statistic='median',
                            load_average_before_after=load),
            'calibration': dict(batches=len(calib), source=source,
                                method=calib_method,
                                granularity='per-channel' if per_channel
                                else 'per-tensor'),
            'quantized_op_types': list(op_types),
            'quantized_nodes': info['quantized'],
            'kept_float': dict(requested=keep, sensitivity=auto),
            'format': 'QDQ',
            'int8_graph_heads': 'plain UPerHead' if plain_path else
            'as fused',
            'ops': op_counts(int8_path),
        }
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        atomic_write(out, lambda t: shutil.copyfile(int8_path, t))
        if out_float:
            os.makedirs(osp.dirname(osp.abspath(out_float)), exist_ok=True)
            atomic_write(out_float, lambda t: shutil.copyfile(float_path, t))
    os.makedirs(osp.dirname(osp.abspath(out_metrics)), exist_ok=True)
    atomic_write(out_metrics, lambda t: _dump(result, t))
    return result


def _plain(metrics):
    """Metric values as JSON numbers (or strings), numbers rounded."""
    return {k: round(v, 4) if isinstance(v, float) else v
            for k, v in metrics_as_json(metrics).items()}


def _round(times):
    return {k: round(v, 2) for k, v in times.items()}


def _dump(result, path):
    with open(path, 'w') as f:
        json.dump(result, f, indent=2)
        f.write('\n')
