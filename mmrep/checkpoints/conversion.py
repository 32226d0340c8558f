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
import math
import os.path as osp
import re

import torch

from ..models.backbones import CycleMLP, RepMLPNet, RepMLPResNet, RepVGG
from ..utils.serialization import CheckpointMismatchError
from ..version import __version__
from .convert import convert_state_dict
from .forms import describe_mismatch, same_layout
from .io import read_state_dict, split_model_state
from .load import fits_backbone, load_pretrained
from .ports import (PORT_SOURCES, detect_checkpoint_source,
                    port_options, port_state_dict, source_of_names)

#: Family name (``--family``) -> backbone class.
FAMILIES = {
    'repmlpnet': RepMLPNet,
    'repvgg': RepVGG,
    'repmlp-res50': RepMLPResNet,
    'cyclemlp': CycleMLP,
}
# mmpretrain ships RepMLPNet and RepVGG only.
MMPRETRAIN_FAMILIES = ('repmlpnet', 'repvgg')


#: The original releases' constructor arguments -> mmrep's arch keys.
ORIGINAL_ARCH_NAMES = {
    'repmlpnet': dict(sharesets_nums='sharesets',
                      reparam_conv_k='conv_kernels',
                      globalperceptron_reduce='gp_reduce'),
    'repvgg': dict(width_factor='width_multiplier',
                   override_groups_map='group_layer_map'),
    'repmlp-res50': dict(reparam_conv_k='conv_kernels'),
    'cyclemlp': dict(embed_dims='channels', layers='num_blocks'),
}
#: The original releases' constructor arguments that belong to the
#: classifier or the input pipeline, not to the backbone's arch.
ORIGINAL_DROPPED = {
    'repmlpnet': ('num_class', ),
    'repvgg': ('num_classes', ),
    'repmlp-res50': ('num_classes', ),
    'cyclemlp': ('num_classes', 'img_size', 'patch_size', 'in_chans',
                 'segment_dim', 'qk_scale', 'drop_rate', 'attn_drop_rate'),
}
#: Pairs of original arguments that become one mmrep ``(h, w)`` setting.
ORIGINAL_PAIRS = {
    'repmlp-res50': (('img_H', 'img_W', 'img_size'),
                     ('h', 'w', 'partition')),
}


class ConversionError(RuntimeError):
    """The source cannot be converted as asked."""


def mmrep_arch(family, original_kwargs):
    """Translate an original release's constructor arguments into an mmrep
    arch dict.

    RepMLPNet: ``hs``/``ws`` -> ``partition_sizes`` (``(h, w)`` per stage),
    ``sharesets_nums`` -> ``sharesets``, ``reparam_conv_k`` ->
    ``conv_kernels``, ``globalperceptron_reduce`` -> ``gp_reduce``
    (``num_class`` dropped). CycleMLP: ``embed_dims`` -> ``channels``,
    ``layers`` -> ``num_blocks``; ``transitions`` must downsample after every
    stage but the last (mmrep's only layout) and is dropped, as are the
    classifier's and input's arguments. RepVGG: ``override_groups_map`` ->
    ``group_layer_map``, ``width_factor`` -> ``width_multiplier``
    (``num_classes`` dropped; ``se_cfg`` must be None). RepMLP-Res50:
    ``img_H``/``img_W`` -> ``img_size``, ``h``/``w`` -> ``partition``,
    ``reparam_conv_k`` -> ``conv_kernels`` (``num_classes`` dropped).
    mmrep's own names pass through; the model checks the result.

    Args:
        family (str): a key of :data:`FAMILIES`.
        original_kwargs (dict | str): the original's arguments, or a preset
            name (returned as it is).

    Returns:
        dict | str: the arch, in mmrep's names.

    Raises:
        ValueError: an argument given under both names, half of a pair
            (``hs`` without ``ws``), a ``transitions`` list that does not
            downsample between every two stages, or an ``se_cfg``.
    """
    if family not in FAMILIES:
        raise ValueError(f'unknown family {family!r}; one of '
                         f'{sorted(FAMILIES)}')
    if not isinstance(original_kwargs, dict):
        return original_kwargs
    arch = dict(original_kwargs)
    for old, new in ORIGINAL_ARCH_NAMES[family].items():
        if old in arch:
            if new in arch:
                raise ValueError(f'arch gives both {old!r} and {new!r}')
            arch[new] = arch.pop(old)
    for key in ORIGINAL_DROPPED[family]:
        arch.pop(key, None)
    for old, new, target in ORIGINAL_PAIRS.get(family, ()):
        if old in arch or new in arch:
            if old not in arch or new not in arch or target in arch:
                raise ValueError(f'arch needs both {old!r} and {new!r} '
                                 f'(and not {target!r} as well)')
            arch[target] = (arch.pop(old), arch.pop(new))
    if family == 'repmlpnet' and ('hs' in arch or 'ws' in arch):
        hs, ws = arch.pop('hs', None), arch.pop('ws', None)
        if hs is None or ws is None or len(hs) != len(ws):
            raise ValueError('arch needs both hs and ws, of equal length')
        arch['partition_sizes'] = tuple(zip(hs, ws))
    if family == 'repvgg' and arch.pop('se_cfg', None) is not None:
        raise ValueError('RepVGG blocks with SE layers (se_cfg) are not '
                         'supported')
    if family == 'cyclemlp' and 'transitions' in arch:
        transitions = arch.pop('transitions')
        num_stages = len(arch.get('channels', arch.get('num_blocks', ())))
        if (len(transitions) < num_stages - 1
                or not all(transitions[:num_stages - 1])):
            raise ValueError(
                f'transitions {list(transitions)}: every stage but the '
                f'last must end with a (stride-2) downsampling, as the '
                f'original requires')
    return arch


def detect_source(state):
    """Tell a checkpoint's source by its key names.

    timm's RepVGG names are checked first (they share mmpretrain's
    ``stem.`` prefix). MindCV and Paddle-CycleMLP checkpoints are told by
    their file format instead
    (:func:`~mmrep.checkpoints.ports.detect_checkpoint_source`).

    Args:
        state (dict[str, Tensor]): the checkpoint's weights.

    Returns:
        str: ``'timm'``, ``'mmpretrain'`` or ``'original'``.
    """
    return source_of_names(state)


def _source_evidence(detected):
    """What shows a checkpoint's source, for a refused ``--source``."""
    if detected == 'mindcv':
        return 'the file is a MindSpore checkpoint (mindcv)'
    if detected == 'paddle':
        return 'the file is a PaddlePaddle checkpoint (paddle)'
    article = 'a' if detected == 'timm' else 'an'
    return f'the key names are those of {article} {detected} checkpoint'


def split_source(state, family):
    """Convert a source state dict into mmrep backbone and head weights.

    Args:
        state (dict[str, Tensor]): the source weights (original names, or an
            mmpretrain classifier with ``backbone.`` / ``head.`` keys).
        family (str): a key of :data:`FAMILIES`.

    Returns:
        tuple[dict, dict]: backbone weights (mmrep names) and head weights
        (``fc.weight`` / ``fc.bias``).

    Raises:
        ConversionError: keys outside the backbone and the classifier head.
    """
    backbone, rest = split_model_state(state)
    stray = sorted(k for k in rest if not k.startswith('head.'))
    if stray:
        raise ConversionError(
            f'{len(stray)} keys belong to neither the backbone nor the '
            f'classifier head: {stray[:8]}')
    combined = dict(backbone)
    combined.update(rest)
    return convert_state_dict(FAMILIES[family], combined)


#: Where each family's first weight (its input channels at dim 1) is.
_INPUT_WEIGHTS = {
    'repmlpnet': ('conv_embedding.conv.weight', ),
    'repvgg': ('stage0.rbr_dense.conv.weight', 'stage0.rbr_reparam.weight'),
}


def input_channels(family, backbone_state):
    """Image channels the weights take (None where the family's first
    weight is not found)."""
    for key in _INPUT_WEIGHTS.get(family, ()):
        if key in backbone_state and backbone_state[key].dim() == 4:
            return int(backbone_state[key].shape[1])
    return None


def backbone_kwargs(family, arch, backbone_state, deploy, options=None):
    """Constructor arguments of the backbone the weights describe.

    A classifier's backbone returns the last stage, normalized where the
    original normalizes it before the classifier (RepMLPNet's ``head_norm``,
    CycleMLP's ``norm``). CycleMLP weights with per-output norms
    (``norm0`` .. ``norm6``, the original's dense-prediction form) describe a
    backbone returning all four stages. Weights taking other than 3 image
    channels set ``in_channels``; ``options`` (a port's, e.g. MindCV
    RepMLPNet's tanh GELU) are added.
    """
    last = 3
    if isinstance(arch, dict):
        last = len(FAMILIES[family].parse_arch(
            mmrep_arch(family, arch))['num_blocks']) - 1
    kwargs = dict(arch=mmrep_arch(family, arch), deploy=deploy,
                  out_indices=(last, ))
    channels = input_channels(family, backbone_state)
    if channels not in (None, 3):
        kwargs['in_channels'] = channels
    kwargs.update(options or {})
    if family == 'repmlpnet':
        kwargs['final_norm'] = True
    elif family == 'cyclemlp':
        if 'norm.weight' in backbone_state:
            kwargs['final_norm'] = True
        else:
            kwargs['out_indices'] = tuple(range(last + 1))
    return kwargs


def _meta_backbone(family, arch, backbone_state, deploy):
    """Build the backbone on the meta device (no memory, no init)."""
    kwargs = backbone_kwargs(family, arch, backbone_state, deploy)
    return _cached_meta_backbone(family, repr(sorted(kwargs.items())))


@functools.lru_cache(maxsize=None)
def _cached_meta_backbone(family, kwargs_repr):
    kwargs = dict(ast.literal_eval(kwargs_repr))
    with torch.device('meta'):
        return FAMILIES[family](**kwargs)


def _indices(state, pattern):
    """The sorted ints the first group of ``pattern`` takes over the keys."""
    found = set()
    for key in state:
        m = re.match(pattern, key)
        if m:
            found.add(int(m.group(1)))
    return sorted(found)


def _square_side(area, what):
    side = math.isqrt(area)
    if side * side != area:
        raise ValueError(f'{what}: {area} positions are no square partition')
    return side


def _read_repmlpnet_arch(state):
    stages = _indices(state, r'stages\.(\d+)\.0\.prebn1\.weight$')
    if not stages or stages != list(range(len(stages))):
        raise ValueError('no stages')
    channels, blocks, sharesets, partitions, hidden = [], [], [], [], []
    for i in stages:
        c = int(state[f'stages.{i}.0.prebn1.weight'].shape[0])
        channels.append(c)
        blocks.append(len(_indices(state, rf'stages\.{i}\.(\d+)\.prebn1\.')))
        fc3 = state[f'stages.{i}.0.repmlp_block.fc3.weight'].shape
        sharesets.append(int(fc3[0] // fc3[1]))
        side = _square_side(int(fc3[1]), f'stage {i}')
        partitions.append((side, side))
        hidden.append(int(
            state[f'stages.{i}.0.repmlp_block.gp.fc1.weight'].shape[0]))
    kernels = tuple(_indices(
        state, r'stages\.0\.0\.repmlp_block\.repconv(\d+)\.'))
    ffn = state['stages.0.0.ffn_block.ffn_fc1.conv.weight'
                if 'stages.0.0.ffn_block.ffn_fc1.conv.weight' in state else
                'stages.0.0.ffn_block.ffn_fc1.weight'].shape[0]
    arch = dict(channels=tuple(channels), num_blocks=tuple(blocks),
                sharesets=tuple(sharesets),
                partition_sizes=tuple(partitions),
                conv_kernels=kernels,
                ffn_expand=int(ffn // channels[0]),
                patch_size=tuple(int(v) for v in state[
                    'conv_embedding.conv.weight'].shape[-2:]))
    if not kernels and not any('.fc3_bn.' in k for k in state):
        arch['conv_kernels'] = (1, 3)  # fused: no conv branch is left
    reduce = channels[0] // hidden[0] if hidden[0] else 0
    if reduce and all(c // reduce == h for c, h in zip(channels, hidden)):
        arch['gp_reduce'] = reduce
    else:  # mmpretrain's widths, rounded to multiples of 8
        arch['gp_channels'] = tuple(hidden)
    return arch


def _repvgg_block_weight(state, name):
    for key in (f'{name}.rbr_dense.conv.weight', f'{name}.rbr_reparam.weight'):
        if key in state:
            return state[key].shape
    raise KeyError(name)


def _read_repvgg_arch(state):
    stem = _repvgg_block_weight(state, 'stage0')
    planes, in_ch = int(stem[0]), int(stem[0])
    num_blocks, multipliers, groups, layer = [], [], {}, 1
    for i in range(1, 5):
        blocks = _indices(state, rf'stage{i}\.(\d+)\.')
        if not blocks:
            raise ValueError(f'no stage{i}')
        num_blocks.append(len(blocks))
        for j in range(len(blocks)):
            shape = _repvgg_block_weight(state, f'stage{i}.{j}')
            if in_ch % int(shape[1]):
                raise ValueError(f'stage{i}.{j} groups')
            if in_ch // int(shape[1]) > 1:
                groups[layer] = in_ch // int(shape[1])
            in_ch, layer = int(shape[0]), layer + 1
        multipliers.append(in_ch / (64 * 2**(i - 1)))
    arch = dict(num_blocks=tuple(num_blocks),
                width_multiplier=tuple(multipliers), group_layer_map=groups)
    if planes != min(64, int(64 * multipliers[0])):
        arch['stem_channels'] = planes
    return arch


def _read_cyclemlp_arch(state):
    stages = _indices(state, r'network\.(\d+)\.0\.norm1\.weight$')
    channels, blocks, ratios = [], [], []
    for i in stages:
        c = int(state[f'network.{i}.0.norm1.weight'].shape[0])
        channels.append(c)
        blocks.append(len(_indices(state, rf'network\.{i}\.(\d+)\.norm1\.')))
        ratios.append(int(state[f'network.{i}.0.mlp.fc1.weight'].shape[0]
                          // c))
    if not stages or stages != list(range(0, 2 * len(stages), 2)):
        raise ValueError('stages')
    return dict(channels=tuple(channels), num_blocks=tuple(blocks),
                mlp_ratios=tuple(ratios),
                qkv_bias='network.0.0.attn.mlp_c.bias' in state)


_ARCH_READERS = dict(repmlpnet=_read_repmlpnet_arch,
                     repvgg=_read_repvgg_arch,
                     cyclemlp=_read_cyclemlp_arch)


def read_arch(family, backbone_state):
    """Read an arch dict from converted weights' names and shapes, for
    weights of no preset (a port's or mmpretrain's custom arch).

    What shapes do not tell takes mmrep's default: RepMLPNet partitions are
    taken as square (``h * w`` positions is all ``fc3`` holds) and a fused
    model's conv kernels as ``(1, 3)`` (they leave no weight); CycleMLP's
    ``skip_lam`` is 1.0. RepMLPNet's global perceptron widths become
    ``gp_reduce``, or ``gp_channels`` where no ratio gives them all
    (mmpretrain rounds them to multiples of 8).

    Args:
        family (str): a key of :data:`FAMILIES`.
        backbone_state (dict[str, Tensor]): converted backbone weights.

    Returns:
        dict | None: the arch (mmrep names); None where the weights are not
        laid out as the family's.
    """
    reader = _ARCH_READERS.get(family)
    if reader is None:
        return None
    try:
        arch = reader(backbone_state)
        FAMILIES[family].parse_arch(arch)
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
        family (str): a key of :data:`FAMILIES`.
        backbone_state (dict[str, Tensor]): converted backbone weights.

    Returns:
        tuple[str, bool]: the preset name and whether the weights are fused.

    Raises:
        ConversionError: no preset, or more than one, fits; names the
            closest preset and its mismatching keys.
    """
    cls = FAMILIES[family]
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
            f'the weights fit several {family} presets {fits}; name one '
            f'with --arch')
    read = read_arch(family, backbone_state)
    if read is not None:
        for deploy in (False, True):
            if fits_backbone(backbone_state, _meta_backbone(
                    family, read, backbone_state, deploy)):
                return read, deploy
    _, arch, deploy, expected = closest
    raise ConversionError(
        f'the weights fit no {family} preset; the closest is {arch!r} '
        f'(deploy={deploy}): ' + describe_mismatch(backbone_state, expected))


def classifier_cfg(family, kwargs, num_classes, in_channels):
    """The ``ImageClassifier`` dict the ``configs/imagenet`` configs use.

    Args:
        family (str): a key of :data:`FAMILIES`.
        kwargs (dict): backbone constructor arguments.
        num_classes (int): classifier outputs.
        in_channels (int): channels of the last stage.

    Returns:
        dict: model config (mmpretrain scope).
    """
    return dict(
        type='ImageClassifier',
        backbone=dict(type='mmrep.' + FAMILIES[family].__name__, **kwargs),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=num_classes,
                  in_channels=in_channels))


def convert(src, family, arch=None, source=None, backbone_only=False):
    """Convert a checkpoint file into mmrep weights.

    Args:
        src (str): the source checkpoint.
        family (str): a key of :data:`FAMILIES`.
        arch (str | dict, optional): preset name, or an arch dict (the
            original's argument names are translated by
            :func:`mmrep_arch`); inferred when None.
        source (str, optional): ``'original'``, ``'mmpretrain'``,
            ``'timm'``, ``'mindcv'`` or ``'paddle'``; detected when None
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
    """
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    state = read_state_dict(src)
    detected = detect_checkpoint_source(src, state)
    if source is not None and source != detected:
        raise ConversionError(f'--source {source}, but ' +
                              _source_evidence(detected))
    if detected == 'mmpretrain' and family not in MMPRETRAIN_FAMILIES:
        raise ConversionError(f'mmpretrain has no {family} checkpoints')
    options = {}
    if detected in PORT_SOURCES:
        try:
            backbone_state, head = port_state_dict(detected, family, state)
        except CheckpointMismatchError as e:
            raise ConversionError(str(e)) from None
        options = port_options(detected, family)
    else:
        backbone_state, head = split_source(state, family)
    cls = FAMILIES[family]
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
                f'the weights do not fit {family} {arch!r}: '
                + describe_mismatch(backbone_state, expected))
    kwargs = backbone_kwargs(family, arch, backbone_state, deploy, options)
    meta = dict(family=family, arch=arch, source=detected, deploy=deploy,
                source_file=osp.basename(src), mmrep_version=__version__)
    if options:
        meta['port_options'] = dict(options)

    if backbone_only:
        with torch.device('meta'):
            backbone = cls(**kwargs)
        backbone.to_empty(device='cpu')
        unused = load_pretrained(backbone, backbone_state)
        if unused:  # nothing outside the backbone was passed in
            raise ConversionError(f'unconsumed keys: {unused[:8]}')
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
    source_state = dict(backbone_state)
    source_state.update({'head.' + k: v for k, v in head.items()})
    unused = load_pretrained(model, source_state)
    if unused:
        raise ConversionError(f'{len(unused)} keys fit no part of the '
                              f'classifier: {unused[:8]}')
    meta.update(num_classes=int(num_classes),
                model=classifier_cfg(family, kwargs, int(num_classes),
                                     int(in_channels)))
    return dict(state_dict=model.state_dict(), meta=meta)
