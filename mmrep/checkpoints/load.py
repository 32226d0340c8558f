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

from mmengine.logging import print_log

from ..deploy.walker import reparameterize_model
from ..registry import CHECKPOINT_LOADERS
from ..utils.serialization import CheckpointMismatchError
from .convert import (adapt_state_dict, convert_state_dict, family_of,
                      release_fused_form)
from .forms import (count_found, describe_mismatch, fold_bn_pairs,
                    is_fused_state, same_layout)
from .io import read_state_dict, split_model_state
from .ports import (PORT_SOURCES, SOURCE_LABELS, detect_checkpoint_source,
                    port_options, port_state_dict)


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


def match_form(backbone, state):
    """Bring ``state`` (mmrep names) to the backbone's train/fused form.

    Args:
        backbone (nn.Module): an mmrep backbone with ``deploy`` and
            ``_build_args``.
        state (dict[str, Tensor]): converted backbone weights.

    Returns:
        dict[str, Tensor]: weights that load strictly into ``backbone``.

    Raises:
        CheckpointMismatchError: the weights do not fit either form.
    """
    expected = backbone.state_dict()
    state = fill_unused(backbone, state, expected)
    if same_layout(state, expected):
        return state
    adapted = adapt_state_dict(backbone, state)
    if adapted is not None:
        state = adapted
        if same_layout(state, expected):
            return state
    name = type(backbone).__name__
    forms = [expected]
    if getattr(backbone, 'deploy', False):
        folded = fold_bn_pairs(state, expected)
        if same_layout(folded, expected):
            return folded
        twin = train_time_twin(backbone)
        twin_expected = twin.state_dict()
        forms.append(twin_expected)
        if same_layout(state, twin_expected):
            print_log(f'{name}: fusing a train-time checkpoint into the '
                      f'deploy model', logger='current')
            twin.load_state_dict(state, strict=True)
            return reparameterize_model(twin, inplace=True).state_dict()
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
        source (str, optional): the port the weights come from (a key of
            :data:`~mmrep.checkpoints.ports.SOURCE_LABELS`), named after the
            file.

    Returns:
        tuple[int, int]: tensors loaded from the checkpoint, tensors that
        kept their initialization.
    """
    kept = [k for k, v in loaded.items()
            if k not in converted and v.data_ptr() == before.get(k)]
    where = checkpoint if isinstance(checkpoint, (str, os.PathLike)) \
        else 'a state dict'
    if source is not None:
        where = f'{where} ({SOURCE_LABELS[source]})'
    detail = f': {kept[:4]}' if kept else ''
    print_log(f'{type(backbone).__name__}: loaded {len(loaded) - len(kept)} '
              f'of {len(loaded)} backbone tensors from {where}; '
              f'{len(kept)} kept their initialization{detail}',
              logger='current')
    return len(loaded) - len(kept), len(kept)


def warn_port_options(backbone, source, family, checkpoint):
    """Log one warning line where the backbone lacks options a port's
    computation needs (MindCV RepMLPNet's tanh GELU, floor rounding and
    partition order); the model is left as it is.

    Returns:
        dict: the options that differ (name -> the port's value).
    """
    args = getattr(backbone, '_build_args', {})
    differ = {k: v for k, v in port_options(source, family).items()
              if args.get(k) != v}
    if differ:
        where = checkpoint if isinstance(checkpoint, (str, os.PathLike)) \
            else 'the checkpoint'
        wanted = ', '.join(f'{k}={v!r}' for k, v in differ.items())
        print_log(f'{type(backbone).__name__}: {where} holds '
                  f'{SOURCE_LABELS[source]} weights; set {wanted} on the '
                  f'backbone to reproduce the {SOURCE_LABELS[source]} '
                  f'model (this one computes otherwise)', logger='current',
                  level=logging.WARNING)
    return differ


@CHECKPOINT_LOADERS.register_module(name='pretrained')
def load_pretrained(module, checkpoint, prefix=None, map_location='cpu'):
    """Load any supported checkpoint into an mmrep backbone or a model that
    has one.

    Supported: mmrep checkpoints (a bare backbone's, or a whole model's with
    the backbone under ``backbone.``), the original releases' (train-time or
    fused) and mmpretrain's; the backbone may be in train-time or deploy
    form (train-time weights are fused on load).

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
    backbone = getattr(module, 'backbone', module)
    family = family_of(backbone, required=True).name
    source = detect_checkpoint_source(checkpoint, state)
    if source in PORT_SOURCES:
        backbone_state, head = port_state_dict(source, family, state)
        rest = {}
        warn_port_options(backbone, source, family, checkpoint)
    else:
        source = None
        backbone_state, rest = split_model_state(state)
        backbone_state, head = convert_state_dict(backbone, backbone_state)
    for k, v in head.items():
        rest.setdefault('head.' + k, v)
    before = {k: v.data_ptr() for k, v in backbone.state_dict().items()}
    loaded = match_form(backbone, backbone_state)
    backbone.load_state_dict(loaded, strict=True)
    report_loading(backbone, checkpoint, loaded, backbone_state, before,
                   source)
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
    mmrep's fused form folds). Weights built for another resolution do not
    fit: nothing is resampled.

    Args:
        state (dict[str, Tensor]): converted backbone weights
            (:func:`~mmrep.checkpoints.convert.convert_state_dict`).
        backbone (nn.Module): the backbone (on any device, meta included).

    Returns:
        bool: whether the weights fit.
    """
    expected = backbone.state_dict()
    if same_layout(state, expected):
        return True
    if not getattr(backbone, 'deploy', False):
        return False
    from_release = release_fused_form(backbone, state)
    return same_layout(from_release, expected)
