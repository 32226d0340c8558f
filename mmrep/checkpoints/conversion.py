"""Converting the released ImageNet weights into mmrep checkpoints: the
original releases' constructor arguments as mmrep arch dicts
(:func:`mmrep_arch`), telling the source (original release, mmpretrain,
timm, MindCV or Paddle-CycleMLP) from the file and the weights' names,
inferring the preset (or, failing that, the arch) the weights fit, and
building the ``configs/imagenet`` classifier (or the bare backbone) that
holds them (:func:`convert`). ``tools/convert_checkpoint.py`` writes the
result.
"""
import ast
import functools
import os.path as osp

import torch

from ..models.backbones.family import CheckpointFamily, get_family
from ..utils import MmrepError
from ..utils.serialization import CheckpointMismatchError
from ..version import __version__
from .forms import describe_mismatch, same_layout
from .io import read_state_dict
from .load import convert_weights, fits_backbone, load_converted
from .ports import detect_checkpoint_source, get_source, source_evidence


class ConversionError(MmrepError, RuntimeError):
    """The source cannot be converted as asked."""


def as_family(family):
    """A family given by name (``--family``) or as the declaration itself.

    Returns:
        CheckpointFamily

    Raises:
        ModelArgumentError: an unknown family name.
    """
    return family if isinstance(family, CheckpointFamily) \
        else get_family(family)


def mmrep_arch(family, original_kwargs):
    """Translate an original release's constructor arguments into an mmrep
    arch dict, by the family's ``from_original_kwargs`` (RepMLPNet: ``hs`` /
    ``ws`` -> ``partition_sizes``, ``sharesets_nums`` -> ``sharesets`` ...;
    RepVGG: ``override_groups_map`` -> ``group_layer_map`` ...; each family
    file documents its own). mmrep's own names pass through; the model
    checks the result.

    Args:
        family (str | CheckpointFamily): a registered family or its name.
        original_kwargs (dict | str): the original's arguments, or a preset
            name (returned as it is).

    Returns:
        dict | str: the arch, in mmrep's names.

    Raises:
        ModelArgumentError: an unknown family, or arguments the family's
            translation refuses (an argument under both names, half of a
            pair, a layout mmrep does not have).
    """
    original = as_family(family).source('original')
    if not isinstance(original_kwargs, dict):
        return original_kwargs
    return original.from_kwargs(original_kwargs)[0]['arch']


def input_channels(family, backbone_state):
    """Image channels the weights take (None where the family's
    ``input_weights`` are not found)."""
    for key in family.input_weights:
        if key in backbone_state and backbone_state[key].dim() == 4:
            return int(backbone_state[key].shape[1])
    return None


def backbone_kwargs(family, arch, backbone_state, deploy, options=None):
    """Constructor arguments of the backbone the weights describe.

    A classifier's backbone returns the last stage; the family's
    ``classifier_kwargs`` add the rest (e.g. the norm the original applies
    before its classifier, or every stage for CycleMLP's dense-prediction
    weights). Weights taking other than 3 image
    channels set ``in_channels``; ``options`` (a port's, e.g. MindCV
    RepMLPNet's tanh GELU) are added.
    """
    last = 3
    if isinstance(arch, dict):
        last = len(family.model.parse_arch(
            mmrep_arch(family, arch))['num_blocks']) - 1
    kwargs = dict(arch=mmrep_arch(family, arch), deploy=deploy,
                  out_indices=(last, ))
    channels = input_channels(family, backbone_state)
    if channels not in (None, 3):
        kwargs['in_channels'] = channels
    kwargs.update(options or {})
    kwargs.update(family.classifier_kwargs(backbone_state, last + 1))
    return kwargs


def _meta_backbone(family, arch, backbone_state, deploy):
    """Build the backbone on the meta device (no memory, no init)."""
    kwargs = backbone_kwargs(family, arch, backbone_state, deploy)
    return _cached_meta_backbone(family.name, repr(sorted(kwargs.items())))


@functools.lru_cache(maxsize=None)
def _cached_meta_backbone(name, kwargs_repr):
    kwargs = dict(ast.literal_eval(kwargs_repr))
    with torch.device('meta'):
        return get_family(name).model(**kwargs)


def read_arch(family, backbone_state):
    """Read an arch dict from converted weights' names and shapes, for
    weights of no preset (a port's or mmpretrain's custom arch).

    The family's ``read_arch`` reads them; what shapes do not tell takes
    mmrep's default (each family file says which).

    Args:
        family (CheckpointFamily): the backbone family.
        backbone_state (dict[str, Tensor]): converted backbone weights.

    Returns:
        dict | None: the arch (mmrep names); None where the weights are not
        laid out as the family's.
    """
    if family.read_arch is None:
        return None
    try:
        arch = family.read_arch(backbone_state)
        family.model.parse_arch(arch)
    except (KeyError, ValueError, IndexError, ZeroDivisionError):
        return None
    return arch


def infer_arch(family, backbone_state):
    """Find the preset (and form) whose model the weights fit.

    Every preset is built on the meta device (no memory, no initialization)
    in train-time and fused form and compared by names and shapes. Where
    none fits, the arch read from the weights' shapes (:func:`read_arch`)
    is tried and returned as a dict when its model fits.

    Args:
        family (CheckpointFamily): the backbone family.
        backbone_state (dict[str, Tensor]): converted backbone weights.

    Returns:
        tuple[str, bool]: the preset name and whether the weights are fused.

    Raises:
        ConversionError: no preset, or more than one, fits; names the
            closest preset and its mismatching keys.
    """
    cls = family.model
    fits, closest = [], None
    for arch in cls.arch_zoo:
        forms = []
        for deploy in (False, True):
            model = _meta_backbone(family, arch, backbone_state, deploy)
            if forms and same_layout(forms[0].state_dict(),
                                     model.state_dict()):
                continue  # nothing to fuse (CycleMLP): one form
            forms.append(model)
        for model in forms:
            if fits_backbone(backbone_state, model):
                fits.append((arch, model.deploy))
                continue
            expected = model.state_dict()
            misses = len(set(expected) ^ set(backbone_state)) + sum(
                backbone_state[k].shape != expected[k].shape
                for k in set(expected) & set(backbone_state))
            if closest is None or misses < closest[0]:
                closest = (misses, arch, model.deploy, expected)
    if len(fits) == 1:
        return fits[0]
    if fits:
        raise ConversionError(
            f'the weights fit several {family.name} presets {fits}; name '
            f'one with --arch')
    read = read_arch(family, backbone_state)
    if read is not None:
        for deploy in (False, True):
            if fits_backbone(backbone_state, _meta_backbone(
                    family, read, backbone_state, deploy)):
                return read, deploy
    _, arch, deploy, expected = closest
    raise ConversionError(
        f'the weights fit no {family.name} preset; the closest is {arch!r} '
        f'(deploy={deploy}): ' + describe_mismatch(backbone_state, expected))


def classifier_cfg(family, kwargs, num_classes, in_channels):
    """The ``ImageClassifier`` dict the ``configs/imagenet`` configs use.

    Args:
        family (CheckpointFamily): the backbone family.
        kwargs (dict): backbone constructor arguments.
        num_classes (int): classifier outputs.
        in_channels (int): channels of the last stage.

    Returns:
        dict: model config (mmpretrain scope).
    """
    return dict(
        type='ImageClassifier',
        backbone=dict(type='mmrep.' + family.model.__name__, **kwargs),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=num_classes,
                  in_channels=in_channels))


def convert(src, family, arch=None, source=None, backbone_only=False):
    """Convert a checkpoint file into mmrep weights.

    Args:
        src (str): the source checkpoint.
        family (str | CheckpointFamily): the backbone family or its name.
        arch (str | dict, optional): preset name, or an arch dict (the
            original's argument names are translated by
            :func:`mmrep_arch`); inferred when None.
        source (str, optional): a registered source
            (:func:`~mmrep.checkpoints.ports.source_names`); detected when
            None
            (:func:`~mmrep.checkpoints.ports.detect_checkpoint_source`: a
            MindSpore file is MindCV's, a PaddlePaddle file Paddle-CycleMLP's,
            otherwise the key names tell), checked against the file
            otherwise. A port's arch is the preset its weights fit, or the
            one its weights' shapes give (:func:`read_arch`); options its
            computation needs (MindCV RepMLPNet's tanh GELU, floor rounding
            and partition order) go into the backbone's arguments and
            ``meta['port_options']``.
        backbone_only (bool): return the backbone's weights only.

    Returns:
        dict: ``state_dict`` (the loaded model's weights) and ``meta``
        (family, arch, source, deploy, num_classes, source file name, mmrep
        version, ``model`` (the classifier config) or ``backbone`` (the
        backbone config), and a port's ``port_options``).

    Raises:
        ConversionError: wrong source, unknown or ambiguous preset, missing
            classifier weights, or keys nothing consumes.
        CheckpointMismatchError: the weights do not fit the model (names
            the keys).
        ModelArgumentError: ``arch`` is an unknown preset, or an arch dict
            that does not translate or build.
    """
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    family = as_family(family)
    state = read_state_dict(src)
    detected = detect_checkpoint_source(src, state)
    if source is not None and source != detected:
        raise ConversionError(f'--source {source}, but ' +
                              source_evidence(detected))
    port = get_source(detected).port
    if family.source(detected) is None and not port:
        raise ConversionError(f'{detected} has no {family.name} checkpoints')
    try:
        weights = convert_weights(family, state, detected=detected)
    except CheckpointMismatchError as e:
        if not port:
            raise
        raise ConversionError(str(e)) from None
    stray = sorted(k for k in weights.rest if not k.startswith('head.'))
    if stray:
        raise ConversionError(
            f'{len(stray)} keys belong to neither the backbone nor the '
            f'classifier head: {stray[:8]}')
    backbone_state = weights.backbone
    head = {k[len('head.'):]: v for k, v in weights.rest.items()}
    options = dict(weights.source.options) if port else {}
    cls = family.model
    if arch is None:
        arch, deploy = infer_arch(family, backbone_state)
    else:
        # Unknown presets fail here, with the list.
        cls.parse_arch(mmrep_arch(family, arch))
        deploy = None
        for form in (False, True):
            if fits_backbone(backbone_state, _meta_backbone(
                    family, arch, backbone_state, form)):
                deploy = form
                break
        if deploy is None:
            expected = _meta_backbone(family, arch, backbone_state,
                                      False).state_dict()
            raise CheckpointMismatchError(
                f'the weights do not fit {family.name} {arch!r}: '
                + describe_mismatch(backbone_state, expected))
    kwargs = backbone_kwargs(family, arch, backbone_state, deploy, options)
    meta = dict(family=family.name, arch=arch, source=detected,
                deploy=deploy,
                source_file=osp.basename(src), mmrep_version=__version__)
    if options:
        meta['port_options'] = dict(options)

    if backbone_only:
        with torch.device('meta'):
            backbone = cls(**kwargs)
        backbone.to_empty(device='cpu')
        load_converted(backbone, weights._replace(rest={}), src)
        meta.update(backbone=dict(type='mmrep.' + cls.__name__, **kwargs),
                    num_classes=None)
        return dict(state_dict=backbone.state_dict(), meta=meta)

    if set(head) != {'fc.weight', 'fc.bias'}:
        raise ConversionError(
            f'the checkpoint holds no complete classifier (found head keys '
            f'{sorted(head)}); convert it with --backbone-only')
    num_classes, in_channels = head['fc.weight'].shape
    init_default_scope('mmpretrain')
    # Built without initialization: the strict load below overwrites every
    # tensor of the state dict that is written.
    with torch.device('meta'):
        model = MODELS.build(classifier_cfg(family, kwargs, num_classes,
                                            in_channels))
    model.to_empty(device='cpu')
    unused = load_converted(model, weights, src)
    if unused:
        raise ConversionError(f'{len(unused)} keys fit no part of the '
                              f'classifier: {unused[:8]}')
    meta.update(num_classes=int(num_classes),
                model=classifier_cfg(family, kwargs, int(num_classes),
                                     int(in_channels)))
    return dict(state_dict=model.state_dict(), meta=meta)
