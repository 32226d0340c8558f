"""Key conversion per checkpoint source and backbone family, and the
per-family reconciliations a checkpoint may need before it fits.

Every family declares its sources' key maps and reconciliations in its own
file (:mod:`mmrep.models.backbones.family`); this module dispatches to
them. mmrep keeps the original releases' parameter names, so their
checkpoints (train-time or fused) pass with only the classifier split off.
"""
from ..models.backbones.family import family_of, split_classifier
from .forms import fold_bn_pairs

__all__ = ['family_of', 'split_classifier', 'names_source',
           'convert_state_dict', 'adapt_state_dict', 'release_fused_form']


def names_source(family, state):
    """The family's source whose names weights laid out as the original's
    have: a source told by names (mmpretrain's) whose detection accepts
    them, from the highest priority down, else the original release.

    Args:
        family (CheckpointFamily): the backbone's family.
        state (dict[str, Tensor]): backbone or classifier weights, without
            any ``backbone.`` prefix.

    Returns:
        Source: the family's declaration of that source.
    """
    for source in sorted(family.sources, key=lambda s: -s.priority):
        if not source.port and source.detect is not None and \
                source.detect(state):
            return source
    return family.source('original')


def convert_state_dict(backbone, state_dict):
    """Map an original, mmpretrain or mmrep state dict onto mmrep's names.

    Original and mmrep checkpoints, train-time or fused, pass through; a
    checkpoint whose names one of the family's name-told sources
    recognizes (mmpretrain's) goes through that source's key map. The
    classifier (``linear.*`` or ``head.*``) is split off either way.

    Args:
        backbone (nn.Module | type): the mmrep backbone (or its class) the
            weights are for.
        state_dict (dict[str, Tensor]): backbone or classifier weights,
            without any ``backbone.`` prefix.

    Returns:
        tuple[dict, dict]: backbone weights and classifier head weights
        (mmpretrain ``LinearClsHead`` names: ``fc.weight``, ``fc.bias``).
    """
    family = family_of(backbone, required=True)
    return names_source(family, state_dict).to_mmrep(state_dict)


def adapt_state_dict(backbone, state):
    """Reconcile converted weights that do not fit the backbone as they are,
    by the family's ``adapt`` (RepMLPNet and RepMLP-Res50: resolution
    transfer, and a fused RepMLPNet's kept ``prebn2``; CycleMLP: its output
    norms).

    Args:
        backbone (nn.Module): the mmrep backbone.
        state (dict[str, Tensor]): converted backbone weights.

    Returns:
        dict[str, Tensor] | None: the adapted weights; None when the
        family adapts nothing.
    """
    adapt = family_of(backbone, required=True).adapt
    return None if adapt is None else adapt(backbone, state)


def release_fused_form(backbone, state):
    """Bring an original release's fused checkpoint to mmrep's fused form,
    without resampling: what the family's release keeps
    (``release_fused``) and every conv-BN pair that mmrep's fused form
    merges are folded.

    Args:
        backbone (nn.Module): a fused (``deploy=True``) mmrep backbone, on
            any device (only its names and shapes are read).
        state (dict[str, Tensor]): converted backbone weights.

    Returns:
        dict[str, Tensor]: the folded weights.
    """
    fold = family_of(backbone, required=True).release_fused
    if fold is not None:
        state = fold(state)
    return fold_bn_pairs(state, backbone.state_dict())
