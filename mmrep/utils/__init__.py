from .config_check import MissingCustomImportsError, check_custom_imports
from .serialization import (SAFE_GLOBALS, CheckpointLoadError,
                            allow_checkpoint_globals, enforce_weights_only,
                            safe_load)

__all__ = ['SAFE_GLOBALS', 'allow_checkpoint_globals', 'safe_load',
           'CheckpointLoadError', 'enforce_weights_only',
           'check_custom_imports', 'MissingCustomImportsError']
