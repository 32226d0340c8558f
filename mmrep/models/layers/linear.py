"""Dense products for inference on the CPU, through oneDNN.

PyTorch sends a float32 ``F.linear`` or ``bmm`` on the CPU to MKL's sgemm.
On the AMD EPYC (Zen 5) machines this project is measured on, that runs a
2048x2048 product at about 190 GFLOP/s on 2 cores, where oneDNN's float32
inner product (PyTorch's ``mkldnn`` backend, which its CPU convolutions
already use) reaches about 430 GFLOP/s; see ``benchmarks/README.md``.

:func:`linear` and :func:`grouped_linear` use oneDNN where nothing can tell
the difference but the clock: a CPU float32 product that needs no gradient,
is not being traced, scripted, compiled or exported, and is big enough to
pay for the call. Everywhere else (training, GPUs, other dtypes, ONNX
export, ``torch.backends.mkldnn.flags(enabled=False)``) they are plain
``F.linear`` / ``torch.baddbmm``. Both paths compute in float32 and agree
to float32 rounding. The oneDNN entry point is the operator that
``torch.compile`` uses for CPU linear layers
(``torch.ops.mkldnn._linear_pointwise``); a PyTorch build without it takes
the plain path.
"""
import torch
import torch.nn.functional as F

from .tracing import exporting

_onednn_linear = getattr(torch.ops.mkldnn, '_linear_pointwise', None)

#: Products smaller than this many multiply-adds stay on ``F.linear``:
#: below it oneDNN's per-call overhead outweighs its faster kernels.
MIN_ONEDNN_MACS = 1 << 20

#: :func:`grouped_linear` runs its groups through oneDNN one by one only
#: when each has this many multiply-adds; smaller groups run faster as one
#: ``torch.baddbmm`` than as that many calls on copied inputs.
MIN_ONEDNN_GROUP_MACS = 1 << 24

_ACTIVATIONS = {None: None, 'relu': F.relu, 'gelu': F.gelu,
                'gelu_tanh': lambda y: F.gelu(y, approximate='tanh')}
#: oneDNN's name of each activation and of its algorithm.
_ONEDNN_ACTS = {None: ('none', ''), 'relu': ('relu', ''),
                'gelu': ('gelu', 'none'), 'gelu_tanh': ('gelu', 'tanh')}


def onednn_usable(x, weight):
    """Whether :func:`linear` may run ``x`` and ``weight`` through oneDNN.

    Args:
        x (Tensor): the input.
        weight (Tensor): the weight.

    Returns:
        bool: True for a CPU float32 product without autograd, outside
        tracing, scripting, compilation and export, with PyTorch's oneDNN
        backend available and enabled.
    """
    return (_onednn_linear is not None
            and x.device.type == 'cpu' and weight.device.type == 'cpu'
            and x.dtype == torch.float32 and weight.dtype == torch.float32
            and not (torch.is_grad_enabled()
                     and (x.requires_grad or weight.requires_grad))
            and torch.backends.mkldnn.enabled
            and torch.backends.mkldnn.is_available()
            and not exporting() and not torch.jit.is_scripting()
            and not torch.onnx.is_in_onnx_export()
            and not torch.compiler.is_compiling())


def linear(x, weight, bias=None, act=None):
    """``act(x @ weight.T + bias)``, on oneDNN when :func:`onednn_usable`.

    Args:
        x (Tensor): ``(..., K)`` input.
        weight (Tensor): ``(O, K)`` weight.
        bias (Tensor, optional): ``(O,)`` bias.
        act (str, optional): ``'relu'``, ``'gelu'`` (exact, erf form) or
            ``'gelu_tanh'`` (tanh approximation), applied in the same pass
            on oneDNN.

    Returns:
        Tensor: ``(..., O)`` output.
    """
    if act not in _ACTIVATIONS:
        raise ValueError(f'act must be one of {list(_ACTIVATIONS)}, '
                         f'got {act!r}')
    if (onednn_usable(x, weight)
            and x.numel() * weight.size(0) >= MIN_ONEDNN_MACS):
        name, algorithm = _ONEDNN_ACTS[act]
        return _onednn_linear(x, weight, bias, name, [], algorithm)
    y = F.linear(x, weight, bias)
    return y if act is None else _ACTIVATIONS[act](y)


def grouped_linear(x, weight, bias=None):
    """``S`` independent products: ``out[s] = x[s] @ weight[s].T + bias[s]``.

    Args:
        x (Tensor): ``(S, M, K)`` input (any strides).
        weight (Tensor): ``(S, O, K)`` weights.
        bias (Tensor, optional): ``(S, O)`` biases.

    Returns:
        Tensor: ``(S, M, O)`` output; one ``torch.baddbmm`` unless each
        product is big enough for oneDNN (``MIN_ONEDNN_MACS`` for a single
        group, ``MIN_ONEDNN_GROUP_MACS`` each for several), which then runs
        them one by one.
    """
    S, M, K = x.shape
    if onednn_usable(x, weight) and M * K * weight.size(1) >= (
            MIN_ONEDNN_MACS if S == 1 else MIN_ONEDNN_GROUP_MACS):
        outs = [_onednn_linear(x[s], weight[s],
                               None if bias is None else bias[s], 'none',
                               [], '') for s in range(S)]
        return outs[0].unsqueeze(0) if S == 1 else torch.stack(outs)
    if bias is None:
        return torch.bmm(x, weight.transpose(1, 2))
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
