from .config import make_deploy_config
from .export import (adaptive_avg_pool2d_by_matrices, onnx_pooling,
                     tensor_outputs)
from .fused_loading import switch_to_fused_form
from .hook import ReparamCheckpointHook, deploy_path
from .quantize import quantize_onnx, weight_ranges
from .walker import NonFiniteWeightsError, reparameterize_model

__all__ = ['reparameterize_model', 'NonFiniteWeightsError',
           'make_deploy_config', 'ReparamCheckpointHook', 'deploy_path',
           'tensor_outputs', 'onnx_pooling',
           'adaptive_avg_pool2d_by_matrices', 'switch_to_fused_form',
           'quantize_onnx', 'weight_ranges']
