"""Where a checkpoint comes from, and the ports' weights in mmrep's names.

Five sources are told apart: the original releases and mmpretrain (by key
names), timm's RepVGG (by key names: ``stem.`` / ``stages.N.M.`` with
``conv_kxk`` ...), MindCV's RepMLPNet and RepVGG (a MindSpore ``.ckpt``) and
Paddle-CycleMLP (a PaddlePaddle ``.pdparams``); the last two by the file's
content (:func:`mmrep.utils.frameworks.framework_of`). The ports' key maps
live in the family files (``from_mindcv_state_dict``,
``from_paddle_state_dict``, ``convert_timm_repvgg``);
:func:`port_state_dict` dispatches to them. ``init_cfg=Pretrained``
(:func:`~mmrep.checkpoints.load.load_pretrained`) and
``tools/convert_checkpoint.py`` both go through here.
"""
import os

import torch

from ..models.backbones import (CycleMLP, RepMLPNet, RepMLPResNet, RepVGG,
                                cyclemlp, repmlpnet, repvgg)
from ..utils.frameworks import framework_of
from ..utils.serialization import CheckpointMismatchError

#: Every source, as ``--source`` names it.
SOURCES = ('original', 'mmpretrain', 'timm', 'mindcv', 'paddle')
#: The ports (their weights need a key map of their own).
PORT_SOURCES = ('timm', 'mindcv', 'paddle')
#: How the loading report and the messages name a source.
SOURCE_LABELS = dict(original='original release', mmpretrain='mmpretrain',
                     timm='timm', mindcv='MindCV', paddle='Paddle-CycleMLP')
#: Family class -> ``--family`` name.
FAMILY_NAMES = {RepMLPNet: 'repmlpnet', RepVGG: 'repvgg',
                RepMLPResNet: 'repmlp-res50', CycleMLP: 'cyclemlp'}
#: (source, family) -> the port's key map: port state dict -> (backbone
#: weights, head weights), mmrep's names.
PORT_CONVERTERS = {
    ('mindcv', 'repmlpnet'): repmlpnet.from_mindcv_state_dict,
    ('mindcv', 'repvgg'): repvgg.from_mindcv_state_dict,
    ('paddle', 'cyclemlp'): cyclemlp.from_paddle_state_dict,
    ('timm', 'repvgg'): None,  # convert_timm_repvgg, see port_state_dict
}
#: (source, family) -> backbone options the port's computation needs
#: (shapes do not tell them; a backbone without them computes otherwise).
PORT_OPTIONS = {
    ('mindcv', 'repmlpnet'): dict(repmlpnet.MINDCV_OPTIONS),
}
#: The file format each framework source must come in.
_FRAMEWORK_SOURCES = {'mindspore': 'mindcv', 'paddle': 'paddle'}
_MMPRETRAIN_PREFIXES = ('patch_embed.projection.', 'downsample_layers.',
                        'final_norm.', 'stem.', 'stage_')


def source_of_names(state):
    """Tell a checkpoint's source by its key names: ``'timm'`` (timm's
    RepVGG names, checked first: they share mmpretrain's ``stem.``
    prefix), ``'mmpretrain'`` or ``'original'``.

    Args:
        state (dict[str, Tensor]): the weights (a ``backbone.`` prefix is
            ignored).

    Returns:
        str
    """
    if repvgg.is_timm_repvgg_state(state):
        return 'timm'
    names = [k[len('backbone.'):] if k.startswith('backbone.') else k
             for k in state]
    if any(k.startswith(_MMPRETRAIN_PREFIXES) for k in names):
        return 'mmpretrain'
    return 'original'


def detect_checkpoint_source(checkpoint, state):
    """The source of a checkpoint: MindCV for a MindSpore file, Paddle for
    a PaddlePaddle file, otherwise by key names (:func:`source_of_names`).

    Args:
        checkpoint (str | os.PathLike | dict): the file (or loaded dict).
        state (dict[str, Tensor]): its weights
            (:func:`~mmrep.checkpoints.io.read_state_dict`).

    Returns:
        str: one of :data:`SOURCES`.
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        framework = framework_of(checkpoint)
        if framework in _FRAMEWORK_SOURCES:
            return _FRAMEWORK_SOURCES[framework]
    return source_of_names(state)


def family_name(family):
    """``--family`` name of a backbone family class (or instance)."""
    cls = family if isinstance(family, type) else type(family)
    for base, name in FAMILY_NAMES.items():
        if issubclass(cls, base):
            return name
    raise TypeError(f'{cls.__name__} is not an mmrep backbone')


def port_families(source):
    """The families a port has weights of."""
    return sorted(f for s, f in PORT_CONVERTERS if s == source)


def port_state_dict(source, family, state):
    """A port's weights as mmrep backbone and classifier weights.

    Args:
        source (str): ``'timm'``, ``'mindcv'`` or ``'paddle'``.
        family (str): the ``--family`` name of the backbone.
        state (dict[str, Tensor]): the port's checkpoint, its own names.

    Returns:
        tuple[dict, dict]: backbone weights (mmrep names, no prefix; a zero
        ``num_batches_tracked`` for BatchNorms without one) and head weights
        (``fc.weight``, ``fc.bias``).

    Raises:
        CheckpointMismatchError: the port has no weights of ``family``, or
            the weights are not the port's.
    """
    if (source, family) not in PORT_CONVERTERS:
        raise CheckpointMismatchError(
            f'a {SOURCE_LABELS[source]} checkpoint cannot go into {family}: '
            f'{SOURCE_LABELS[source]} weights convert as '
            f'{" or ".join(port_families(source))} only')
    if source == 'timm':
        converted, _ = repvgg.convert_timm_repvgg(state)
        backbone, head = {}, {}
        for key, value in converted.items():
            if key.startswith('backbone.'):
                backbone[key[len('backbone.'):]] = value
            else:  # head.fc.*
                head[key[len('head.'):]] = value
        return backbone, head
    backbone, head = PORT_CONVERTERS[(source, family)](state)
    return with_batch_counts(backbone), head


def with_batch_counts(state):
    """Give every BatchNorm of ``state`` (a ``running_mean`` key) without a
    ``num_batches_tracked`` a zero count, as torch's own BatchNorm loading
    does for such state dicts: MindSpore's BatchNorm keeps no count, and the
    converted weights then fit mmrep's model by names.

    Args:
        state (dict[str, Tensor]): backbone weights, mmrep names.

    Returns:
        dict[str, Tensor]: ``state``, completed.
    """
    out = dict(state)
    for key in state:
        if key.endswith('.running_mean'):
            count = key[:-len('running_mean')] + 'num_batches_tracked'
            out.setdefault(count, torch.tensor(0, dtype=torch.long))
    return out


def port_options(source, family):
    """Backbone options a port's weights need to compute what the port
    computes (``{}`` where none)."""
    return dict(PORT_OPTIONS.get((source, family), {}))
