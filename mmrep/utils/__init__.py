from .serialization import SAFE_GLOBALS, allow_checkpoint_globals, safe_load

__all__ = ['SAFE_GLOBALS', 'allow_checkpoint_globals', 'safe_load']
