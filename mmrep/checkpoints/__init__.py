"""Checkpoint forms and loading: reading checkpoints (:mod:`.io`, and other
frameworks' files, :mod:`.readers`, registered as ``'framework_file'`` in
:data:`mmrep.registry.CHECKPOINT_LOADERS` for :func:`mmrep.utils.safe_load`),
telling and folding train-time and fused forms (:mod:`.forms`), converting the
sources' keys through the families' declarations (:mod:`.convert`,
:mod:`.ports`; each family's in its own file,
:mod:`mmrep.models.backbones.family`),
resampling resolution-bound weights (each family's reconciliation, with
:mod:`mmrep.models.layers.resample`) and the one loader,
:func:`load_pretrained` (:mod:`.load`), registered as ``'pretrained'`` in
:data:`mmrep.registry.CHECKPOINT_LOADERS` for ``init_cfg=Pretrained``."""
from ..utils.serialization import CheckpointMismatchError
from ..models.backbones.family import (CHECKPOINT_FAMILIES, family_of,
                                       get_family, split_classifier)
from .convert import (adapt_state_dict, convert_state_dict,
                      release_fused_form)
from .forms import (FORM_NAMES, checkpoint_form, classify,
                    describe_mismatch, fold_bn_pairs, is_fused_state,
                    same_layout, train_only_markers)
from .io import read_state_dict, split_model_state
# (registers the reader of other frameworks' files behind safe_load)
from . import readers  # noqa: F401
from .load import (backbone_form, convert_weights, fill_unused,
                   fits_backbone, load_converted, load_pretrained,
                   load_state_strict, match_form, report_loading)

__all__ = [
    'CheckpointMismatchError', 'read_state_dict', 'split_model_state',
    'same_layout', 'classify', 'describe_mismatch', 'is_fused_state',
    'checkpoint_form', 'FORM_NAMES', 'fold_bn_pairs', 'train_only_markers',
    'CHECKPOINT_FAMILIES', 'family_of', 'get_family', 'split_classifier',
    'convert_state_dict', 'adapt_state_dict', 'release_fused_form',
    'fill_unused', 'match_form', 'backbone_form', 'report_loading',
    'convert_weights', 'load_converted', 'load_pretrained',
    'load_state_strict', 'fits_backbone'
]
