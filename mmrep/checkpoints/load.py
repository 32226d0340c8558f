"""Loading pretrained weights into mmrep backbones (and models using them).

One entry point, :func:`load_pretrained`, serves ``init_cfg=Pretrained``
(registered in :data:`mmrep.registry.CHECKPOINT_LOADERS` as
``'pretrained'``), the tools and the tests. It accepts

* mmrep checkpoints (backbone-only or a whole segmentor / detector /
  classifier, keys under ``backbone.``),
* the original releases' state dicts, in train-time or fused form,
* mmpretrain checkpoints,
* the ports' checkpoints: MindCV's RepMLPNet and RepVGG (MindSpore
  ``.ckpt``), Paddle-CycleMLP (``.pdparams``) and timm's RepVGG (``.pth`` /
  ``.safetensors``), told by :func:`~mmrep.checkpoints.ports.
  detect_checkpoint_source` and mapped by the family files' key maps,

converts names per family (:func:`~mmrep.checkpoints.convert.
convert_state_dict`) and the form (train-time weights into a fused model
are fused on load; a fused checkpoint cannot go into a train-time model),
and loads strictly: a checkpoint that does not fit raises
:class:`CheckpointMismatchError` naming the keys. Every load logs one line
with how many of the backbone's tensors came from the checkpoint and how
many kept their initialization, so weights that did not load cannot go
unnoticed.
"""
import logging
import os
from typing import NamedTuple

from mmengine.logging import print_log

from ..deploy.walker import reparameterize_model
from ..registry import CHECKPOINT_LOADERS
from ..utils.serialization import CheckpointMismatchError
from .convert import (adapt_state_dict, family_of, names_source,
                      release_fused_form)
from .forms import (classify, count_found, describe_mismatch,
                    is_fused_state, same_layout)
from .io import read_state_dict, split_model_state
from .ports import detect_checkpoint_source, get_source, port_state_dict


def fill_unused(backbone, state, expected):
    """Give the tensors of modules the backbone never applies (its
    ``unused_state_prefixes()``, e.g. RepMLPNet's ``head_norm`` without
    ``final_norm``) their current values where the checkpoint lacks them, so
    a checkpoint saved without such a module loads.

    Args:
        backbone (nn.Module): an mmrep backbone.
        state (dict[str, Tensor]): converted backbone weights.
        expected (dict[str, Tensor]): the backbone's state dict.

    Returns:
        dict[str, Tensor]: ``state``, completed.
    """
    prefixes = tuple(backbone.unused_state_prefixes())
    missing = [k for k in expected if k.startswith(prefixes)
               and k not in state] if prefixes else []
    return {**state, **{k: expected[k] for k in missing}} if missing \
        else state


def train_time_twin(backbone):
    """A train-time (``deploy=False``) backbone built like ``backbone``.

    Args:
        backbone (nn.Module): an mmrep backbone with ``_build_args``.

    Returns:
        nn.Module: a new backbone of the same class and arguments.
    """
    return type(backbone)(**dict(backbone._build_args, deploy=False))


def backbone_form(backbone, state, resample=True, fuse=True):
    """Which form of a backbone converted weights fit, told by
    :func:`~mmrep.checkpoints.forms.classify`, and the weights in it.

    The forms, in the order tried: the weights as they are (with the
    tensors of modules the backbone never applies filled in,
    :func:`fill_unused`); reconciled by the family's ``adapt``
    (resolution transfer, a fused RepMLPNet's kept ``prebn2``, CycleMLP's
    output norms); and, for a fused (``deploy``) backbone, the original
    releases' fused form (:func:`~mmrep.checkpoints.convert.
    release_fused_form`) and the train-time form, whose weights are loaded
    into a train-time twin and fused.

    Args:
        backbone (nn.Module): an mmrep backbone with ``deploy`` and
            ``_build_args`` (any device, ``meta`` included, unless the
            train-time form is fused).
        state (dict[str, Tensor]): converted backbone weights.
        resample (bool): offer the reconciled form. Default: True.
        fuse (bool): offer the train-time form of a fused backbone.
            Default: True.

    Returns:
        tuple[str | None, dict]: ``'as built'``, ``'reconciled'``,
        ``'release fused'`` or ``'train-time'``, and weights that load
        strictly into ``backbone``; where no form fits, None and the
        reconciled weights (what the error message compares).
    """
    expected = backbone.state_dict()
    state = fill_unused(backbone, state, expected)
    twin, memo = [], []

    def reconciled(weights):  # adapted once: the family's adapt logs
        if not memo:
            adapted = adapt_state_dict(backbone, weights) if resample \
                else None
            memo.append(weights if adapted is None else adapted)
        return memo[0]

    def twin_state():
        twin.append(train_time_twin(backbone))
        return twin[0].state_dict()
    forms = {'as built': expected, 'reconciled': (expected, reconciled)}
    if getattr(backbone, 'deploy', False):
        forms['release fused'] = (expected, lambda weights: release_fused_form(
            backbone, reconciled(weights)))
        if fuse:
            forms['train-time'] = (twin_state, reconciled)
    found = classify(state, forms)
    if found is None:
        return None, reconciled(state)
    if found[0] != 'train-time':
        return found
    print_log(f'{type(backbone).__name__}: fusing a train-time checkpoint '
              f'into the deploy model', logger='current')
    twin[0].load_state_dict(found[1], strict=True)
    return 'train-time', reparameterize_model(twin[0],
                                              inplace=True).state_dict()


def match_form(backbone, state):
    """Bring ``state`` (mmrep names) to the backbone's train/fused form
    (:func:`backbone_form`).

    Args:
        backbone (nn.Module): an mmrep backbone with ``deploy`` and
            ``_build_args``.
        state (dict[str, Tensor]): converted backbone weights.

    Returns:
        dict[str, Tensor]: weights that load strictly into ``backbone``.

    Raises:
        CheckpointMismatchError: the weights do not fit either form.
    """
    form, state = backbone_form(backbone, state)
    if form is not None:
        return state
    expected = backbone.state_dict()
    name = type(backbone).__name__
    forms = [expected]
    if getattr(backbone, 'deploy', False):
        forms.append(train_time_twin(backbone).state_dict())
    elif is_fused_state(state, expected):
        raise CheckpointMismatchError(
            f'{name}: this checkpoint is in fused (deploy) form and cannot '
            f'be loaded into a train-time model; build the backbone with '
            f'deploy=True. ' + describe_mismatch(state, expected))
    # The form (train-time or fused) the checkpoint comes closest to.
    best = max(forms, key=lambda form: count_found(state, form) / len(form))
    found = count_found(state, best)
    what = (f'checkpoint does not fit {name}('
            f'{backbone._build_args.get("arch")!r}, '
            f'deploy={getattr(backbone, "deploy", False)})')
    if 2 * found < len(best):
        what = (f'{name}: the pretrained weights did not load: only {found} '
                f'of {len(best)} backbone tensors are in the checkpoint '
                f'(fewer than half: a checkpoint of another model, or keys '
                f'under another prefix?)')
    raise CheckpointMismatchError(f'{what}: ' + describe_mismatch(state, best))


def report_loading(backbone, checkpoint, loaded, converted, before,
                   source=None):
    """Log how many of the backbone's tensors came from the checkpoint.

    A tensor kept its initialization when the loader filled it with the
    model's own value (e.g. CycleMLP's per-output norms, which a
    classification checkpoint lacks).

    Args:
        backbone (nn.Module): the backbone that was loaded.
        checkpoint (str | dict): the checkpoint, named in the line.
        loaded (dict[str, Tensor]): the state dict that was loaded.
        converted (dict[str, Tensor]): the checkpoint's converted weights.
        before (dict[str, int]): data pointers of the backbone's tensors
            before loading.
        source (Source, optional): the port the weights come from, named
            after the file.

    Returns:
        tuple[int, int]: tensors loaded from the checkpoint, tensors that
        kept their initialization.
    """
    kept = [k for k, v in loaded.items()
            if k not in converted and v.data_ptr() == before.get(k)]
    where = checkpoint if isinstance(checkpoint, (str, os.PathLike)) \
        else 'a state dict'
    if source is not None:
        where = f'{where} ({source.label})'
    detail = f': {kept[:4]}' if kept else ''
    print_log(f'{type(backbone).__name__}: loaded {len(loaded) - len(kept)} '
              f'of {len(loaded)} backbone tensors from {where}; '
              f'{len(kept)} kept their initialization{detail}',
              logger='current')
    return len(loaded) - len(kept), len(kept)


def warn_port_options(backbone, source, checkpoint):
    """Log one warning line where the backbone lacks options a port's
    computation needs (MindCV RepMLPNet's tanh GELU, floor rounding and
    partition order); the model is left as it is.

    Args:
        backbone (nn.Module): the mmrep backbone.
        source (Source): the family's declaration of the port.
        checkpoint (str | dict): the checkpoint, named in the line.

    Returns:
        dict: the options that differ (name -> the port's value).
    """
    args = getattr(backbone, '_build_args', {})
    differ = {k: v for k, v in source.options.items() if args.get(k) != v}
    if differ:
        where = checkpoint if isinstance(checkpoint, (str, os.PathLike)) \
            else 'the checkpoint'
        wanted = ', '.join(f'{k}={v!r}' for k, v in differ.items())
        print_log(f'{type(backbone).__name__}: {where} holds '
                  f'{source.label} weights; set {wanted} on the '
                  f'backbone to reproduce the {source.label} '
                  f'model (this one computes otherwise)', logger='current',
                  level=logging.WARNING)
    return differ


class ConvertedWeights(NamedTuple):
    """A checkpoint's weights in mmrep's names (:func:`convert_weights`).

    Attributes:
        detected (str): the source the checkpoint was told to be
            (:func:`~mmrep.checkpoints.ports.detect_checkpoint_source`).
        source (Source): the family's source whose key map converted it
            (a port's, or for weights laid out as the original's the one
            their names tell, :func:`~mmrep.checkpoints.convert.
            names_source`).
        backbone (dict[str, Tensor]): backbone weights, no prefix.
        rest (dict[str, Tensor]): every other key, the classifier's as
            ``head.fc.weight`` / ``head.fc.bias``.
    """
    detected: str
    source: object
    backbone: dict
    rest: dict


def convert_weights(family, state, checkpoint=None, detected=None):
    """Tell a checkpoint's source and convert its weights to mmrep's names:
    the one conversion path of :func:`load_pretrained` and
    :func:`~mmrep.checkpoints.conversion.convert`.

    Args:
        family (CheckpointFamily): the backbone's family.
        state (dict[str, Tensor]): the checkpoint's weights.
        checkpoint (str | dict, optional): the file (its framework tells a
            port's weights) or the loaded checkpoint.
        detected (str, optional): the source, where the caller told it
            already (:func:`~mmrep.checkpoints.ports.
            detect_checkpoint_source`).

    Returns:
        ConvertedWeights: the source and the converted weights.

    Raises:
        CheckpointMismatchError: a port's checkpoint of another family, or
            weights the port's key map refuses.
    """
    if detected is None:
        detected = detect_checkpoint_source(
            state if checkpoint is None else checkpoint, state)
    if get_source(detected).port:
        backbone, head = port_state_dict(detected, family, state)
        rest, source = {}, family.source(detected)
    else:
        backbone, rest = split_model_state(state)
        source = names_source(family, backbone)
        backbone, head = source.to_mmrep(backbone)
    rest = dict(rest)
    for k, v in head.items():
        rest.setdefault('head.' + k, v)
    return ConvertedWeights(detected, source, backbone, rest)


def load_converted(module, weights, checkpoint):
    """Load converted weights into an mmrep backbone or a model holding
    one: the backbone in its form (:func:`match_form`), the rest strictly
    where the model has it.

    Args:
        module (nn.Module): an mmrep backbone, or a model whose
            ``backbone`` is one.
        weights (ConvertedWeights): from :func:`convert_weights`.
        checkpoint (str | dict): the checkpoint, named in the log.

    Returns:
        list[str]: keys that were not used, also logged.

    Raises:
        CheckpointMismatchError: the weights do not fit.
    """
    backbone = getattr(module, 'backbone', module)
    port = weights.source if weights.source.port else None
    if port is not None:
        warn_port_options(backbone, port, checkpoint)
    before = {k: v.data_ptr() for k, v in backbone.state_dict().items()}
    loaded = match_form(backbone, weights.backbone)
    backbone.load_state_dict(loaded, strict=True)
    report_loading(backbone, checkpoint, loaded, weights.backbone, before,
                   port)
    rest = weights.rest
    unused = []
    if module is backbone:
        unused = sorted(rest)
    else:
        expected = {k: v for k, v in module.state_dict().items()
                    if not k.startswith('backbone.')}
        used = {k: v for k, v in rest.items() if k in expected}
        if not same_layout(used, expected):
            raise CheckpointMismatchError(
                f'checkpoint does not fit the rest of '
                f'{type(module).__name__}: '
                + describe_mismatch(used, expected))
        module.load_state_dict(used, strict=False)
        unused = sorted(set(rest) - set(used))
    if unused:
        print_log(f'{type(backbone).__name__}: ignored {len(unused)} '
                  f'checkpoint keys outside the backbone (e.g. {unused[:3]})',
                  logger='current')
    return unused


@CHECKPOINT_LOADERS.register_module(name='pretrained')
def load_pretrained(module, checkpoint, prefix=None, map_location='cpu'):
    """Load any supported checkpoint into an mmrep backbone or a model that
    has one.

    Supported: mmrep checkpoints (a bare backbone's, or a whole model's with
    the backbone under ``backbone.``), the original releases' (train-time or
    fused), mmpretrain's and the ports'; the backbone may be in train-time
    or deploy form (train-time weights are fused on load).

    Args:
        module (nn.Module): an mmrep backbone, or a model whose ``backbone``
            is one (e.g. an mmpretrain ``ImageClassifier``; its head then
            receives the classifier weights of the checkpoint).
        checkpoint (str | dict): path or loaded checkpoint.
        prefix (str, optional): take only keys under this prefix (stripped).
        map_location (str): device for the loaded tensors.

    Returns:
        list[str]: checkpoint keys that were not used (e.g. a classifier head
        when loading a backbone), also logged.

    Raises:
        CheckpointMismatchError: the checkpoint does not fit.
        TypeError: ``module`` neither is nor holds an mmrep backbone.
    """
    state = read_state_dict(checkpoint, map_location)
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        state = {k[len(prefix):]: v for k, v in state.items()
                 if k.startswith(prefix)}
        if not state:
            raise CheckpointMismatchError(f'no key starts with {prefix!r}')
    family = family_of(getattr(module, 'backbone', module), required=True)
    weights = convert_weights(family, state, checkpoint)
    return load_converted(module, weights, checkpoint)


def load_state_strict(model, state):
    """Load whole-model weights that must fit ``model`` exactly.

    Args:
        model (nn.Module): the model (not a DDP wrapper).
        state (dict[str, Tensor]): its weights (:func:`read_state_dict`).

    Raises:
        CheckpointMismatchError: a key or shape differs; nothing is loaded.
    """
    expected = model.state_dict()
    if not same_layout(state, expected):
        raise CheckpointMismatchError(
            f'the checkpoint does not fit {type(model).__name__}: '
            + describe_mismatch(state, expected, limit=3))
    model.load_state_dict(state, strict=True)


def fits_backbone(state, backbone):
    """Whether converted weights fit a backbone by names and shapes, as they
    are or in the fused form of the original releases (their fused
    checkpoints keep conv-BN pairs, and RepMLPNet's ``prebn2``, that
    mmrep's fused form folds): :func:`backbone_form` without resampling or
    fusing.

    Args:
        state (dict[str, Tensor]): converted backbone weights
            (:func:`convert_weights`).
        backbone (nn.Module): the backbone (on any device, meta included).

    Returns:
        bool: whether the weights fit.
    """
    return backbone_form(backbone, state, resample=False,
                         fuse=False)[0] is not None
