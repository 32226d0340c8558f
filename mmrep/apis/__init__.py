"""What the command-line tools share: reading configs, building models and
runners, the checks before a run, loading a checkpoint in the form
(train-time or fused) of the config's model that it fits, and the one way
they refuse an input (:func:`refusals_as_errors`)."""
from .complexity import measure_complexity
from .config import (build_config, build_model, enable_visualization,
                     load_config, read_config)
from .forms import FusedModel, check_deploy_config, fitting_form, load_fused
from .onnx_eval import evaluate_onnx, test_onnx
from .preflight import check_amp, preflight_test, preflight_train
from .quantize import quantize_config
from .refusals import (REFUSED, BadArgumentError, ConfigReadError,
                       UnwritableOutputError, check_writable, error_line,
                       note_replacing, refusals_as_errors)
from .resume import choose_resume_checkpoint, resume_candidates
from .runner import build_runner, finish_distributed, setup_cpu_distributed
from .test_outputs import (PREDICTION_FORMATS, add_prediction_dump,
                           config_library, configure_prediction_output,
                           metrics_as_json, use_tta, write_metrics)

__all__ = ['REFUSED', 'build_config', 'build_model', 'load_config',
           'read_config', 'fitting_form', 'load_fused', 'build_runner',
           'finish_distributed', 'setup_cpu_distributed',
           'enable_visualization', 'FusedModel', 'check_deploy_config',
           'preflight_test', 'preflight_train', 'check_amp',
           'BadArgumentError', 'ConfigReadError', 'error_line',
           'note_replacing', 'refusals_as_errors', 'check_writable',
           'UnwritableOutputError',
           'choose_resume_checkpoint', 'resume_candidates',
           'PREDICTION_FORMATS', 'add_prediction_dump', 'config_library',
           'configure_prediction_output', 'use_tta', 'metrics_as_json',
           'write_metrics', 'measure_complexity',
           'evaluate_onnx', 'test_onnx', 'quantize_config']
