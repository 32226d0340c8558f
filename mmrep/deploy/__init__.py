from .walker import is_fused_state, reparameterize_model

__all__ = ['reparameterize_model', 'is_fused_state']
