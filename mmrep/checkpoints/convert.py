"""Key conversion per checkpoint source and backbone family, and the
per-family reconciliations a checkpoint may need before it fits.

mmrep keeps the original releases' parameter names, so their checkpoints
(train-time or fused) pass through :func:`convert_state_dict` with only the
classifier split off. mmpretrain names RepMLPNet's and RepVGG's modules
differently; :data:`MMPRETRAIN_RENAMES` maps them. Families are told apart
by the backbone's class (a subclass converts as its base).
"""
import re

from mmengine.logging import print_log

from ..models.backbones import CycleMLP, RepMLPNet, RepMLPResNet, RepVGG
from .forms import fold_bn_pairs, fold_prebn2
from .resample import adapt_resolution

#: mmpretrain name fragment -> mmrep's, per family; applied in order
#: (``str.replace`` for RepMLPNet, regular expressions for RepVGG).
MMPRETRAIN_RENAMES = {
    RepMLPNet: (
        ('patch_embed.projection.', 'conv_embedding.conv.'),
        ('patch_embed.norm.', 'conv_embedding.bn.'),
        ('downsample_layers.', 'embeds.'),
        ('final_norm.', 'head_norm.'),
        ('.gp.conv1.conv.', '.gp.fc1.'),
        ('.gp.conv2.conv.', '.gp.fc2.'),
        ('.norm1.', '.prebn1.'),
        ('.norm2.', '.prebn2.'),
    ),
    RepVGG: (
        (re.compile(r'^stem\.'), 'stage0.'),
        (re.compile(r'^stage_(\d+)\.'), r'stage\1.'),
        (re.compile(r'\bbranch_3x3\.norm\.'), 'rbr_dense.bn.'),
        (re.compile(r'\bbranch_1x1\.norm\.'), 'rbr_1x1.bn.'),
        (re.compile(r'\bbranch_3x3\.'), 'rbr_dense.'),
        (re.compile(r'\bbranch_1x1\.'), 'rbr_1x1.'),
        (re.compile(r'\bbranch_norm\.'), 'rbr_identity.'),
        (re.compile(r'\bbranch_reparam\.'), 'rbr_reparam.'),
    ),
}
#: Key prefixes that only mmpretrain's checkpoints of a family have.
MMPRETRAIN_PREFIXES = {
    RepMLPNet: ('patch_embed.', 'downsample_layers.'),
    RepVGG: ('stem.', 'stage_'),
}

#: CycleMLP's top-level output norms: ``norm`` (a classifier's) and
#: ``norm{2i}`` (per returned stage).
_OUT_NORM = re.compile(r'^norm(\d*)\.')


def family_of(backbone):
    """The mmrep backbone family a backbone (or its class) belongs to.

    Args:
        backbone (nn.Module | type): an mmrep backbone or its class.

    Returns:
        type | None: :class:`RepMLPNet`, :class:`RepVGG`,
        :class:`RepMLPResNet` or :class:`CycleMLP`; None for another
        class.
    """
    cls = backbone if isinstance(backbone, type) else type(backbone)
    for family in (RepMLPNet, RepVGG, RepMLPResNet, CycleMLP):
        if issubclass(cls, family):
            return family
    return None


def split_classifier(state_dict, rename=None):
    """Split a classifier's state dict into backbone and head weights.

    The original releases name their classifier ``linear.*`` (RepVGG,
    RepMLP-Res50) or ``head.*`` (RepMLPNet, CycleMLP), mmpretrain
    ``head.fc.*``; all become mmpretrain ``LinearClsHead`` names.

    Args:
        state_dict (dict[str, Tensor]): classifier or backbone weights,
            without any ``backbone.`` prefix.
        rename (callable, optional): maps a backbone key to mmrep's name.

    Returns:
        tuple[dict, dict]: backbone weights and head weights (``fc.weight``,
        ``fc.bias``).
    """
    backbone, head = {}, {}
    for key, value in state_dict.items():
        if key.startswith('linear.'):
            head['fc.' + key[len('linear.'):]] = value
        elif key.startswith('head.'):
            name = key[len('head.'):]
            head[name if name.startswith('fc.') else 'fc.' + name] = value
        else:
            backbone[rename(key) if rename else key] = value
    return backbone, head


def _renamer(renames):
    def rename(key):
        for old, new in renames:
            key = old.sub(new, key) if isinstance(old, re.Pattern) \
                else key.replace(old, new)
        return key
    return rename


def convert_state_dict(backbone, state_dict):
    """Map an original, mmpretrain or mmrep state dict onto mmrep's names.

    Original and mmrep checkpoints, train-time or fused, pass through; an
    mmpretrain checkpoint of RepMLPNet (``patch_embed``,
    ``downsample_layers``, ``final_norm``, ``gp.conv1``, ``norm1``/``norm2``)
    or RepVGG (``stem``, ``stage_1``.., ``branch_3x3``/``branch_1x1`` with
    ``norm``, ``branch_norm``, ``branch_reparam``) is renamed. The
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
    family = family_of(backbone)
    prefixes = MMPRETRAIN_PREFIXES.get(family)
    if prefixes and any(k.startswith(prefixes) for k in state_dict):
        return split_classifier(state_dict,
                                _renamer(MMPRETRAIN_RENAMES[family]))
    return split_classifier(state_dict)


def reconcile_output_norms(backbone, state):
    """Reconcile CycleMLP's output norms of a checkpoint with the model's.

    Top-level norms the model does not have (a classifier's ``norm`` in a
    dense-prediction model, or per-output norms of stages it does not
    return) are dropped; per-output norms ``norm{2i}`` the checkpoint
    lacks (a classification checkpoint in a dense-prediction model) keep
    the model's current values. Both are logged. Everything else must fit
    as it is.

    Args:
        backbone (CycleMLP): the model.
        state (dict[str, Tensor]): converted backbone weights.

    Returns:
        dict[str, Tensor]: the adapted weights.
    """
    expected = backbone.state_dict()
    dropped = sorted(k for k in state
                     if _OUT_NORM.match(k) and k not in expected)
    kept = sorted(k for k in expected
                  if k not in state and _OUT_NORM.match(k)
                  and _OUT_NORM.match(k).group(1))
    if not dropped and not kept:
        return state
    state = {k: v for k, v in state.items() if k not in dropped}
    state.update({k: expected[k] for k in kept})
    name = type(backbone).__name__
    if dropped:
        print_log(f'{name}: dropped checkpoint norms the model does not '
                  f'use: {dropped}', logger='current')
    if kept:
        print_log(f'{name}: the checkpoint has no {kept}; these output '
                  f'norms keep their initialization', logger='current')
    return state


def adapt_state_dict(backbone, state):
    """Reconcile converted weights that do not fit the backbone as they are.

    RepMLPNet and RepMLP-Res50: partition- and grid-bound weights of a
    checkpoint built for another resolution are resampled
    (:func:`~mmrep.checkpoints.resample.adapt_resolution`); a fused
    RepMLPNet also gets a kept ``prebn2`` folded
    (:func:`~mmrep.checkpoints.forms.fold_prebn2`). CycleMLP: the output
    norms are reconciled (:func:`reconcile_output_norms`). RepVGG has
    nothing to adapt.

    Args:
        backbone (nn.Module): the mmrep backbone.
        state (dict[str, Tensor]): converted backbone weights.

    Returns:
        dict[str, Tensor] | None: the adapted weights; None when the
        family adapts nothing.
    """
    family = family_of(backbone)
    if family is RepMLPNet:
        state = adapt_resolution(backbone, state)
        return fold_prebn2(state) if backbone.deploy else state
    if family is RepMLPResNet:
        return adapt_resolution(backbone, state)
    if family is CycleMLP:
        return reconcile_output_norms(backbone, state)
    return None


def release_fused_form(backbone, state):
    """Bring an original release's fused checkpoint to mmrep's fused form,
    without resampling: RepMLPNet's kept ``prebn2`` and every conv-BN pair
    that mmrep's fused form merges are folded.

    Args:
        backbone (nn.Module): a fused (``deploy=True``) mmrep backbone, on
            any device (only its names and shapes are read).
        state (dict[str, Tensor]): converted backbone weights.

    Returns:
        dict[str, Tensor]: the folded weights.
    """
    if family_of(backbone) is RepMLPNet:
        state = fold_prebn2(state)
    return fold_bn_pairs(state, backbone.state_dict())
