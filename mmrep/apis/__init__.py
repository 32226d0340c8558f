"""What the command-line tools share: reading configs, building models and
runners, and loading a checkpoint in the form (train-time or fused) of the
config's model that it fits."""
from .config import (REFUSED, build_config, build_model, load_config,
                     read_config)
from .forms import fitting_form, load_fused
from .runner import build_runner, finish_distributed, setup_cpu_distributed

__all__ = ['REFUSED', 'build_config', 'build_model', 'load_config',
           'read_config', 'fitting_form', 'load_fused', 'build_runner',
           'finish_distributed', 'setup_cpu_distributed']
