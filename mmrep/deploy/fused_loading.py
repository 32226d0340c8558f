"""Fused (deploy) weights load into the train-time model of their config.

The fused files mmrep writes (``ReparamCheckpointHook``'s
``<checkpoint>_deploy.pth``, ``tools/reparam.py``'s output, converted fused
classifiers) hold the state dict of :func:`~mmrep.deploy.walker.
reparameterize_model`'s result: mmrep modules in their fused form and, in
a whole model, the BatchNorms of necks and heads folded into their
convolutions. Loaded non-strictly into the train-time model (mmengine's
``load_checkpoint``, and through it mmseg's ``init_model``, mmdet's
``init_detector``, mmpretrain's ``init_model`` and the inferencers), such
weights would leave every fused tensor unused and every train-time tensor
at its initialization: a different model, with only a printed warning.

:func:`switch_to_fused_form` is a ``load_state_dict`` pre-hook (torch's
``_register_load_state_dict_pre_hook``) that prevents this. Before a module
loads, it compares the keys and shapes under its prefix with its own state
dict; when they differ and equal exactly those of its fused form (worked
out on a copy on the meta device: no memory, no arithmetic; told by
:func:`~mmrep.utils.state_layout.classify`, as every form is), it switches
the module in place with :func:`~mmrep.deploy.walker.reparameterize_model`
(the step the deploy tools take), logs one line, and the weights then load
into the fused structure. Any other mismatch is left to the loader, and
so is a module whose fused form cannot be worked out.

It is registered

* by every mmrep backbone for itself (``RepBackbone.__init__``, through
  :data:`mmrep.registry.CHECKPOINT_LOADERS` as ``'fused_form'``: the
  backbones are a lower layer than this package), for a backbone's own
  fused weights, and
* where a config opts in (``custom_imports`` naming
  :mod:`mmrep.deploy.autoswitch`, which calls :func:`watch_parents`), on
  every module that receives an mmrep backbone at any depth (the segmentor,
  detector or classifier, and a wrapper around it), so a whole fused model
  switches at once, necks and heads included: their folded
  ``ConvModule`` s and mmseg's ``UPerHead`` (its deploy form) are what
  :func:`~mmrep.deploy.walker.reparameterize_model` makes of them.

A fused form that cannot be worked out is an error, not a silent load of
the weights into the wrong structure.
"""
import copy
import itertools

import torch
import torch.nn as nn
from mmengine.logging import print_log
from torch.nn.modules.module import register_module_module_registration_hook

from ..models.backbones.base import RepBackbone
from ..registry import CHECKPOINT_LOADERS
from ..utils.state_layout import classify
from .walker import reparameterize_model

__all__ = ['switch_to_fused_form', 'fused_state', 'meta_copy',
           'watch_parents', 'stop_watching_parents']

#: Set on a module once :func:`watch_parents` registered the pre-hook.
_WATCHED = '_mmrep_fused_form_hook'


def meta_copy(module):
    """A deep copy of ``module`` whose parameters and buffers are on the
    meta device (shapes and dtypes only; nothing is allocated or copied).

    Args:
        module (nn.Module): any module.

    Returns:
        nn.Module: the copy.
    """
    memo = {}
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        empty = torch.empty_like(tensor, device='meta')
        memo[id(tensor)] = nn.Parameter(empty, tensor.requires_grad) \
            if isinstance(tensor, nn.Parameter) else empty
    return copy.deepcopy(module, memo)


def tensors(state):
    """The tensors of a state dict (``extra_state`` entries left out)."""
    return {k: v for k, v in state.items() if torch.is_tensor(v)}


def fused_state(module):
    """The state dict of ``module``'s fused form, on the meta device (names
    and shapes; nothing allocated).

    Args:
        module (nn.Module): an mmrep backbone, or a model holding one.

    Returns:
        dict[str, Tensor]: what :func:`~mmrep.deploy.walker.
        reparameterize_model` makes of it.
    """
    return reparameterize_model(meta_copy(module), inplace=True).state_dict()


@CHECKPOINT_LOADERS.register_module(name='fused_form')
def switch_to_fused_form(module, state_dict, prefix, local_metadata, strict,
                         missing_keys, unexpected_keys, error_msgs):
    """``load_state_dict`` pre-hook: switch ``module`` to its fused form
    when the weights under ``prefix`` are exactly those of that form.

    Registered with ``with_module=True`` (torch passes the module first);
    the other arguments are those of ``nn.Module._load_from_state_dict``.
    Weights that fit the module as it is, or fit neither form, leave it
    unchanged. The switch keeps the module's train or eval mode and logs
    one line.

    Args:
        module (nn.Module): the module about to load.
        state_dict (dict[str, Tensor]): the weights (its keys under
            ``prefix`` are the module's).
        prefix (str): the module's key prefix (``''`` at the root).
        local_metadata, strict, missing_keys, unexpected_keys, error_msgs:
            unused.
    """
    state = tensors({k[len(prefix):]: v for k, v in state_dict.items()
                     if k.startswith(prefix)})
    found = classify(state, {
        'config': tensors(module.state_dict()),
        'deploy': lambda: tensors(fused_state(module))}) if state else None
    if found is None or found[0] != 'deploy':
        return
    training = module.training
    reparameterize_model(module, inplace=True)
    module.train(training)
    where = f' ({prefix[:-1]})' if prefix else ''
    print_log(f'{type(module).__name__}{where}: the weights are in fused '
              f'(deploy) form; switched it to its fused form before '
              f'loading them', logger='current')


def _holds_backbone(module):
    """Whether ``module`` is an mmrep backbone or watched (holds one)."""
    return isinstance(module, RepBackbone) or \
        module.__dict__.get(_WATCHED, False)


def _register_on_parent(parent, name, child):
    """Global module-registration hook (see :func:`watch_parents`): a
    module that receives an mmrep backbone, or a module holding one, is
    watched too, so the hook climbs as a model is assembled (a backbone in
    a ``ModuleList``, a segmentor in a test-time wrapper)."""
    if child is not None and _holds_backbone(child) and \
            not isinstance(parent, RepBackbone) and \
            not parent.__dict__.get(_WATCHED, False):
        parent._register_load_state_dict_pre_hook(switch_to_fused_form,
                                                  with_module=True)
        parent.__dict__[_WATCHED] = True
    return None


_HANDLE = None


def watch_parents():
    """Make every module that receives an mmrep backbone at any depth (a
    segmentor, detector or classifier, and wrappers, as they build)
    register :func:`switch_to_fused_form` for itself, so the whole model's
    fused weights switch the whole model.

    Installs one global torch module-registration hook
    (``torch.nn.modules.module.register_module_module_registration_hook``),
    once; importing :mod:`mmrep.deploy.autoswitch` calls this (``import
    mmrep`` does not).

    Returns:
        torch.utils.hooks.RemovableHandle: the hook's handle.
    """
    global _HANDLE
    if _HANDLE is None:
        _HANDLE = register_module_module_registration_hook(
            _register_on_parent)
    return _HANDLE


def stop_watching_parents():
    """Remove the hook :func:`watch_parents` installed (models built before
    keep their pre-hooks).

    Returns:
        bool: whether a hook was installed.
    """
    global _HANDLE
    if _HANDLE is None:
        return False
    _HANDLE.remove()
    _HANDLE = None
    return True
