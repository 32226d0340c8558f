"""mmdeploy 1.3.1 with mmrep models on current torch: an opt-in shim.

mmdeploy 1.3.1, its last release, predates torch 2.9 and mmrep:

* torch >= 2.9 exports through ``torch.export`` (``dynamo=True``, which needs
  onnxscript and bypasses mmdeploy's rewriters) unless ``dynamo=False`` is
  passed, and mmdeploy passes nothing;
* its ``build_pytorch_model`` loads the checkpoint with mmengine's
  ``load_checkpoint`` (a training run's ``iter_N.pth`` is refused by
  torch's weights-only default, a fused file loads non-strictly into the
  train-time model) and fuses only what ``model.backbone.switch_to_deploy()``
  fuses;
* it rewrites ``F.adaptive_avg_pool2d`` as ``avg_pool2d`` with the kernel
  ``floor(input / output)``, which differs from the adaptive pooling where
  the bins do not divide the map (mmseg's PSP and UPerHead pyramid pooling).

:func:`apply` changes three things, each only inside mmdeploy's own calls:

1. inside mmdeploy's rewriting context (its export), ``torch.onnx.export``
   defaults to ``dynamo=False`` (an explicit ``dynamo=...`` is kept);
2. ``BaseTask.build_pytorch_model`` given a checkpoint loads it with
   :func:`~mmrep.apis.load_fused`: read by mmrep's safe loader, either
   form (the training checkpoint or a fused file) told apart strictly, and
   the whole model fused (:func:`~mmrep.deploy.reparameterize_model`:
   backbone, the conv + BN pairs of necks and heads, UPerHead's deploy
   form; also for models without mmrep modules); a call without a
   checkpoint goes to mmdeploy as before;
3. for the onnxruntime and OpenVINO backends, ``F.adaptive_avg_pool2d``
   is rewritten as products with pooling matrices
   (:func:`~mmrep.deploy.adaptive_avg_pool2d_by_matrices`), equal to
   PyTorch's pooling at any input size.

It is opt-in: ``import mmrep`` never imports this module. A deploy config
opts in by listing it in ``custom_imports`` (mmdeploy reads its configs
with mmengine, which imports them), as the configs in ``configs/mmdeploy/``
do; importing the module applies the shim, once per process::

    custom_imports = dict(imports=['mmrep', 'mmrep.apis.mmdeploy_compat'],
                          allow_failed_imports=False)
"""
import copy
import functools

from mmengine.logging import print_log

from ..deploy import adaptive_avg_pool2d_by_matrices
from ..utils.errors import MmrepError
from .forms import load_fused

#: The mmdeploy releases the shim is written for and tested with.
SUPPORTED = ('1.3.1', )

#: Backends whose adaptive pooling the shim makes exact.
EXACT_POOLING_BACKENDS = ('onnxruntime', 'openvino')

_APPLIED = '_mmrep_compat'


class MmdeployCompatError(MmrepError, RuntimeError):
    """mmdeploy is missing, or a release the shim does not support."""


def mmdeploy_version():
    """The installed mmdeploy's version.

    Returns:
        str: e.g. ``'1.3.1'``.

    Raises:
        MmdeployCompatError: mmdeploy does not import.
    """
    try:
        import mmdeploy
    except ImportError as e:
        raise MmdeployCompatError(
            f'mmdeploy does not import ({e}); install it without its pins: '
            f'pip install --no-deps -r requirements/mmdeploy.txt') from None
    return mmdeploy.__version__


def build_with_mmrep(build):
    """``BaseTask.build_pytorch_model`` loading through mmrep (see the
    module docstring, item 2)."""

    @functools.wraps(build)
    def wrapped(self, model_checkpoint=None, cfg_options=None, **kwargs):
        cfg = copy.deepcopy(self.model_cfg)
        if model_checkpoint is None:
            return build(self, model_checkpoint, cfg_options, **kwargs)
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
        for key in ('init_cfg', 'pretrained'):
            cfg.model.pop(key, None)
        # mmdeploy's own merge of a top-level preprocessor config.
        preprocess = copy.deepcopy(cfg.get('preprocess_cfg', {}))
        preprocess.update(copy.deepcopy(cfg.get('data_preprocessor', {})))
        cfg.model.setdefault('data_preprocessor', preprocess)
        loaded = load_fused(cfg, model_checkpoint)
        print_log(f'mmrep: {model_checkpoint} holds the '
                  f'{"fused" if loaded.form == "deploy" else "train-time"} '
                  f'form; exporting the whole model fused', logger='current')
        return loaded.fused.to(self.device).eval()
    return wrapped


def torchscript_onnx_export(*args, **kwargs):
    """mmdeploy rewriter of ``torch.onnx.export``: ``dynamo=False`` unless
    the caller chose (mmdeploy's rewriters act on the TorchScript trace)."""
    from mmdeploy.core import FUNCTION_REWRITER
    kwargs.setdefault('dynamo', False)
    return FUNCTION_REWRITER.get_context().origin_func(*args, **kwargs)


def exact_adaptive_avg_pool2d(input, output_size):
    """mmdeploy rewriter of ``F.adaptive_avg_pool2d``: PyTorch's pooling at
    any size (:func:`~mmrep.deploy.adaptive_avg_pool2d_by_matrices`)."""
    return adaptive_avg_pool2d_by_matrices(input, output_size)


def apply():
    """Apply the shim to the imported mmdeploy (once; later calls do
    nothing).

    Raises:
        MmdeployCompatError: mmdeploy does not import, or its release is not
            in :data:`SUPPORTED`.
    """
    version = mmdeploy_version()
    if version not in SUPPORTED:
        raise MmdeployCompatError(
            f'mmrep.apis.mmdeploy_compat supports mmdeploy '
            f'{", ".join(SUPPORTED)}, not {version}')
    from mmdeploy.codebase.base.task import BaseTask
    from mmdeploy.core import FUNCTION_REWRITER
    if getattr(BaseTask.build_pytorch_model, _APPLIED, False):
        return
    BaseTask.build_pytorch_model = build_with_mmrep(
        BaseTask.build_pytorch_model)
    setattr(BaseTask.build_pytorch_model, _APPLIED, True)
    # mmdeploy's rewriters are active only inside its RewriterContext,
    # which brackets its torch.onnx.export call.
    FUNCTION_REWRITER.register_rewriter(
        func_name='torch.onnx.export')(torchscript_onnx_export)
    for backend in EXACT_POOLING_BACKENDS:
        FUNCTION_REWRITER.register_rewriter(
            func_name='torch.nn.functional.adaptive_avg_pool2d',
            backend=backend)(exact_adaptive_avg_pool2d)
    print_log(f'mmrep: mmdeploy {version} shim applied (dynamo=False, '
              f'mmrep loading and fusion, exact adaptive pooling)',
              logger='current')


apply()
