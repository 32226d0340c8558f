"""Whether a forward runs to be exported, by either of torch's exporters."""
import torch


def exporting():
    """True while torch records the forward for ONNX: the TorchScript
    exporter's trace (``dynamo=False``) or ``torch.export`` (``dynamo=True``).

    The modules then take their size-general, out-of-place paths (pads and
    crops of zero, functional shifts, plain matrix products), so that the
    graph holds the steps for every input size and no shape is specialized.

    Returns:
        bool: whether the forward is being exported.
    """
    return torch.jit.is_tracing() or torch.compiler.is_exporting()
