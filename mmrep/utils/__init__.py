from .config_check import (MissingCustomImportsError, ModelConfigError,
                           check_custom_imports, check_model_config)
from .errors import MmrepError, ModelArgumentError
from .fileio import atomic_save, atomic_write
from .serialization import (CheckpointLoadError, CheckpointMismatchError,
                            UnsafeCheckpointError, checkpoint_globals,
                            enforce_weights_only, safe_load)

__all__ = ['MmrepError', 'ModelArgumentError',
           'checkpoint_globals', 'safe_load',
           'CheckpointLoadError', 'CheckpointMismatchError',
           'enforce_weights_only',
           'check_custom_imports', 'MissingCustomImportsError',
           'UnsafeCheckpointError', 'atomic_write', 'atomic_save',
           'ModelConfigError', 'check_model_config']
