"""Sessions of the ONNX runtimes, the one place that opens an ONNX file to
run it: export checks, evaluation, quantization and the benchmarks all go
through :func:`session` (onnxruntime) or :func:`runtime_session`
(onnxruntime or OpenVINO).

A session's thread count is an option of that session; nothing here
changes the process's threads but :func:`torch_threads`, a context that
restores them.

onnxruntime and OpenVINO are imported inside the functions, so
``import mmrep`` works without them (``requirements/deploy.txt``).
"""
import contextlib

import numpy as np
import torch

#: The runtimes :func:`runtime_session` builds.
RUNTIMES = ('onnxruntime', 'openvino')


@contextlib.contextmanager
def torch_threads(threads):
    """Run the block with ``threads`` torch threads, then restore the count.

    Args:
        threads (int, optional): the count; None leaves it as it is.
    """
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def session(path, threads=None):
    """An onnxruntime CPU session with a fixed thread count.

    Args:
        path (str): the .onnx file.
        threads (int, optional): intra-op threads (default: torch's).

    Returns:
        onnxruntime.InferenceSession: the session.
    """
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(path, options,
                                providers=['CPUExecutionProvider'])


def run_session(sess, x):
    """Run a session on one batch.

    Args:
        sess (onnxruntime.InferenceSession | OpenVinoSession): the session.
        x (np.ndarray | Tensor): the input batch.

    Returns:
        list[np.ndarray]: the outputs.
    """
    x = np.ascontiguousarray(np.asarray(x, np.float32))
    return sess.run(None, {sess.get_inputs()[0].name: x})


class OpenVinoSession:
    """An OpenVINO CPU model with the part of onnxruntime's session
    interface that :func:`run_session` uses.

    OpenVINO reads the QDQ graph as it is and runs the quantized operators
    in INT8 (its low-precision transformations turn the
    ``QuantizeLinear`` / ``DequantizeLinear`` pairs into INT8 kernels).

    Args:
        path (str): the .onnx file.
        threads (int, optional): inference threads (default: torch's).
    """

    def __init__(self, path, threads=None):
        import openvino as ov
        core = ov.Core()
        self._compiled = core.compile_model(
            core.read_model(path), 'CPU',
            {'INFERENCE_NUM_THREADS': threads or torch.get_num_threads(),
             'PERFORMANCE_HINT': 'LATENCY', 'NUM_STREAMS': 1,
             'INFERENCE_PRECISION_HINT': 'f32'})
        self._request = self._compiled.create_infer_request()
        self._name = self._compiled.inputs[0].get_any_name()

    def get_inputs(self):
        """The graph's inputs (objects with a ``name``)."""
        class Input:
            name = self._name
        return [Input()]

    def run(self, output_names, feed):
        """Run one batch.

        Args:
            output_names: ignored (every output is returned).
            feed (dict[str, np.ndarray]): the input.

        Returns:
            list[np.ndarray]: the outputs, in graph order.
        """
        result = self._request.infer(feed)
        return [np.array(result[out]) for out in self._compiled.outputs]


def has_openvino():
    """Whether OpenVINO's Python package imports (an optional runtime)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def runtime_session(runtime, path, threads=None):
    """A session of ``runtime`` on an ONNX file.

    Args:
        runtime (str): ``'onnxruntime'`` or ``'openvino'``.
        path (str): the .onnx file.
        threads (int, optional): threads (default: torch's).

    Returns:
        object: with ``run`` and ``get_inputs`` as onnxruntime's session.

    Raises:
        ValueError: an unknown ``runtime``.
    """
    if runtime == 'openvino':
        return OpenVinoSession(path, threads)
    if runtime != 'onnxruntime':
        raise ValueError(f'unknown runtime {runtime!r}')
    return session(path, threads)
