"""What the command-line tools share: reading configs, building models and
runners, the checks before a run, loading a checkpoint in the form
(train-time or fused) of the config's model that it fits, and the one way
they refuse an input (:func:`refusals_as_errors`)."""
from .config import (build_config, build_model, enable_visualization,
                     load_config, read_config)
from .forms import FusedModel, check_deploy_config, fitting_form, load_fused
from .preflight import preflight_test, preflight_train
from .refusals import (REFUSED, BadArgumentError, ConfigReadError,
                       error_line, refusals_as_errors)
from .resume import choose_resume_checkpoint, resume_candidates
from .runner import build_runner, finish_distributed, setup_cpu_distributed

__all__ = ['REFUSED', 'build_config', 'build_model', 'load_config',
           'read_config', 'fitting_form', 'load_fused', 'build_runner',
           'finish_distributed', 'setup_cpu_distributed',
           'enable_visualization', 'FusedModel', 'check_deploy_config',
           'preflight_test', 'preflight_train', 'BadArgumentError',
           'ConfigReadError', 'error_line', 'refusals_as_errors',
           'choose_resume_checkpoint', 'resume_candidates']
