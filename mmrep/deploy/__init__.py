from .config import make_deploy_config
from .export import (adaptive_avg_pool2d_by_matrices, onnx_pooling,
                     tensor_outputs)
from .hook import ReparamCheckpointHook, deploy_path
from .walker import (NonFiniteWeightsError, is_fused_state,
                     reparameterize_model)
from .resample import (adapt_resolution, infer_grid_size, resample_fc1_fc2,
                       resample_fc3_weight, resample_grid,
                       resample_pixel_vector, resize_matrix)

__all__ = ['reparameterize_model', 'NonFiniteWeightsError', 'is_fused_state',
           'make_deploy_config', 'ReparamCheckpointHook', 'deploy_path',
           'tensor_outputs', 'onnx_pooling',
           'adaptive_avg_pool2d_by_matrices']
__all__ += ['adapt_resolution', 'infer_grid_size', 'resample_fc1_fc2',
            'resample_fc3_weight', 'resample_grid', 'resample_pixel_vector',
            'resize_matrix']
