"""Parameters, FLOPs, activations and CPU latency of any config's model,
train-time and fused (tools/analyze_complexity.py)."""
import statistics
import time
import warnings

import torch
from mmengine.analysis import ActivationAnalyzer, FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import bmm_flop_jit
from mmengine.model import revert_sync_batchnorm

from ..deploy import reparameterize_model, tensor_outputs
from ..utils.config_check import build_model_state
from .config import build_model
from .forms import load_fused
from .refusals import BadArgumentError

#: The forms :func:`measure_complexity` measures: the model as configured
#: and its fused form (:func:`mmrep.reparameterize_model`).
FORMS = ('train', 'deploy')


class TensorForward(torch.nn.Module):
    """A model's tensor forward on preprocessed images, as a module that
    mmengine's analyzers can trace (:func:`mmrep.deploy.tensor_outputs`:
    ``mode='tensor'``, or a two-stage detector's features and RPN outputs).

    Args:
        model (nn.Module): an OpenMMLab model.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        """Args: x (Tensor): images ``(N, 3, H, W)``. Returns: tuple of
        tensors."""
        return tuple(tensor_outputs(self.model, x))


def _baddbmm_flops(inputs, outputs):
    """``aten::baddbmm`` (bias + batched product; the fused RepMLP block's
    partition FC, traced) counted as its ``bmm``, which mmengine's
    analyzer counts and ``baddbmm`` it skips."""
    return bmm_flop_jit(inputs[1:3], outputs)


def count_flops(model, x):
    """FLOPs and activations of one forward, counted as mmengine's
    ``get_model_complexity_info`` counts them (its ``FlopAnalyzer`` and
    ``ActivationAnalyzer``: one multiply-add is one FLOP), with
    ``aten::baddbmm`` counted as the batched product it computes.

    Args:
        model (nn.Module): the model, in eval mode.
        x (Tensor): its input ``(N, 3, H, W)``.

    Returns:
        tuple[int, int, dict[str, int]]: FLOPs, activations, and the
        operators the analyzer does not count, with how often each ran.
    """
    traced = TensorForward(model).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter('ignore')  # tracer warnings
        flops = FlopAnalyzer(traced, (x, ))
        flops.set_op_handle('aten::baddbmm', _baddbmm_flops)
        flops.unsupported_ops_warnings(False)
        flops.uncalled_modules_warnings(False)
        total = int(flops.total())
        skipped = dict(flops.unsupported_ops())
        activations = ActivationAnalyzer(traced, (x, ))
        activations.unsupported_ops_warnings(False)
        activations.uncalled_modules_warnings(False)
        return total, int(activations.total()), skipped


def latency_ms(model, x, iters):
    """Median time of one forward on the CPU, after one warm-up pass.

    Args:
        model (nn.Module): the model, in eval mode.
        x (Tensor): its input.
        iters (int): timed passes.

    Returns:
        float: milliseconds.
    """
    traced = TensorForward(model).eval()
    times = []
    with torch.no_grad():
        traced(x)
        for _ in range(iters):
            start = time.perf_counter()
            traced(x)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def build_forms(cfg, config_path, forms, checkpoint=None):
    """The models to measure.

    Args:
        cfg (Config): the config, its model without ``init_cfg``
            (:func:`~mmrep.apis.load_config`).
        config_path (str): the config file, named in messages.
        forms (Sequence[str]): among :data:`FORMS`.
        checkpoint (str, optional): weights to load (train-time or fused;
            :func:`~mmrep.apis.load_fused`). Default: the weights the
            model is built with (seeded), which do not change the counts.

    Returns:
        dict[str, nn.Module]: the models by form, in eval mode.

    Raises:
        ModelConfigError: the model does not build.
        BadArgumentError: an unknown form, or the train-time form asked of
            a checkpoint that holds fused weights.
        FileNotFoundError, CheckpointLoadError, CheckpointMismatchError,
        NonFiniteWeightsError: the checkpoint's refusals.
    """
    unknown = [f for f in forms if f not in FORMS]
    if unknown or not forms:
        raise BadArgumentError(f'forms must be among {FORMS}, got '
                               f'{list(forms)}')
    build_model_state(cfg, config_path)  # refuses a model that does not build
    if checkpoint:
        loaded = load_fused(cfg, checkpoint, keep_unfused='train' in forms)
        if loaded.form == 'deploy' and 'train' in forms:
            raise BadArgumentError(
                f'{checkpoint} holds fused (deploy) weights: only the fused '
                f'form can be measured with them (--deploy)')
        models = dict(train=loaded.model, deploy=loaded.fused)
    else:
        torch.manual_seed(0)
        model = revert_sync_batchnorm(build_model(cfg))
        models = dict(train=model)
        if 'deploy' in forms:
            models['deploy'] = reparameterize_model(
                model, inplace='train' not in forms).eval()
    return {form: revert_sync_batchnorm(models[form]).eval()
            for form in forms}


def measure_complexity(cfg, config_path, shape, forms=('train', ),
                       checkpoint=None, latency_iters=0):
    """Parameters, FLOPs, activations and latency of a config's model at
    one input size, in each form asked for.

    Args:
        cfg (Config): the config, its model without ``init_cfg``
            (:func:`~mmrep.apis.load_config`).
        config_path (str): the config file, named in messages and in the
            result.
        shape (tuple[int, int]): the input's ``(H, W)`` (batch 1, after
            the data preprocessor).
        forms (Sequence[str]): among :data:`FORMS`. Default: train-time.
        checkpoint (str, optional): weights to load (see
            :func:`build_forms`).
        latency_iters (int): timed forward passes on the CPU; 0 measures
            no latency. Default: 0.

    Returns:
        dict: ``config``, ``checkpoint``, ``input_shape`` (``[1, 3, H,
        W]``), ``latency_iters``, and per form asked for (``'train'``,
        ``'deploy'``) a dict of ``params`` (``sum(p.numel())``), ``flops``,
        ``activations``, ``latency_ms`` (None without latency) and
        ``unsupported_ops`` (operators not counted in ``flops``, with how
        often each ran).

    Raises:
        BadArgumentError: a shape or iteration count below 1 or 0, or what
            :func:`build_forms` refuses.
    """
    if min(shape) < 1:
        raise BadArgumentError(f'--shape must be positive, got {shape}')
    if latency_iters < 0:
        raise BadArgumentError(f'--latency-iters must be at least 0, got '
                               f'{latency_iters}')
    models = build_forms(cfg, config_path, forms, checkpoint)
    x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(0))
    result = dict(config=config_path, checkpoint=checkpoint,
                  input_shape=list(x.shape), latency_iters=latency_iters)
    for form, model in models.items():
        flops, activations, skipped = count_flops(model, x)
        result[form] = dict(
            params=int(parameter_count(model)['']), flops=flops,
            activations=activations,
            latency_ms=latency_ms(model, x, latency_iters)
            if latency_iters else None,
            unsupported_ops=skipped)
    return result


def complexity_table(result):
    """The lines tools/analyze_complexity.py prints.

    Args:
        result (dict): from :func:`measure_complexity`.

    Returns:
        str: a markdown table, one row per form, and a line naming the
        operators not counted.
    """
    n, c, h, w = result['input_shape']
    lines = [f'{result["config"]} at {n}x{c}x{h}x{w}:', '',
             '| form | params (M) | FLOPs (G) | activations (M) | '
             'latency (ms, CPU) |', '|---|---|---|---|---|']
    skipped = {}
    for form in FORMS:
        if form not in result:
            continue
        r = result[form]
        latency = '-' if r['latency_ms'] is None else f'{r["latency_ms"]:.2f}'
        lines.append(f'| {form} | {r["params"] / 1e6:.4f} | '
                     f'{r["flops"] / 1e9:.4f} | '
                     f'{r["activations"] / 1e6:.4f} | {latency} |')
        skipped.update(r['unsupported_ops'])
    if skipped:
        lines.append('')
        lines.append('not counted in FLOPs: ' + ', '.join(sorted(skipped)))
    return '\n'.join(lines)
