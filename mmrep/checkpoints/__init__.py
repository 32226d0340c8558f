"""Checkpoint forms and loading: reading checkpoints (:mod:`.io`), telling
and folding train-time and fused forms (:mod:`.forms`), converting the
original releases' and mmpretrain's keys per family (:mod:`.convert`),
resampling resolution-bound weights (:mod:`.resample`) and the one loader,
:func:`load_pretrained` (:mod:`.load`), registered as ``'pretrained'`` in
:data:`mmrep.registry.CHECKPOINT_LOADERS` for ``init_cfg=Pretrained``."""
from ..utils.serialization import CheckpointMismatchError
from .convert import (adapt_state_dict, convert_state_dict, family_of,
                      reconcile_output_norms, release_fused_form,
                      split_classifier)
from .forms import (FORM_NAMES, checkpoint_form, describe_mismatch,
                    fold_bn_pairs, fold_prebn2, is_fused_state,
                    matching_form, same_layout)
from .io import read_state_dict, split_model_state
from .load import (fill_unused, fits_backbone, load_pretrained,
                   load_state_strict, match_form, report_loading)
from .resample import adapt_resolution

__all__ = [
    'CheckpointMismatchError', 'read_state_dict', 'split_model_state',
    'same_layout', 'matching_form', 'describe_mismatch', 'is_fused_state',
    'checkpoint_form', 'FORM_NAMES', 'fold_bn_pairs', 'fold_prebn2',
    'family_of', 'split_classifier', 'convert_state_dict',
    'reconcile_output_norms', 'adapt_state_dict', 'release_fused_form',
    'adapt_resolution', 'fill_unused', 'match_form', 'report_loading',
    'load_pretrained', 'load_state_strict', 'fits_backbone'
]
