"""INT8 deployment of a config's model, for tools/quantize.py, in three
steps that :func:`quantize_config` composes:

* :func:`prepare_quantization`: fuse the checkpoint and read the
  calibration batches;
* :func:`quantize_model`: export the dynamic ONNX graph and write its QDQ
  form, calibrated on those batches;
* :func:`measure_quantized`: time float32 and INT8, and evaluate both with
  the config's evaluator, into one :class:`QuantizeResult`, which
  :func:`~mmrep.apis.test_outputs.write_metrics` writes.

Calibration batches come from the training set read through the test
pipeline (the images the model learnt from, without random augmentation),
or from the test set when the config has no training dataloader whose
dataset takes a pipeline; both go through the model's data preprocessor
(its mean/std, padding), as the graph's input does.
"""
import copy
import dataclasses
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
from ..deploy.runtime import (has_openvino, run_session, runtime_session,
                              torch_threads)
from ..deploy.walker import check_finite_state
from ..utils import atomic_write
from .forms import load_fused
from .onnx_eval import (OnnxPredictor, build_test_dataloader, evaluate,
                        preprocessed_batches, with_data_preprocessor)
from .onnx_export import export
from .refusals import BadArgumentError, check_writable
from .test_outputs import metrics_as_json, write_metrics

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
                  plain_path=None, log=print):
    """The float32 and INT8 forms to time. A runtime other than
    onnxruntime that cannot load the graphs (OpenVINO's CPU plugin refuses
    some QDQ graphs) is left out with a log line, unless it is the only
    one asked for.

    Args:
        fused (nn.Module): the fused torch model.
        float_path (str): the float .onnx file.
        int8_path (str): the INT8 .onnx file.
        threads (int): threads of every form.
        runtimes (list[str]): ONNX runtimes to try (onnxruntime, openvino).
        plain_path (str, optional): the float graph with plain heads
            (:func:`~mmrep.deploy.heads.plain_heads`), timed too.
        log (callable): progress messages. Default: ``print``.

    Returns:
        tuple[dict, dict]: float32 forms and INT8 forms, name -> function.
    """
    def eager(x):
        with torch.inference_mode():
            tensor_outputs(fused, torch.from_numpy(x))
    floats = {'fused eager': eager}
    ints = {}
    for rt in runtimes:
        try:
            f, q = (runtime_session(rt, p, threads)
                    for p in (float_path, int8_path))
        except Exception as e:
            if rt == 'onnxruntime' or len(runtimes) == 1:
                raise
            first = (str(e).strip().splitlines() or [''])[0]
            log(f'[quantize] {rt} left out: it cannot load the graphs '
                f'({e.__class__.__name__}: {first})')
            continue
        floats[rt] = lambda x, s=f: run_session(s, x)
        ints[rt] = lambda x, s=q: run_session(s, x)
    if 'onnxruntime' not in floats:  # the reference for output errors
        s = runtime_session('onnxruntime', float_path, threads)
        floats['onnxruntime'] = lambda x: run_session(s, x)
    if plain_path:
        p = runtime_session('onnxruntime', plain_path, threads)
        floats['onnxruntime, plain head'] = lambda x: run_session(p, x)
    return floats, ints


@dataclasses.dataclass
class Prepared:
    """What :func:`prepare_quantization` gives the other steps.

    Attributes:
        cfg (Config): the config, its model with the data preprocessor.
        fused (nn.Module): the fused model.
        batches (list[np.ndarray]): the preprocessed calibration batches.
        source (str): a phrase naming where they come from.
        test_loader (DataLoader): the config's test dataloader.
    """
    cfg: object
    fused: torch.nn.Module
    batches: list
    source: str
    test_loader: object


@dataclasses.dataclass
class QuantizedGraphs:
    """What :func:`quantize_model` wrote and how.

    Attributes:
        float_path (str): the float32 graph (the fused model as it is).
        int8_path (str): the INT8 (QDQ) graph.
        plain_path (str | None): the float32 graph with plain heads
            (:func:`~mmrep.deploy.heads.plain_heads`), the one quantized;
            None where the model has none.
        calibration (dict): ``method`` and ``granularity``.
        op_types (list[str]): the operators quantized.
        quantized_nodes (int): how many nodes read quantized weights.
        kept_float (dict): the nodes left float32: ``requested`` and
            ``sensitivity``.
    """
    float_path: str
    int8_path: str
    plain_path: str
    calibration: dict
    op_types: list
    quantized_nodes: int
    kept_float: dict


@dataclasses.dataclass
class QuantizeResult:
    """What a quantization measured; :meth:`as_json` is the JSON
    tools/quantize.py writes, its keys in this order.

    Attributes:
        float32 (dict): the float32 metrics, ``latency_ms`` (the fastest
            form) and ``latency_ms_by_runtime``.
        int8 (dict): the INT8 metrics, ``latency_ms`` (on ``runtime``) and
            ``latency_ms_by_runtime``.
        metric (str): the metric of ``drop`` (:func:`primary_metric`).
        drop (float): float32 minus INT8 on ``metric``.
        speedup (float): the fastest float32 form's latency over INT8's.
        speedup_over (str): that float32 form.
        speedup_same_runtime (float): float32 over INT8 on ``runtime``.
        runtime (str): the INT8 runtime chosen (the fastest trusted one).
        int8_output_error_by_runtime (dict): each INT8 runtime's relative
            output error against float32 onnxruntime.
        latency (dict): how the latencies were taken.
        calibration (dict): batches, source, method and granularity.
        quantized_op_types (list[str]): the operators quantized.
        quantized_nodes (int): how many nodes read quantized weights.
        kept_float (dict): the nodes left float32.
        format (str): ``'QDQ'``.
        int8_graph_heads (str): ``'plain UPerHead'`` or ``'as fused'``.
        ops (dict[str, int]): the INT8 graph's operator counts.
    """
    float32: dict
    int8: dict
    metric: str
    drop: float
    speedup: float
    speedup_over: str
    speedup_same_runtime: float
    runtime: str
    int8_output_error_by_runtime: dict
    latency: dict
    calibration: dict
    quantized_op_types: list
    quantized_nodes: int
    kept_float: dict
    format: str
    int8_graph_heads: str
    ops: dict

    def as_json(self):
        """The result as the JSON object tools/quantize.py writes.

        Returns:
            dict: the fields, in order.
        """
        return dataclasses.asdict(self)


def prepare_quantization(cfg, checkpoint, calib_batches):
    """The first step: fuse the checkpoint and read the calibration batches.

    Args:
        cfg (Config): the (train-time) config, without ``init_cfg``; not
            changed.
        checkpoint (str): a train-time or fused checkpoint of its model.
        calib_batches (int): calibration batches (positive).

    Returns:
        Prepared: the model, the batches and the test dataloader.

    Raises:
        BadArgumentError: no test dataloader or evaluator, or a calibration
            set smaller than ``calib_batches``.
        CheckpointMismatchError: the checkpoint is not the config's model.
        NonFiniteWeightsError: NaN or Inf among its weights.
    """
    from mmengine.runner import Runner
    cfg = with_data_preprocessor(copy.deepcopy(cfg))
    loader_cfg, source = calibration_config(cfg)
    test_loader = build_test_dataloader(cfg)
    fused = load_fused(cfg, checkpoint).fused
    check_finite_state(fused.state_dict(), f'in {checkpoint}',
                       'refusing to quantize it')
    cal_loader = Runner.build_dataloader(loader_cfg, seed=0)
    if len(cal_loader) < calib_batches:
        bs = cal_loader.batch_size
        raise BadArgumentError(
            f'the calibration set ({source}) has {len(cal_loader)} batches '
            f'of {bs} ({len(cal_loader.dataset)} images); --calib-batches '
            f'asks for {calib_batches}')
    batches = preprocessed_batches(cfg, fused, calib_batches,
                                   dataloader=cal_loader)
    return Prepared(cfg, fused, batches, source, test_loader)


def quantize_model(prepared, folder, calib_method='minmax', per_channel=True,
                   keep_float=(), auto_keep_float=0,
                   op_types=DEFAULT_OP_TYPES, int8_plain_heads=True,
                   threads=None, log=print):
    """The second step: export the fused model's dynamic ONNX graph and
    write its INT8 (QDQ) form.

    Args:
        prepared (Prepared): the first step's output.
        folder (str): where the graphs are written.
        calib_method (str): ``'minmax'``, ``'entropy'`` or
            ``'percentile'``. Default: ``'minmax'``.
        per_channel (bool): per-output-channel weight scales. Default: True.
        keep_float (list[str]): patterns of nodes kept float32
            (:func:`~mmrep.deploy.quantize.match_nodes`).
        auto_keep_float (int): also keep this many nodes float32, the ones
            INT8 hurts most (:func:`~mmrep.deploy.quantize.sensitive_nodes`).
            Default: 0.
        op_types (tuple[str]): the operators quantized.
        int8_plain_heads (bool): quantize the graph with plain heads
            (:func:`~mmrep.deploy.heads.plain_heads`). Default: True.
        threads (int, optional): threads of the sensitivity pass's sessions.
        log (callable): progress messages. Default: ``print``.

    Returns:
        QuantizedGraphs: the graphs and what was quantized.

    Raises:
        BadArgumentError: ``keep_float`` patterns that match no node.
    """
    fused, calib = prepared.fused, prepared.batches
    float_path = osp.join(folder, 'float32.onnx')
    int8_path = osp.join(folder, 'int8.onnx')
    example = torch.from_numpy(calib[0][:1])
    export(fused, example, float_path, dynamic=True)
    # The float graph that is quantized: with plain heads, if any.
    graph, plain_path = float_path, None
    plain = copy.deepcopy(fused) if int8_plain_heads else None
    if plain is not None and plain_heads(plain):
        plain_path = graph = osp.join(folder, 'float32_plain_heads.onnx')
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
                                  keep_float=keep, threads=threads, **kwargs)
    granularity = 'per-channel' if per_channel else 'per-tensor'
    log(f'[quantize] calibrating on {len(calib)} batches ({prepared.source}, '
        f'{calib_method}, {granularity})')
    info = quantize_onnx(graph, int8_path, calib, keep_float=keep + auto,
                         **kwargs)
    return QuantizedGraphs(
        float_path, int8_path, plain_path,
        dict(method=calib_method, granularity=granularity), list(op_types),
        info['quantized'], dict(requested=keep, sensitivity=auto))


def measure_quantized(prepared, graphs, threads, runtimes=None,
                      latency_shape=None, latency_runs=5, eval_batches=None,
                      log=print):
    """The third step: time the float32 and INT8 forms, choose the INT8
    runtime and evaluate both graphs with the config's evaluator.

    Args:
        prepared (Prepared): the first step's output.
        graphs (QuantizedGraphs): the second step's output.
        threads (int): threads of every form (torch's for the eager one,
            restored afterwards).
        runtimes (list[str], optional): ONNX runtimes timed (default:
            onnxruntime, and OpenVINO when it is installed); the fastest
            INT8 one whose outputs stay near the others' is chosen and
            evaluates the INT8 graph.
        latency_shape (tuple[int, int], optional): ``(H, W)`` of the timed
            batch-1 input (default: the first calibration batch's size).
        latency_runs (int): timed rounds. Default: 5.
        eval_batches (int, optional): evaluate the first batches only.
        log (callable): progress messages. Default: ``print``.

    Returns:
        QuantizeResult: the metrics, latencies and settings.
    """
    cfg, calib = prepared.cfg, prepared.batches
    runtimes = list(runtimes or (['onnxruntime'] + (
        ['openvino'] if has_openvino() else [])))
    shape = tuple(latency_shape or calib[0].shape[2:])
    x = np.random.default_rng(0).standard_normal(
        (1, 3, *shape)).astype(np.float32)
    load = os.getloadavg()
    floats, ints = latency_forms(prepared.fused, graphs.float_path,
                                 graphs.int8_path, threads, runtimes,
                                 graphs.plain_path, log)
    with torch_threads(threads):
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

    def metrics_of(rt, path):
        predictor = OnnxPredictor(cfg, runtime_session(rt, path, threads))
        return evaluate(cfg, predictor.test_step, prepared.test_loader,
                        eval_batches)
    float_metrics = metrics_of('onnxruntime', graphs.float_path)
    int8_metrics = metrics_of(runtime, graphs.int8_path)
    metric = primary_metric(float_metrics)
    return QuantizeResult(
        float32={**_plain(float_metrics),
                 'latency_ms': round(min(float_ms.values()), 2),
                 'latency_ms_by_runtime': _round(float_ms)},
        int8={**_plain(int8_metrics),
              'latency_ms': round(int8_ms[runtime], 2),
              'latency_ms_by_runtime': _round(int8_ms)},
        metric=metric,
        drop=round(float(float_metrics[metric]) -
                   float(int8_metrics[metric]), 4),
        speedup=round(float_ms[fastest_float] / int8_ms[runtime], 3),
        speedup_over=fastest_float,
        speedup_same_runtime=round(float_ms[runtime] / int8_ms[runtime], 3),
        runtime=runtime,
        int8_output_error_by_runtime={k: round(v, 5)
                                      for k, v in errors.items()},
        latency=dict(shape=[1, 3, *shape], threads=threads,
                     runs=latency_runs, statistic='median',
                     load_average_before_after=load),
        calibration=dict(batches=len(calib), source=prepared.source,
                         **graphs.calibration),
        quantized_op_types=graphs.op_types,
        quantized_nodes=graphs.quantized_nodes,
        kept_float=graphs.kept_float,
        format='QDQ',
        int8_graph_heads='plain UPerHead' if graphs.plain_path else
        'as fused',
        ops=op_counts(graphs.int8_path))


def quantize_config(cfg, checkpoint, out, calib_batches=8,
                    calib_method='minmax', per_channel=True, keep_float=(),
                    auto_keep_float=0, op_types=DEFAULT_OP_TYPES,
                    threads=None, latency_shape=None, latency_runs=5,
                    runtimes=None, out_metrics=None, out_float=None,
                    eval_batches=None, int8_plain_heads=True, log=print):
    """Quantize a config's model to INT8 and measure what it costs:
    :func:`prepare_quantization`, :func:`quantize_model` and
    :func:`measure_quantized` in turn, with ``threads`` torch threads
    (restored afterwards).

    The outputs are checked first
    (:func:`~mmrep.apis.refusals.check_writable`); everything is computed
    in a temporary folder; ``out``, ``out_metrics`` (and ``out_float``) are
    written at the end only.

    Args:
        cfg (Config): the (train-time) config, without ``init_cfg``.
        checkpoint (str): a train-time or fused checkpoint of its model.
        out (str): the INT8 .onnx file (QDQ).
        calib_batches (int): calibration batches. Default: 8.
        calib_method, per_channel, keep_float, auto_keep_float, op_types,
            int8_plain_heads: as :func:`quantize_model`. The float32 forms
            are timed with both heads and ``speedup`` is taken against the
            fastest.
        threads (int, optional): threads of every runtime and of torch
            (default: torch's).
        latency_shape, latency_runs, runtimes, eval_batches: as
            :func:`measure_quantized`.
        out_metrics (str, optional): the JSON (default: ``out`` with
            ``.json``), written by
            :func:`~mmrep.apis.test_outputs.write_metrics`.
        out_float (str, optional): also keep the float32 .onnx here.
        log (callable): progress messages. Default: ``print``.

    Returns:
        dict: what the JSON holds (:meth:`QuantizeResult.as_json`).

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
    with torch_threads(threads), tempfile.TemporaryDirectory() as tmp:
        prepared = prepare_quantization(cfg, checkpoint, calib_batches)
        graphs = quantize_model(
            prepared, tmp, calib_method=calib_method, per_channel=per_channel,
            keep_float=keep_float, auto_keep_float=auto_keep_float,
            op_types=op_types, int8_plain_heads=int8_plain_heads,
            threads=threads, log=log)
        result = measure_quantized(
            prepared, graphs, threads, runtimes=runtimes,
            latency_shape=latency_shape, latency_runs=latency_runs,
            eval_batches=eval_batches, log=log).as_json()
        for path, source in ((out, graphs.int8_path),
                             (out_float, graphs.float_path)):
            if path:
                os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
                atomic_write(path, lambda t, s=source: shutil.copyfile(s, t))
    write_metrics(out_metrics, result)
    return result


def _plain(metrics):
    """Metric values as JSON numbers (or strings), numbers rounded."""
    return {k: round(v, 4) if isinstance(v, float) else v
            for k, v in metrics_as_json(metrics).items()}


def _round(times):
    return {k: round(v, 2) for k, v in times.items()}
