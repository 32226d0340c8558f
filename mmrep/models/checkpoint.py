"""Loading pretrained weights into mmrep backbones (and models using them).

One entry point, :func:`load_pretrained`, serves ``init_cfg=Pretrained``,
the tools and the tests. It accepts

* mmrep checkpoints (backbone-only or a whole segmentor / detector /
  classifier, keys under ``backbone.``),
* the original releases' state dicts, in train-time or fused form,
* mmpretrain checkpoints,

converts names through the backbone's ``convert_state_dict`` and the form
(train-time weights into a fused model are fused on load; a fused checkpoint
cannot go into a train-time model), and loads strictly: a checkpoint that
does not fit raises :class:`CheckpointMismatchError` naming the keys. Every
load logs one line with how many of the backbone's tensors came from the
checkpoint and how many kept their initialization, so weights that did not
load cannot go unnoticed.
"""
import os
from types import SimpleNamespace

import torch
from mmengine.logging import print_log

from ..utils.serialization import safe_load
from .layers.conv_bn import fuse_bn


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model it is loaded into."""


def read_state_dict(checkpoint, map_location='cpu'):
    """Read a checkpoint file (or take a dict) and return its state dict.

    Unwraps ``state_dict`` / ``model`` / ``module`` containers and strips
    DataParallel's ``module.`` prefix.

    Args:
        checkpoint (str | dict): a path, or an already loaded checkpoint.
        map_location (str): device for the tensors.

    Returns:
        dict[str, Tensor]: the state dict.
    """
    obj = checkpoint
    if isinstance(checkpoint, (str, os.PathLike)):
        obj = safe_load(checkpoint, map_location)
    if not isinstance(obj, dict):
        raise CheckpointMismatchError(
            f'a checkpoint must hold a dict of tensors, got '
            f'{type(obj).__name__}')
    for key in ('state_dict', 'model', 'module'):
        if key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    state = {}
    for k, v in obj.items():
        if not torch.is_tensor(v):
            continue
        state[k[len('module.'):] if k.startswith('module.') else k] = v
    if not state:
        raise CheckpointMismatchError('the checkpoint holds no tensors')
    return state


def describe_mismatch(state, expected, limit=8):
    """Say which keys and shapes differ between two state dicts."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f'{k}: checkpoint {tuple(state[k].shape)} vs model '
              f'{tuple(expected[k].shape)}' for k in expected
              if k in state and state[k].shape != expected[k].shape]
    parts = []
    for title, items in (('missing keys', missing),
                         ('unexpected keys', unexpected),
                         ('shape mismatches', shapes)):
        if items:
            more = f' (+{len(items) - limit} more)' if len(items) > limit else ''
            parts.append(f'{title} ({len(items)}): {items[:limit]}{more}')
    return '; '.join(parts)


def fold_bn_pairs(state, expected):
    """Fold ``P.bn.*`` into ``P.conv`` where the model has a biased conv.

    Original fused checkpoints keep conv-BN pairs that mmrep's fused form
    merges; this makes them fit.
    """
    state = dict(state)
    for key in [k for k in state if k.endswith('.bn.running_var')]:
        prefix = key[:-len('bn.running_var')]
        if (prefix + 'conv.bias' in expected
                and prefix + 'bn.weight' not in expected
                and prefix + 'conv.weight' in state):
            bn = SimpleNamespace(
                **{n: state.pop(prefix + 'bn.' + n)
                   for n in ('weight', 'bias', 'running_mean', 'running_var')},
                eps=1e-5)
            state.pop(prefix + 'bn.num_batches_tracked', None)
            bias = state.get(prefix + 'conv.bias')
            state[prefix + 'conv.weight'], state[prefix + 'conv.bias'] = \
                fuse_bn(state[prefix + 'conv.weight'], bn, bias)
    return state


def _fits(state, expected):
    return state.keys() == expected.keys() and all(
        state[k].shape == expected[k].shape for k in expected)


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


def _found(state, expected):
    """How many of ``expected``'s tensors ``state`` has, name and shape."""
    return sum(k in state and state[k].shape == v.shape
               for k, v in expected.items())


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
    if _fits(state, expected):
        return state
    adapt = getattr(backbone, 'adapt_state_dict', None)
    if adapt is not None:
        state = adapt(state)
        if _fits(state, expected):
            return state
    name = type(backbone).__name__
    forms = [expected]
    if getattr(backbone, 'deploy', False):
        folded = fold_bn_pairs(state, expected)
        if _fits(folded, expected):
            return folded
        twin = type(backbone)(**dict(backbone._build_args, deploy=False))
        twin_expected = twin.state_dict()
        forms.append(twin_expected)
        if _fits(state, twin_expected):
            print_log(f'{name}: fusing a train-time checkpoint into the '
                      f'deploy model', logger='current')
            twin.load_state_dict(state, strict=True)
            from ..deploy.walker import reparameterize_model  # TEMP(loading package merge)
            reparameterize_model(twin, inplace=True)
            return twin.state_dict()
    else:
        from ..deploy.walker import is_fused_state
        if is_fused_state(state, expected):
            raise CheckpointMismatchError(
                f'{name}: this checkpoint is in fused (deploy) form and cannot '
                f'be loaded into a train-time model; build the backbone with '
                f'deploy=True. ' + describe_mismatch(state, expected))
    # The form (train-time or fused) the checkpoint comes closest to.
    best = max(forms, key=lambda form: _found(state, form) / len(form))
    found = _found(state, best)
    what = (f'checkpoint does not fit {name}('
            f'{backbone._build_args.get("arch")!r}, '
            f'deploy={getattr(backbone, "deploy", False)})')
    if 2 * found < len(best):
        what = (f'{name}: the pretrained weights did not load: only {found} '
                f'of {len(best)} backbone tensors are in the checkpoint '
                f'(fewer than half: a checkpoint of another model, or keys '
                f'under another prefix?)')
    raise CheckpointMismatchError(f'{what}: ' + describe_mismatch(state, best))


def split_model_state(state):
    """Split a whole-model state dict into backbone weights and the rest."""
    if not any(k.startswith('backbone.') for k in state):
        return state, {}
    backbone = {k[len('backbone.'):]: v for k, v in state.items()
                if k.startswith('backbone.')}
    rest = {k: v for k, v in state.items() if not k.startswith('backbone.')}
    return backbone, rest


def report_loading(backbone, checkpoint, loaded, converted, before):
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

    Returns:
        tuple[int, int]: tensors loaded from the checkpoint, tensors that
        kept their initialization.
    """
    kept = [k for k, v in loaded.items()
            if k not in converted and v.data_ptr() == before.get(k)]
    source = checkpoint if isinstance(checkpoint, (str, os.PathLike)) \
        else 'a state dict'
    detail = f': {kept[:4]}' if kept else ''
    print_log(f'{type(backbone).__name__}: loaded {len(loaded) - len(kept)} '
              f'of {len(loaded)} backbone tensors from {source}; '
              f'{len(kept)} kept their initialization{detail}',
              logger='current')
    return len(loaded) - len(kept), len(kept)


def load_pretrained(module, checkpoint, prefix=None, map_location='cpu'):
    """Load a checkpoint into an mmrep backbone or a model that has one.

    Args:
        module (nn.Module): an mmrep backbone (with ``convert_state_dict``)
            or a model whose ``backbone`` is one (e.g. an mmpretrain
            ``ImageClassifier``; its head then receives the classifier
            weights of the checkpoint).
        checkpoint (str | dict): path or loaded checkpoint.
        prefix (str, optional): take only keys under this prefix (stripped).
        map_location (str): device for the loaded tensors.

    Returns:
        list[str]: checkpoint keys that were not used (e.g. a classifier head
        when loading a backbone), also logged.

    Raises:
        CheckpointMismatchError: the checkpoint does not fit.
    """
    state = read_state_dict(checkpoint, map_location)
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        state = {k[len(prefix):]: v for k, v in state.items()
                 if k.startswith(prefix)}
        if not state:
            raise CheckpointMismatchError(f'no key starts with {prefix!r}')
    backbone = getattr(module, 'backbone', module)
    if not hasattr(backbone, 'convert_state_dict'):
        raise TypeError(f'{type(backbone).__name__} is not an mmrep backbone')
    backbone_state, rest = split_model_state(state)
    backbone_state, head = backbone.convert_state_dict(backbone_state)
    for k, v in head.items():
        rest.setdefault('head.' + k, v)
    before = {k: v.data_ptr() for k, v in backbone.state_dict().items()}
    loaded = match_form(backbone, backbone_state)
    backbone.load_state_dict(loaded, strict=True)
    report_loading(backbone, checkpoint, loaded, backbone_state, before)
    unused = []
    if module is backbone:
        unused = sorted(rest)
    else:
        expected = {k: v for k, v in module.state_dict().items()
                    if not k.startswith('backbone.')}
        used = {k: v for k, v in rest.items() if k in expected}
        if not _fits(used, expected):
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


FORM_NAMES = {'config': 'as configured', 'deploy': 'in fused (deploy) form'}


def checkpoint_form(state, forms, meta=None, name='the checkpoint'):
    """Which form of a model a whole-model checkpoint fits exactly.

    Unlike :func:`load_pretrained`, nothing is converted or resampled:
    every key and shape must match, as for evaluating or resuming.

    Args:
        state (dict[str, Tensor]): the checkpoint's weights
            (:func:`read_state_dict`).
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
    for form, expected in forms.items():
        forms[form] = expected() if callable(expected) else expected
        if _fits(state, forms[form]):
            return form

    def shared(form):
        return len(state.keys() & forms[form].keys())
    claims_fused = 'deploy' in forms and (
        'deploy_config' in (meta or {}) or shared('deploy') > shared('config'))
    form = 'deploy' if claims_fused else 'config'
    raise CheckpointMismatchError(
        f'{name} does not fit the model {FORM_NAMES[form]}: '
        + describe_mismatch(state, forms[form], limit=3))


def load_state_strict(model, state):
    """Load whole-model weights that must fit ``model`` exactly.

    Args:
        model (nn.Module): the model (not a DDP wrapper).
        state (dict[str, Tensor]): its weights (:func:`read_state_dict`).

    Raises:
        CheckpointMismatchError: a key or shape differs; nothing is loaded.
    """
    expected = model.state_dict()
    if not _fits(state, expected):
        raise CheckpointMismatchError(
            f'the checkpoint does not fit {type(model).__name__}: '
            + describe_mismatch(state, expected, limit=3))
    model.load_state_dict(state, strict=True)


# TEMP(loading package merge)
from ..registry import CHECKPOINT_LOADERS  # noqa: E402
CHECKPOINT_LOADERS.register_module(name='pretrained', module=load_pretrained)
