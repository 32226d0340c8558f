"""The re-parameterization protocol.

A module that has a fused (deploy) form is a
:class:`~mmrep.models.layers.Reparameterizable`: its ``reparameterize()``
(alias ``switch_to_deploy()``) switches it and its unfused descendants to
the fused form in place, so any library's walk gives the same model.
:func:`reparameterize_model` walks any model (a bare backbone, or a
segmentor, detector or classifier holding one) and calls it on every such
module, children before their parents (each call then finds its
descendants fused and takes only its own step); then it folds the
BatchNorm of every mmcv ``ConvModule`` outside the backbone whose norm
directly follows its convolution (the necks and heads of mmseg and mmdet
models), and turns mmseg's ``UPerHead`` into its deploy form
(:mod:`mmrep.deploy.heads`). The deploy hook, ``tools/reparam.py``,
``tools/export_onnx.py`` and the tests all go through it.
"""
import copy

import torch
import torch.nn as nn
from mmengine.model import revert_sync_batchnorm

from ..utils import MmrepError
from .heads import deploy_heads


class NonFiniteWeightsError(MmrepError, ValueError):
    """A module to be fused holds NaN or Inf values."""


def fusable_modules(model):
    """The modules :func:`reparameterize_model` fuses, children before their
    parents.

    Args:
        model (nn.Module): any model.

    Returns:
        list[tuple[str, nn.Module]]: ``(qualified name, module)`` pairs of
        the modules with a callable ``reparameterize``, in the order they
        are fused (reversed pre-order: every module after all of its
        descendants).
    """
    return [(name, module) for name, module in
            reversed(list(model.named_modules()))
            if callable(getattr(module, 'reparameterize', None))]


def outermost(named_modules):
    """The entries of ``named_modules`` not inside another entry."""
    names = [name for name, _ in named_modules]
    return [(name, module) for name, module in named_modules
            if not any(name.startswith(f'{other}.') or (other == '' and name)
                       for other in names if other != name)]


def foldable_conv_modules(model):
    """The mmcv ``ConvModule`` s whose BatchNorm :func:`fold_conv_bn` folds.

    A ``ConvModule`` qualifies when its norm comes right after its
    ``nn.Conv2d`` (``order`` ``('conv', 'norm', ...)``) and is a BatchNorm or
    SyncBatchNorm with running statistics (eval semantics: a BN without them
    normalizes by batch statistics, which no weight can hold). Modules with
    their own ``reparameterize()`` and the model's ``backbone`` are left out:
    mmrep backbones fuse themselves, and other backbones keep the structure
    their config describes.

    Args:
        model (nn.Module): any model.

    Returns:
        list[tuple[str, ConvModule]]: ``(qualified name, module)`` pairs.
    """
    try:
        from mmcv.cnn import ConvModule
    except ImportError:  # no mmcv: no ConvModule to fold
        return []
    if callable(getattr(model, 'reparameterize', None)):
        return []  # an mmrep module: it fuses itself
    found = []
    pending = [(n, m) for n, m in model.named_children() if n != 'backbone']
    while pending:
        name, module = pending.pop()
        if callable(getattr(module, 'reparameterize', None)):
            continue
        if isinstance(module, ConvModule) and _bn_follows_conv(module):
            found.append((name, module))
            continue
        pending.extend((f'{name}.{n}', m) for n, m in module.named_children())
    return sorted(found, key=lambda item: item[0])


def _bn_follows_conv(module):
    """Whether a ``ConvModule`` applies a foldable BN right after its conv."""
    order = list(module.order)
    norm = module.norm if module.with_norm else None
    return (order.index('norm') == order.index('conv') + 1
            and isinstance(module.conv, nn.Conv2d)
            and isinstance(norm, nn.modules.batchnorm._BatchNorm)
            and norm.affine and norm.track_running_stats
            and norm.running_var is not None)


def fold_conv_bn(module):
    """Fold a ``ConvModule``'s BN into its conv (mmcv's ``fuse_conv_bn``).

    Afterwards the module is what ``ConvModule(..., norm_cfg=None)`` builds:
    the conv has a bias and there is no norm layer.

    Args:
        module (ConvModule): a module :func:`foldable_conv_modules` lists.
    """
    from mmcv.cnn import fuse_conv_bn
    fuse_conv_bn(module)  # leaves an nn.Identity where the BN was
    delattr(module, module.norm_name)
    module.norm_name = None
    module.with_norm = False


def check_finite(named_modules, when='before fusion'):
    """Raise if a floating-point tensor of the given modules is not finite.

    Args:
        named_modules (list[tuple[str, nn.Module]]): modules to check, with
            their qualified names.
        when (str): said in the message.

    Raises:
        NonFiniteWeightsError: names the first offending tensor (and how many
            there are), with its count of NaN and Inf values.
    """
    state = {f'{prefix}.{key}' if prefix else key: tensor
             for prefix, module in named_modules
             for key, tensor in module.state_dict(keep_vars=True).items()}
    consequence = ('refusing to fuse (the fused weights would be '
                   'NaN/Inf too)') if when == 'before fusion' else \
        'the fused model is unusable (is a BN running_var negative?)'
    check_finite_state(state, when, consequence)


def check_finite_state(state, when, consequence):
    """Raise if a floating-point tensor of a state dict is not finite: the
    one check of NaN and Inf weights (fusion, and the tools that evaluate,
    export or measure a checkpoint).

    Args:
        state (Mapping[str, Tensor]): the tensors, by name (other values
            and meta tensors are skipped).
        when (str): where the tensors are, said in the message (e.g.
            ``'before fusion'``, ``'in work/iter_8.pth'``).
        consequence (str): what is refused, said after the tensor.

    Raises:
        NonFiniteWeightsError: ``'non-finite weights <when>: <name>
            <shape> has N NaN and M Inf values[ (and K more tensors)];
            <consequence>'``, naming the first offending tensor.
    """
    bad = []
    for name, tensor in state.items():
        if not torch.is_tensor(tensor) or tensor.is_meta or \
                not torch.is_floating_point(tensor):
            continue  # meta tensors: shapes only, nothing to check
        t = tensor.detach()
        if bool(torch.isfinite(t).all()):  # one pass for the usual case
            continue
        nan, inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
        bad.append(f'{name} {tuple(t.shape)} has {nan} NaN and {inf} Inf '
                   f'values')
    if bad:
        more = f' (and {len(bad) - 1} more tensors)' if len(bad) > 1 else ''
        raise NonFiniteWeightsError(
            f'non-finite weights {when}: {bad[0]}{more}; {consequence}')


def reparameterize_model(model, inplace=False):
    """Fuse every re-parameterizable module of ``model`` and fold the
    conv + BN pairs of its necks and heads.

    mmrep modules switch to their deploy form (``reparameterize()``); every
    mmcv ``ConvModule`` outside the backbone whose BatchNorm (or
    SyncBatchNorm) directly follows its convolution gets the BN folded into
    the conv (:func:`foldable_conv_modules`); an mmseg ``UPerHead`` becomes
    :class:`~mmrep.deploy.heads.DeployUPerHead` (same weights). Every
    tensor of the modules to fuse is checked first: NaN or Inf raises
    :class:`NonFiniteWeightsError` before anything is changed. The fused
    weights are checked as well (a negative BN ``running_var`` turns into
    NaN); then the error is raised after fusing, and with ``inplace=True``
    the model is left fused.

    Args:
        model (nn.Module): any model.
        inplace (bool): fuse ``model`` itself; otherwise a deep copy is
            fused and ``model`` is left untouched. Default: False.

    Returns:
        nn.Module: the fused model, in eval mode, with any SyncBatchNorm
        that remains unfused turned into a plain BatchNorm (mmengine's
        ``revert_sync_batchnorm``; same parameters and statistics).

    Raises:
        NonFiniteWeightsError: a weight or buffer to fuse, or a fused
            weight, is NaN or Inf; the message names the tensor.
    """
    check_finite(outermost(fusable_modules(model)) +
                 foldable_conv_modules(model))
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    targets = fusable_modules(model)
    folded = foldable_conv_modules(model)
    with torch.no_grad():
        for _, module in folded:
            fold_conv_bn(module)
        for _, module in targets:
            module.reparameterize()
    deploy_heads(model)
    check_finite(outermost(targets) + folded, when='after fusion')
    # A SyncBN-trained model fuses to the same model as a BN-trained one:
    # the BNs that stay (RepMLPNet's prebn1, head_norm) become plain BNs.
    return revert_sync_batchnorm(model)

