from ..registry import HOOKS
from .config import deploy_path, make_deploy_config
from .export import (adaptive_avg_pool2d_by_matrices, onnx_pooling,
                     tensor_outputs)
from .fused_loading import switch_to_fused_form
from .quantize import quantize_onnx, weight_ranges
from .walker import NonFiniteWeightsError, reparameterize_model

__all__ = ['reparameterize_model', 'NonFiniteWeightsError',
           'make_deploy_config', 'ReparamCheckpointHook', 'deploy_path',
           'tensor_outputs', 'onnx_pooling',
           'adaptive_avg_pool2d_by_matrices', 'switch_to_fused_form',
           'quantize_onnx', 'weight_ranges']


def __getattr__(name):
    """``ReparamCheckpointHook`` (:mod:`.hook`), imported on first access.

    The hook needs mmengine's hooks (and with them OpenCV), which only
    training needs, so ``import mmrep`` leaves it out; mmrep's ``HOOKS``
    registry imports :mod:`.hook` on its first lookup (a config's
    ``custom_hooks=[dict(type='mmrep.ReparamCheckpointHook')]``, or this).
    """
    if name == 'ReparamCheckpointHook':
        return HOOKS.get(name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
