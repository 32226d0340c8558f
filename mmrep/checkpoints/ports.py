"""Where a checkpoint comes from, told by the sources the family files
declare (:class:`~mmrep.models.backbones.family.Source`, gathered in
:data:`~mmrep.models.backbones.family.CHECKPOINT_SOURCES`): a source
whose framework wrote the file (MindCV's MindSpore ``.ckpt``,
Paddle-CycleMLP's ``.pdparams``, :func:`mmrep.checkpoints.readers.
framework_of`) first, then the sources told by key names from the highest
priority down, else the original release. Nothing here names a source:
a new one is declared in its family's file alone. ``init_cfg=Pretrained``
(:func:`~mmrep.checkpoints.load.load_pretrained`) and
``tools/convert_checkpoint.py`` both go through here.
"""
import os

import torch

from ..models.backbones.family import CHECKPOINT_FAMILIES, CHECKPOINT_SOURCES
from ..utils.serialization import CheckpointMismatchError
from .readers import framework_of

__all__ = ['source_names', 'get_source', 'detect_checkpoint_source',
           'source_of_names', 'source_evidence', 'port_families',
           'port_state_dict', 'with_batch_counts']

#: How :func:`source_evidence` names the frameworks that write checkpoint
#: files (:func:`mmrep.checkpoints.readers.framework_of`'s names).
FRAMEWORK_NAMES = {'mindspore': 'MindSpore', 'paddle': 'PaddlePaddle'}


def source_names():
    """Every registered source, as ``--source`` names it (``original``
    first)."""
    return tuple(CHECKPOINT_SOURCES)


def get_source(name):
    """The declaration of the source called ``name`` (its label,
    detection, priority; the key map is each family's own).

    Raises:
        KeyError: no family declares it.
    """
    return CHECKPOINT_SOURCES[name]


def source_of_names(state):
    """Tell a checkpoint's source by its key names: the first source, from
    the highest priority down, that some family's detection recognizes,
    else ``'original'``.

    Args:
        state (dict[str, Tensor]): the weights (a ``backbone.`` prefix is
            ignored).

    Returns:
        str
    """
    told = sorted((s for s in CHECKPOINT_SOURCES.values()
                   if s.detect is not None), key=lambda s: -s.priority)
    for told_source in told:
        if any(s.detect(state) for f in CHECKPOINT_FAMILIES.values()
               for s in f.sources if s.name == told_source.name):
            return told_source.name
    return 'original'


def detect_checkpoint_source(checkpoint, state):
    """The source of a checkpoint: the source whose framework wrote the
    file, otherwise by key names (:func:`source_of_names`).

    Args:
        checkpoint (str | os.PathLike | dict): the file (or loaded dict).
        state (dict[str, Tensor]): its weights
            (:func:`~mmrep.checkpoints.io.read_state_dict`).

    Returns:
        str: one of :func:`source_names`.
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        framework = framework_of(checkpoint)
        for source in CHECKPOINT_SOURCES.values():
            if framework is not None and source.framework == framework:
                return source.name
    return source_of_names(state)


def source_evidence(name):
    """What shows that a checkpoint is ``name``'s, for a refused
    ``--source``: the file's framework, or the key names."""
    source = CHECKPOINT_SOURCES[name]
    if source.framework is not None:
        return (f'the file is a {FRAMEWORK_NAMES[source.framework]} '
                f'checkpoint ({name})')
    article = 'an' if name[0] in 'aeiou' or name.startswith('mm') else 'a'
    return f'the key names are those of {article} {name} checkpoint'


def port_families(source):
    """The families a source has weights of."""
    return sorted(f.name for f in CHECKPOINT_FAMILIES.values()
                  if f.source(source) is not None)


def port_state_dict(source, family, state):
    """A port's weights as mmrep backbone and classifier weights.

    Args:
        source (str): a port's name (a source declared ``port=True``).
        family (CheckpointFamily): the backbone's family.
        state (dict[str, Tensor]): the port's checkpoint, its own names.

    Returns:
        tuple[dict, dict]: backbone weights (mmrep names, no prefix; a zero
        ``num_batches_tracked`` for BatchNorms without one) and head weights
        (``fc.weight``, ``fc.bias``).

    Raises:
        CheckpointMismatchError: the port has no weights of ``family``, or
            the weights are not the port's.
    """
    port = family.source(source)
    if port is None:
        label = CHECKPOINT_SOURCES[source].label
        raise CheckpointMismatchError(
            f'a {label} checkpoint cannot go into {family.name}: {label} '
            f'weights convert as {" or ".join(port_families(source))} only')
    backbone, head = port.to_mmrep(state)
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
