from .config import make_deploy_config
from .hook import ReparamCheckpointHook, deploy_path
from .walker import is_fused_state, reparameterize_model

__all__ = ['reparameterize_model', 'is_fused_state', 'make_deploy_config',
           'ReparamCheckpointHook', 'deploy_path']
