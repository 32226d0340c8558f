"""Checkpoint forms: whether weights fit a model's train-time or fused
(deploy) form, what differs when they do not, and the state-dict folds that
bring the original releases' fused checkpoints to mmrep's fused form (the
conv-BN pairs here; what else a family's release keeps, its
``release_fused``).

Only names and shapes count here: the expected state dicts may live on any
device, ``meta`` included.
"""
from ..models.backbones.family import CHECKPOINT_FAMILIES
from ..models.layers import fuse_bn, pop_bn_state
from ..utils.serialization import CheckpointMismatchError
from ..utils.state_layout import (classify, count_found, describe_mismatch,
                                  same_layout)

__all__ = ['FORM_NAMES', 'train_only_markers', 'same_layout', 'classify',
           'count_found', 'describe_mismatch', 'is_fused_state',
           'checkpoint_form', 'fold_bn_pairs']

#: How :func:`checkpoint_form`'s messages name the forms.
FORM_NAMES = {'config': 'as configured', 'deploy': 'in fused (deploy) form'}


def train_only_markers():
    """Key fragments only train-time (unfused) checkpoints have: every
    registered family's ``train_only_markers``."""
    return tuple(sorted({m for family in CHECKPOINT_FAMILIES.values()
                         for m in family.train_only_markers}))


def is_fused_state(state, train_state):
    """Whether ``state`` looks like the fused form of ``train_state``.

    Args:
        state (dict[str, Tensor]): the checkpoint's weights.
        train_state (dict[str, Tensor]): the train-time model's state dict.

    Returns:
        bool: True when ``state`` lacks train-time-only keys (BNs and conv
        branches) that ``train_state`` has.
    """
    found = train_only_markers()

    def markers(keys):
        return sum(any(m in k for m in found) for k in keys)
    return markers(state) < markers(train_state)


def checkpoint_form(state, forms, meta=None, name='the checkpoint'):
    """Which form of a model a whole-model checkpoint fits exactly.

    Unlike :func:`~mmrep.checkpoints.load_pretrained`, nothing is converted
    or resampled: every key and shape must match, as for evaluating or
    resuming.

    Args:
        state (dict[str, Tensor]): the checkpoint's weights
            (:func:`~mmrep.checkpoints.read_state_dict`).
        forms (dict[str, dict | callable]): ``'config'`` (the model as
            configured) and, when it has mmrep modules, ``'deploy'`` (every
            one fused): the model's state dict in that form (any device,
            ``meta`` included; only names and shapes count), or a function
            returning it, called only when needed.
        meta (dict, optional): the checkpoint's ``meta``; a
            ``deploy_config`` there (written by ``ReparamCheckpointHook`` and
            ``tools/reparam.py``) marks fused weights.
        name (str): how to call the checkpoint in the message (its path).

    Returns:
        str: the key of ``forms`` that ``state`` fits.

    Raises:
        CheckpointMismatchError: ``state`` fits no form. The message names
            the form the checkpoint claims (fused when its ``meta`` says so,
            or when more of its names are those of the fused form) and the
            first mismatching keys and shapes.
    """
    forms = dict(forms)

    def resolved(form):
        if callable(forms[form]):
            forms[form] = forms[form]()
        return forms[form]
    found = classify(state, {f: (lambda f=f: resolved(f)) for f in forms})
    if found is not None:
        return found[0]

    def shared(form):
        return len(state.keys() & resolved(form).keys())
    claims_fused = 'deploy' in forms and (
        'deploy_config' in (meta or {}) or shared('deploy') > shared('config'))
    form = 'deploy' if claims_fused else 'config'
    raise CheckpointMismatchError(
        f'{name} does not fit the model {FORM_NAMES[form]}: '
        + describe_mismatch(state, resolved(form), limit=3))


def fold_bn_pairs(state, expected):
    """Fold ``P.bn.*`` into ``P.conv`` where the model has a biased conv.

    Original fused checkpoints keep conv-BN pairs that mmrep's fused form
    merges; this makes them fit.

    Args:
        state (dict[str, Tensor]): converted backbone weights.
        expected (dict[str, Tensor]): the (fused) backbone's state dict.

    Returns:
        dict[str, Tensor]: a new dict with those pairs folded.
    """
    state = dict(state)
    for key in [k for k in state if k.endswith('.bn.running_var')]:
        prefix = key[:-len('bn.running_var')]
        if (prefix + 'conv.bias' in expected
                and prefix + 'bn.weight' not in expected
                and prefix + 'conv.weight' in state):
            bn = pop_bn_state(state, prefix + 'bn.')
            bias = state.get(prefix + 'conv.bias')
            state[prefix + 'conv.weight'], state[prefix + 'conv.bias'] = \
                fuse_bn(state[prefix + 'conv.weight'], bn, bias)
    return state
