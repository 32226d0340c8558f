"""Where a checkpoint comes from, and the ports' weights in mmrep's names.

Five sources are told apart: the original releases, mmpretrain and timm by
key names, MindCV (a MindSpore ``.ckpt``) and Paddle-CycleMLP (a
PaddlePaddle ``.pdparams``) by the file's content
(:func:`mmrep.checkpoints.readers.framework_of`). What tells each source, its
key map and the options its computation needs are declared by the family
files (:class:`~mmrep.models.backbones.family.Source`); this module
dispatches through :data:`~mmrep.models.backbones.family.
CHECKPOINT_FAMILIES`. ``init_cfg=Pretrained``
(:func:`~mmrep.checkpoints.load.load_pretrained`) and
``tools/convert_checkpoint.py`` both go through here.
"""
import os

import torch

from ..models.backbones.family import (CHECKPOINT_FAMILIES, SOURCE_LABELS,
                                       family_of, get_family)
from ..utils.serialization import CheckpointMismatchError
from .readers import framework_of

__all__ = ['SOURCES', 'PORT_SOURCES', 'SOURCE_LABELS',
           'detect_checkpoint_source', 'source_of_names', 'family_name',
           'port_families', 'port_state_dict', 'port_options',
           'with_batch_counts']

#: Every source, as ``--source`` names it.
SOURCES = tuple(SOURCE_LABELS)
#: The sources whose weights are not laid out as the original's; their
#: key maps decide which families they have.
PORT_SOURCES = ('timm', 'mindcv', 'paddle')
#: Sources told by key names, in the order they are tried (timm's RepVGG
#: names share mmpretrain's ``stem.`` prefix: timm first).
NAME_TOLD_SOURCES = ('timm', 'mmpretrain')


def _sources(name):
    """Every family's source called ``name``."""
    return [s for f in CHECKPOINT_FAMILIES.values()
            for s in f.sources if s.name == name]


def source_of_names(state):
    """Tell a checkpoint's source by its key names: the first of
    :data:`NAME_TOLD_SOURCES` some family recognizes, else
    ``'original'``.

    Args:
        state (dict[str, Tensor]): the weights (a ``backbone.`` prefix is
            ignored).

    Returns:
        str
    """
    for name in NAME_TOLD_SOURCES:
        if any(s.detect(state) for s in _sources(name)):
            return name
    return 'original'


def detect_checkpoint_source(checkpoint, state):
    """The source of a checkpoint: the source whose framework wrote the
    file (MindCV for MindSpore, Paddle-CycleMLP for PaddlePaddle),
    otherwise by key names (:func:`source_of_names`).

    Args:
        checkpoint (str | os.PathLike | dict): the file (or loaded dict).
        state (dict[str, Tensor]): its weights
            (:func:`~mmrep.checkpoints.io.read_state_dict`).

    Returns:
        str: one of :data:`SOURCES`.
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        framework = framework_of(checkpoint)
        for family in CHECKPOINT_FAMILIES.values():
            for source in family.sources:
                if framework is not None and source.framework == framework:
                    return source.name
    return source_of_names(state)


def family_name(family):
    """``--family`` name of a backbone family class (or instance)."""
    return family_of(family, required=True).name


def port_families(source):
    """The families a source has weights of."""
    return sorted(f.name for f in CHECKPOINT_FAMILIES.values()
                  if f.source(source) is not None)


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
    port = get_family(family).source(source)
    if port is None:
        raise CheckpointMismatchError(
            f'a {SOURCE_LABELS[source]} checkpoint cannot go into {family}: '
            f'{SOURCE_LABELS[source]} weights convert as '
            f'{" or ".join(port_families(source))} only')
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


def port_options(source, family):
    """Backbone options a source's weights need to compute what the source
    computes (``{}`` where none)."""
    port = get_family(family).source(source)
    return dict(port.options) if port is not None else {}
