"""What every mmrep backbone shares: pretrained loading, frozen stages,
``norm_eval`` and the ``reparameterize()`` protocol."""
import numbers
import re

import torch.nn as nn
from mmengine.model import BaseModule

from ...registry import CHECKPOINT_LOADERS


def check_out_indices(out_indices, num_stages):
    """Validate ``out_indices`` and make negative ones positive.

    Raises:
        ValueError: an index outside ``[-num_stages, num_stages)``.
    """
    out_indices = tuple(out_indices)
    for i in out_indices:
        if not -num_stages <= i < num_stages:
            raise ValueError(f'out_indices {out_indices} out of range for '
                             f'{num_stages} stages')
    return tuple(i % num_stages for i in out_indices)


def is_positive_int(value):
    """Whether ``value`` is an int (not a bool) above 0."""
    return isinstance(value, numbers.Integral) and \
        not isinstance(value, bool) and value > 0


def positive_ints(what, values, odd=False):
    """Check that every entry of ``values`` is a positive (odd) integer.

    Args:
        what (str): the argument as the message names it, e.g.
            ``"RepMLPNet arch['channels']"``.
        values (int | Sequence[int]): the value(s).
        odd (bool): require odd values too. Default: False.

    Returns:
        tuple[int]: the values as ints.

    Raises:
        ValueError: ``"<what>=<values>: <entry> is not a positive int"``.
    """
    items = values if isinstance(values, (list, tuple)) else [values]
    for v in items:
        if not is_positive_int(v) or (odd and v % 2 == 0):
            kind = 'a positive odd int' if odd else 'a positive int'
            raise ValueError(f'{what}={values!r}: {v!r} is not {kind}')
    return tuple(int(v) for v in items)


def arch_settings_of(arch, presets, family, renames=None, ignored=(),
                     prefixes=None):
    """A copy of a preset's settings, or of an arch dict, with the original
    releases' argument names mapped to mmrep's.

    Preset names match case-insensitively, with or without the family prefix
    and separators (``'T224'``, ``'RepMLPNet-T224'``, ``'CycleMLP_B1'``,
    ``'repmlp-res50-bottleneck-224-g4/8'``).

    Args:
        arch (str | dict): a preset name or a settings dict.
        presets (dict): the family's ``arch_settings``.
        family (str): the family's name, also its optional prefix.
        renames (dict, optional): original argument name -> mmrep's.
        ignored (Sequence[str]): original arguments that belong elsewhere
            (e.g. ``num_classes``) and are dropped.
        prefixes (Sequence[str], optional): the optional name prefixes;
            default: ``family``.

    Returns:
        dict: the settings, to be validated by the family's ``parse_arch``.

    Raises:
        ValueError: unknown preset, neither a name nor a dict, or an
            argument given under both its names.
    """
    if isinstance(arch, str):
        def norm(name):
            return re.sub(r'[-_/ ]', '', name).upper()

        key = norm(arch)
        for prefix in map(norm, prefixes or (family, )):
            if key.startswith(prefix) and key != prefix:
                key = key[len(prefix):]
                break
        names = {norm(k): k for k in presets}
        if key not in names:
            raise ValueError(f'unknown {family} arch {arch!r}; presets: '
                             f'{sorted(presets)}')
        arch = presets[names[key]]
    if not isinstance(arch, dict):
        raise ValueError(f'arch must be a preset name or a dict, got '
                         f'{type(arch).__name__}')
    arch = dict(arch)
    for old, new in (renames or {}).items():
        if old in arch:
            if new in arch:
                raise ValueError(f'arch gives both {old!r} and {new!r}')
            arch[new] = arch.pop(old)
    for key in ignored:
        arch.pop(key, None)
    return arch


def complete_arch(arch, family, per_stage, defaults, same_length=True):
    """Check an arch dict's keys and fill in the defaults.

    Args:
        arch (dict): settings from :func:`arch_settings_of`.
        family (str): the family's name, for messages.
        per_stage (Sequence[str]): required per-stage settings.
        defaults (dict): optional settings and their defaults.
        same_length (bool): require the per-stage settings to have one,
            equal, non-zero length. Default: True.

    Returns:
        dict: ``defaults`` updated with ``arch``.

    Raises:
        ValueError: unknown or missing keys, or per-stage settings of
            different (or zero) lengths.
    """
    unknown = set(arch) - set(per_stage) - set(defaults)
    missing = set(per_stage) - set(arch)
    if unknown or missing:
        raise ValueError(
            f'malformed {family} arch dict: unknown keys {sorted(unknown)}, '
            f'missing keys {sorted(missing)}; expected {sorted(per_stage)} '
            f'plus optional {sorted(defaults)}')
    if same_length:
        lengths = {k: len(arch[k]) for k in per_stage}
        if len(set(lengths.values())) != 1 or not lengths[per_stage[0]]:
            raise ValueError(f'arch per-stage settings differ in length or '
                             f'are empty: {lengths}')
    out = dict(defaults)
    out.update(arch)
    return out


class RepBackbone(BaseModule):
    """Base class of mmrep backbones.

    Subclasses set ``self.frozen_stages``, ``self.norm_eval`` and
    ``self._build_args`` (the constructor's arguments, used to build a
    train-time twin when a train-time checkpoint is loaded into a fused
    model), implement :meth:`stem_and_stages`, and call
    :meth:`_freeze_stages` at the end of ``__init__``.

    ``frozen_stages`` follows mmseg's and mmdet's ResNet: -1 freezes
    nothing, 0 the stem, ``n`` the stem and the first ``n`` stages (frozen
    modules stay in eval mode and get no gradients).
    """

    def unused_state_prefixes(self):
        """Key prefixes of modules that this backbone keeps but never
        applies; a checkpoint may lack their tensors (they keep their
        initialization). Default: none.

        Returns:
            tuple[str]: state-dict key prefixes.
        """
        return ()

    def stem_and_stages(self):
        """Return ``(stem, [stage_1, stage_2, ...])`` as module lists, each
        stage with the downsampling layer that starts it."""
        raise NotImplementedError

    def _freeze_stages(self):
        if self.frozen_stages < 0:
            return
        stem, stages = self.stem_and_stages()
        if self.frozen_stages > len(stages):
            raise ValueError(f'frozen_stages={self.frozen_stages} but the '
                             f'backbone has {len(stages)} stages')
        for module in [*stem, *[m for s in stages[:self.frozen_stages]
                                for m in s]]:
            module.eval()
            for p in module.parameters():
                p.requires_grad = False

    def train(self, mode=True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def reparameterize(self):
        """Fuse every re-parameterizable submodule in place (eval-mode
        equivalent); the backbone then builds and loads as ``deploy=True``."""
        for m in self.modules():
            if m is not self and callable(getattr(m, 'reparameterize', None)):
                m.reparameterize()
        self.deploy = True
        self._build_args['deploy'] = True
        self._freeze_stages()  # the fused layers are new parameters

    def init_weights(self):
        """``init_cfg=dict(type='Pretrained', checkpoint=...)`` goes through
        the ``'pretrained'`` loader of :data:`mmrep.registry.
        CHECKPOINT_LOADERS` (:func:`mmrep.checkpoints.load_pretrained`,
        which converts original and mmpretrain checkpoints); other init
        configs go to mmengine."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            load_pretrained = CHECKPOINT_LOADERS.get('pretrained')
            load_pretrained(self, cfg['checkpoint'],
                            prefix=cfg.get('prefix', None),
                            map_location=cfg.get('map_location', 'cpu'))
            self._is_init = True
            return
        super().init_weights()
