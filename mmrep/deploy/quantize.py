"""INT8 post-training quantization of an exported ONNX graph, and the
weight-range measures that tell whether a fused layer suits INT8.

The quantized file is a QDQ graph (``QuantizeLinear`` / ``DequantizeLinear``
pairs around the quantized operators, the format onnxruntime, OpenVINO and
TensorRT read): activations unsigned 8-bit with a zero point, weights signed
8-bit and symmetric, per output channel by default. By default only the
operators that carry the work (``Conv``, ``MatMul``, ``Gemm``) are
quantized; everything else stays float32 between a ``DequantizeLinear`` and
the next ``QuantizeLinear``.

onnxruntime is imported inside the functions, so ``import mmrep`` works
without it (``requirements/deploy.txt``); its sessions are
:mod:`mmrep.deploy.runtime`'s.
"""
import contextlib
import fnmatch
import os
import os.path as osp
import tempfile

import numpy as np
import torch
import torch.nn as nn

from ..utils import atomic_write
from .runtime import run_session, session

#: The operators quantized by default: those that carry the multiply-adds.
DEFAULT_OP_TYPES = ('Conv', 'MatMul', 'Gemm')

#: ``--calib-method`` names and onnxruntime's ``CalibrationMethod`` members.
CALIBRATION_METHODS = {'minmax': 'MinMax', 'entropy': 'Entropy',
                       'percentile': 'Percentile'}


def symmetric_int8_error(weight, per_channel=True):
    """Relative error of rounding a weight to symmetric signed INT8.

    Args:
        weight (Tensor): ``(out, ...)``; per channel means per index of the
            first axis (the output channel of a conv or linear weight).
        per_channel (bool): one scale per output channel, else one for the
            whole tensor. Default: True.

    Returns:
        float: the mean over output channels of ``||w_c - q(w_c)|| /
        ||w_c||`` (all-zero channels count 0): a channel far narrower than
        the tensor's peak loses most of its levels under one scale, which
        this mean shows and a whole-tensor norm hides.
    """
    w = weight.detach().float().reshape(weight.shape[0], -1)
    if per_channel:
        peak = w.abs().amax(dim=1, keepdim=True)
    else:
        peak = w.abs().amax().expand(w.shape[0], 1)
    scale = torch.where(peak > 0, peak / 127, torch.ones_like(peak))
    q = torch.clamp(torch.round(w / scale), -127, 127) * scale
    norm = w.norm(dim=1)
    err = (w - q).norm(dim=1) / torch.where(norm > 0, norm,
                                            torch.ones_like(norm))
    return float(err.mean())


def weight_ranges(model, kinds=(nn.Conv2d, nn.Linear)):
    """Per-layer ranges and INT8 rounding errors of a model's weights.

    For every convolution and linear layer: the spread of its per-output-
    channel ranges (largest channel peak over the median channel peak: a
    per-tensor scale gives the median channel ``127 / spread`` levels) and
    the relative error of symmetric INT8 rounding with one scale per tensor
    and one per output channel (:func:`symmetric_int8_error`).

    Args:
        model (nn.Module): any model (a fused one to judge the deployed
            weights).
        kinds (tuple[type]): the layer types measured.

    Returns:
        list[dict]: one per layer, in module order: ``name``, ``shape``,
        ``peak`` (largest |w|), ``spread``, ``error_per_tensor``,
        ``error_per_channel``.
    """
    rows = []
    for name, module in model.named_modules():
        weight = getattr(module, 'weight', None)
        if not isinstance(module, kinds) or weight is None:
            continue
        peaks = weight.detach().float().reshape(weight.shape[0], -1) \
            .abs().amax(dim=1)
        median = float(peaks.median())
        rows.append(dict(
            name=name, shape=tuple(weight.shape), peak=float(peaks.max()),
            spread=float(peaks.max()) / median if median > 0 else
            float('inf'),
            error_per_tensor=symmetric_int8_error(weight, False),
            error_per_channel=symmetric_int8_error(weight, True)))
    return rows


def calibration_reader(inputs, name='input'):
    """An onnxruntime ``CalibrationDataReader`` over preprocessed batches.

    Args:
        inputs (list[np.ndarray | Tensor]): the batches ``(N, 3, H, W)``.
        name (str): the graph's input name. Default: ``'input'``.

    Returns:
        CalibrationDataReader: yields ``{name: batch}`` once per batch.
    """
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):

        def __init__(self):
            self._batches = iter([
                {name: np.ascontiguousarray(np.asarray(x, np.float32))}
                for x in inputs])

        def get_next(self):
            return next(self._batches, None)

        def rewind(self):
            self.__init__()

    return Reader()


def graph_nodes(path_or_model):
    """The nodes of an ONNX graph.

    Args:
        path_or_model (str | onnx.ModelProto): the file or the loaded model.

    Returns:
        list[onnx.NodeProto]: its nodes, in graph order.
    """
    import onnx
    model = onnx.load(path_or_model) if isinstance(path_or_model, str) \
        else path_or_model
    return list(model.graph.node)


def op_counts(path):
    """How many nodes of each operator an ONNX file holds.

    Args:
        path (str): the .onnx file.

    Returns:
        dict[str, int]: operator type -> count.
    """
    counts = {}
    for node in graph_nodes(path):
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def weight_of_node(node, initializers):
    """The name of the first initializer a node reads (its weight).

    Args:
        node (onnx.NodeProto): a node.
        initializers (set[str]): the graph's initializer names.

    Returns:
        str: the name, or ``''`` when it reads none.
    """
    return next((i for i in node.input if i in initializers), '')


def match_nodes(path, patterns, op_types=DEFAULT_OP_TYPES):
    """Nodes of ``op_types`` whose name or weight name matches a pattern.

    Names are what the exporter gives: node names follow the module path
    (``/backbone/stages.0/.../Conv``), weight names the parameter
    (``backbone.stages.0.fc3.weight``); patterns are ``fnmatch`` patterns,
    and a pattern without wildcards matches any name containing it.

    Args:
        path (str): the float .onnx file.
        patterns (list[str]): the patterns.
        op_types (tuple[str]): the operators considered.

    Returns:
        list[str]: the matching node names, in graph order.
    """
    import onnx
    model = onnx.load(path)
    inits = {i.name for i in model.graph.initializer}

    def hit(pattern, name):
        if any(c in pattern for c in '*?['):
            return fnmatch.fnmatchcase(name, pattern)
        return pattern in name
    found = []
    for node in model.graph.node:
        if node.op_type not in op_types:
            continue
        names = (node.name, weight_of_node(node, inits))
        if any(hit(p, n) for p in patterns for n in names if n):
            found.append(node.name)
    return found


def quantizable_nodes(path, op_types=DEFAULT_OP_TYPES):
    """The nodes of ``op_types`` that read a weight (an initializer).

    Args:
        path (str): the float .onnx file.
        op_types (tuple[str]): the operators considered.

    Returns:
        list[str]: their names, in graph order.
    """
    import onnx
    model = onnx.load(path)
    inits = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node
            if n.op_type in op_types and weight_of_node(n, inits)]


@contextlib.contextmanager
def working_folder(folder):
    """Run the block in ``folder`` (onnxruntime's symbolic shape inference
    leaves temporary files in the working folder)."""
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(cwd)


def preprocess(float_path, out_path):
    """onnxruntime's quantization pre-processing (shape inference and graph
    optimization), with symbolic shape inference skipped when the dynamic
    graph defeats it.

    Args:
        float_path (str): the float .onnx file.
        out_path (str): where the pre-processed graph goes.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process
    float_path, out_path = osp.abspath(float_path), osp.abspath(out_path)
    with tempfile.TemporaryDirectory() as tmp, working_folder(tmp):
        try:
            quant_pre_process(float_path, out_path, skip_symbolic_shape=False)
        except Exception:  # noqa: BLE001  symbolic inference of dynamic shapes
            quant_pre_process(float_path, out_path, skip_symbolic_shape=True)


#: Histogram of the entropy calibration: the bins collected, and the
#: quantized bins whose KL divergence to them chooses each range.
#: onnxruntime's default of 128 collected bins leaves one candidate, the
#: whole range (min/max), and ``quantize_static`` passes no bin count on.
ENTROPY_BINS = dict(num_bins=512, num_quantized_bins=128)


def entropy_ranges(float_path, calib_inputs, op_types, cache_path):
    """Entropy-calibrated activation ranges of a graph, written as an
    onnxruntime calibration cache that ``quantize_static`` reads
    (``calibration_cache_path``).

    Args:
        float_path (str): the (pre-processed) float .onnx file.
        calib_inputs (list[np.ndarray]): preprocessed calibration batches.
        op_types (tuple[str]): the operators whose tensors are calibrated.
        cache_path (str): the cache file written.
    """
    from pathlib import Path

    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import (create_calibrator,
                                                    save_tensors_data)
    calibrator = create_calibrator(
        Path(float_path), list(op_types),
        augmented_model_path=osp.join(osp.dirname(cache_path),
                                      'entropy_augmented.onnx'),
        calibrate_method=CalibrationMethod.Entropy,
        extra_options=dict(symmetric=False, **ENTROPY_BINS))
    calibrator.collect_data(calibration_reader(calib_inputs))
    save_tensors_data(calibrator.compute_data(), cache_path)


def quantize_onnx(float_path, out_path, calib_inputs, method='minmax',
                  per_channel=True, keep_float=(), op_types=DEFAULT_OP_TYPES,
                  pre_process=True, quant_format='QDQ', weighted_only=True):
    """Write the INT8 (QDQ) form of a float ONNX graph, calibrated on
    ``calib_inputs``.

    Args:
        float_path (str): the float .onnx file (dynamic axes are kept).
        out_path (str): the INT8 .onnx file; written atomically.
        calib_inputs (list[np.ndarray]): preprocessed calibration batches.
        method (str): ``'minmax'``, ``'entropy'`` or ``'percentile'``
            (activation ranges). Default: ``'minmax'``.
        per_channel (bool): one weight scale per output channel. Default:
            True.
        keep_float (list[str]): node names left in float32.
        op_types (tuple[str]): the operators quantized. Default:
            :data:`DEFAULT_OP_TYPES`.
        pre_process (bool): run :func:`preprocess` first. Default: True.
        quant_format (str): ``'QDQ'`` or ``'QOperator'``. Default: ``'QDQ'``.
        weighted_only (bool): quantize only the nodes that read a weight
            (:func:`quantizable_nodes`), not products of two activations
            (attention-like products, the pooling matrices of
            :func:`~mmrep.deploy.onnx_pooling`). Default: True.

    Returns:
        dict: ``quantized`` (how many nodes of ``op_types`` read quantized
        weights) and ``kept_float`` (the node names left float).

    Raises:
        ValueError: an unknown ``method``.
    """
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    if method not in CALIBRATION_METHODS:
        raise ValueError(f'unknown calibration method {method!r}; choose '
                         f'from {sorted(CALIBRATION_METHODS)}')
    float_path, out_path = osp.abspath(float_path), osp.abspath(out_path)
    with tempfile.TemporaryDirectory() as tmp, working_folder(tmp):
        source = float_path
        if pre_process:
            source = osp.join(tmp, 'pre.onnx')
            preprocess(float_path, source)
        nodes = [n for n in quantizable_nodes(float_path, op_types)
                 if n not in keep_float] if weighted_only else None
        extra = dict(ActivationSymmetric=False, WeightSymmetric=True,
                     CalibMovingAverage=False)
        if method == 'percentile':
            extra['CalibPercentile'] = 99.999
        cache = None
        if method == 'entropy':
            cache = osp.join(tmp, 'entropy_ranges.json')
            entropy_ranges(source, calib_inputs, op_types, cache)

        def write(target):
            quantize_static(
                source, target, calibration_reader(calib_inputs),
                quant_format=getattr(QuantFormat, quant_format),
                op_types_to_quantize=list(op_types),
                per_channel=per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_quantize=nodes,
                nodes_to_exclude=list(keep_float),
                calibrate_method=getattr(CalibrationMethod,
                                         CALIBRATION_METHODS[method]),
                extra_options=extra,
                calibration_cache_path=cache)
        atomic_write(out_path, write)
    counts = op_counts(out_path)
    return dict(quantized=counts.get('QLinearConv', 0) + counts.get(
        'QLinearMatMul', 0) + _dequantized_weights(out_path),
        kept_float=list(keep_float))


def _dequantized_weights(path):
    """How many ``DequantizeLinear`` nodes read an INT8 initializer (the
    quantized weights of a QDQ graph)."""
    import onnx
    model = onnx.load(path)
    int8 = {i.name for i in model.graph.initializer
            if i.data_type == onnx.TensorProto.INT8}
    return sum(1 for n in model.graph.node
               if n.op_type == 'DequantizeLinear' and n.input[0] in int8)


def relative_errors(reference, candidate):
    """Relative L2 error of each output against its reference.

    Args:
        reference (list[np.ndarray]): the float model's outputs.
        candidate (list[np.ndarray]): the same outputs of another model.

    Returns:
        list[float]: ``||a - b|| / ||a||`` per output (0 where ``a`` is
        all zero).
    """
    errors = []
    for a, b in zip(reference, candidate, strict=True):
        norm = np.linalg.norm(a)
        errors.append(float(np.linalg.norm(a - b) / norm) if norm else 0.)
    return errors


def output_error(reference, candidate, inputs):
    """Mean relative L2 error of one session's outputs against another's.

    Args:
        reference (onnxruntime.InferenceSession): the float model.
        candidate (onnxruntime.InferenceSession): the quantized model.
        inputs (list[np.ndarray]): the batches.

    Returns:
        float: mean over batches and outputs of :func:`relative_errors`.
    """
    return float(np.mean([
        e for x in inputs for e in relative_errors(
            run_session(reference, x), run_session(candidate, x))]))


def sensitive_nodes(float_path, calib_inputs, count, candidates=None,
                    probe_inputs=None, threads=None, **quantize_kwargs):
    """The ``count`` nodes whose INT8 form hurts the outputs most.

    Each candidate is scored by how much keeping it alone in float32
    lowers the quantized model's output error
    (:func:`output_error` on ``probe_inputs``) against the fully quantized
    model; one quantization per candidate.

    Args:
        float_path (str): the float .onnx file.
        calib_inputs (list[np.ndarray]): calibration batches.
        count (int): how many nodes to return.
        candidates (list[str], optional): the nodes scored (default: every
            quantizable node, :func:`quantizable_nodes`).
        probe_inputs (list[np.ndarray], optional): the batches the error is
            measured on (default: the first two calibration batches).
        threads (int, optional): threads of the sessions that measure it
            (default: torch's).
        **quantize_kwargs: passed to :func:`quantize_onnx` (its
            ``keep_float`` is kept float in every trial).

    Returns:
        tuple[list[str], dict[str, float]]: the chosen nodes (those whose
        float form lowered the error, at most ``count``, most helpful
        first) and every candidate's error reduction.
    """
    probe = probe_inputs or calib_inputs[:2]
    base_keep = list(quantize_kwargs.pop('keep_float', ()))
    candidates = [c for c in (candidates or quantizable_nodes(float_path))
                  if c not in base_keep]
    reference = session(float_path, threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, 'q.onnx')

        def error(keep):
            quantize_onnx(float_path, path, calib_inputs, keep_float=keep,
                          **quantize_kwargs)
            return output_error(reference, session(path, threads), probe)
        base = error(base_keep)
        gains = {node: base - error(base_keep + [node])
                 for node in candidates}
    ranked = sorted((n for n in gains if gains[n] > 0), key=lambda n:
                    -gains[n])
    return ranked[:count], gains
