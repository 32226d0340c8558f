"""What every mmrep backbone shares: the arch presets, the OpenMMLab
switches (``out_indices``, ``frozen_stages``, ``norm_eval``, ``with_cp``,
``deploy``, ``norm_cfg``, ``init_cfg``) and the backbone's own part of the
re-parameterization contract."""
import copy
import functools
import inspect
import numbers
import re

import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule

from ...registry import CHECKPOINT_LOADERS
from ...utils.errors import ModelArgumentError
from ..layers.reparam import Reparameterizable, has_unfused


def check_out_indices(out_indices, num_stages):
    """Validate ``out_indices`` and make negative ones positive.

    Raises:
        ModelArgumentError: an index outside ``[-num_stages, num_stages)``.
    """
    out_indices = tuple(out_indices)
    for i in out_indices:
        if not -num_stages <= i < num_stages:
            raise ModelArgumentError(
                f'out_indices {out_indices} out of range for '
                f'{num_stages} stages')
    return tuple(i % num_stages for i in out_indices)


def is_positive_int(value):
    """Whether ``value`` is an int (not a bool) above 0."""
    return isinstance(value, numbers.Integral) and \
        not isinstance(value, bool) and value > 0


def positive_int(what, value):
    """Check that ``value`` is one positive integer.

    Args:
        what (str): the argument as the message names it, e.g.
            ``'CycleMLP in_channels'``.
        value (int): the value.

    Returns:
        int: the value as an int.

    Raises:
        ModelArgumentError: ``"<what>=<value>: <value> is not a positive
            int"``.
    """
    if not is_positive_int(value):
        raise ModelArgumentError(
            f'{what}={value!r}: {value!r} is not a positive int')
    return int(value)


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
        ModelArgumentError: ``"<what>=<values>: <entry> is not a positive
            int"``.
    """
    items = values if isinstance(values, (list, tuple)) else [values]
    for v in items:
        if not is_positive_int(v) or (odd and v % 2 == 0):
            kind = 'a positive odd int' if odd else 'a positive int'
            raise ModelArgumentError(f'{what}={values!r}: {v!r} is not {kind}')
    return tuple(int(v) for v in items)


def record_build_args(init):
    """Decorate a backbone's ``__init__`` to record its arguments.

    The outermost decorated ``__init__`` stores its bound arguments
    (defaults applied, ``self`` and ``init_cfg`` left out) as
    ``self._build_args`` before it runs: the loader builds a train-time
    twin of a fused backbone from them (with ``deploy=False``), and
    :meth:`RepBackbone.fuse_own` sets their ``deploy``.

    Args:
        init (callable): the ``__init__`` to decorate.

    Returns:
        callable: the decorated ``__init__``.
    """
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        if '_build_args' not in self.__dict__:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            build_args = dict(bound.arguments)
            for name in ('self', 'init_cfg'):
                build_args.pop(name, None)
            self.__dict__['_build_args'] = copy.deepcopy(build_args)
        init(self, *args, **kwargs)

    return __init__


def _preset_key(name):
    return re.sub(r'[-_/ ]', '', name).upper()


class RepBackbone(Reparameterizable, BaseModule):
    """Base class of mmrep backbones.

    A family sets :attr:`arch_zoo` (preset name -> settings, plain data),
    :attr:`arch_keys` (the required settings, one entry per stage; the first
    gives the number of stages) and :attr:`arch_defaults` (the optional
    ones), validates a settings dict in :meth:`check_arch`, lists its modules
    by stage in :meth:`stem_and_stages`, and calls ``super().__init__`` with
    the switches below before building its layers.

    A family passes its ``in_channels`` on (checked here, as every family's
    other arguments are checked at construction, not at the first forward).
    A family's ``__init__`` is decorated with :func:`record_build_args`
    (its arguments, for the loader's train-time twin of a fused backbone)
    and ends with ``self._freeze_stages()`` (the stages named by
    ``frozen_stages``, once built).

    Args:
        arch (str | dict): a preset name of :attr:`arch_zoo`
            (case-insensitive; separators and the family prefix optional) or
            a settings dict.
        out_indices (Sequence[int]): stages whose outputs are returned.
        frozen_stages (int): as mmseg's and mmdet's ResNet: -1 freezes
            nothing, 0 the stem, ``n`` the stem and the first ``n`` stages
            (frozen modules stay in eval mode and get no gradients).
        norm_eval (bool): keep the norm layers of :attr:`norm_eval_types` in
            eval mode while training.
        with_cp (bool): gradient checkpointing of each block
            (:meth:`run_block`).
        deploy (bool): build the fused (re-parameterized) form.
        norm_cfg (dict | None): config of the BatchNorms (mmcv
            ``build_norm_layer``).
        init_cfg (dict, optional): ``dict(type='Pretrained',
            checkpoint=...)`` goes through mmrep's checkpoint loader.
        in_channels (int): image channels, a positive int. Default: 3.

    Raises:
        ModelArgumentError: ``in_channels`` is not a positive int
            (``"<family> in_channels=0: 0 is not a positive int"``), or what
            :meth:`parse_arch` and :func:`check_out_indices` refuse.
    """

    arch_zoo = {}
    arch_keys = ()
    arch_defaults = {}
    arch_prefixes = ()  # preset name prefixes besides the class name
    norm_eval_types = (nn.modules.batchnorm._BatchNorm, )

    def __init__(self, arch, out_indices=(0, 1, 2, 3), frozen_stages=-1,
                 norm_eval=False, with_cp=False, deploy=False,
                 norm_cfg=dict(type='BN'), init_cfg=None, in_channels=3):
        super().__init__(init_cfg=init_cfg)
        self.in_channels = positive_int(f'{type(self).__name__} in_channels',
                                        in_channels)
        self.arch = self.parse_arch(arch)
        self.num_stages = len(self.arch[self.arch_keys[0]])
        self.out_indices = check_out_indices(out_indices, self.num_stages)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.deploy = deploy
        self.norm_cfg = copy.deepcopy(norm_cfg)
        # Fused (deploy) weights switch it to its fused form before they
        # load (mmrep.deploy.fused_loading.switch_to_fused_form).
        self._register_load_state_dict_pre_hook(
            CHECKPOINT_LOADERS.get('fused_form'), with_module=True)

    @classmethod
    def arch_settings_of(cls, arch):
        """A complete copy of a preset's settings or of an arch dict.

        Args:
            arch (str | dict): a preset name or a settings dict.

        Returns:
            dict: :attr:`arch_defaults` updated with the settings.

        Raises:
            ModelArgumentError: unknown preset, neither a name nor a dict,
                unknown or missing keys, or per-stage settings of different
                (or zero) lengths.
        """
        family = cls.__name__
        if isinstance(arch, str):
            key = _preset_key(arch)
            for prefix in map(_preset_key, (family, *cls.arch_prefixes)):
                if key.startswith(prefix) and key != prefix:
                    key = key[len(prefix):]
                    break
            names = {_preset_key(k): k for k in cls.arch_zoo}
            if key not in names:
                raise ModelArgumentError(
                    f'unknown {family} arch {arch!r}; presets: '
                    f'{sorted(cls.arch_zoo)}')
            arch = cls.arch_zoo[names[key]]
        if not isinstance(arch, dict):
            raise ModelArgumentError(
                f'arch must be a preset name or a dict, got '
                f'{type(arch).__name__}')
        unknown = set(arch) - set(cls.arch_keys) - set(cls.arch_defaults)
        missing = set(cls.arch_keys) - set(arch)
        if unknown or missing:
            raise ModelArgumentError(
                f'malformed {family} arch dict: unknown keys '
                f'{sorted(unknown)}, missing keys {sorted(missing)}; '
                f'expected {sorted(cls.arch_keys)} plus optional '
                f'{sorted(cls.arch_defaults)}')
        lengths = {k: len(arch[k]) for k in cls.arch_keys}
        if len(set(lengths.values())) != 1 or not lengths[cls.arch_keys[0]]:
            raise ModelArgumentError(
                f'{family} arch per-stage settings differ in '
                f'length or are empty: it needs one '
                f'{" and ".join(cls.arch_keys)} entry per stage, '
                f'got lengths {lengths}')
        return copy.deepcopy({**cls.arch_defaults, **arch})

    @classmethod
    def parse_arch(cls, arch):
        """The complete, validated settings of a preset name or arch dict
        (:meth:`arch_settings_of`, then :meth:`check_arch`).

        Args:
            arch (str | dict): a preset name or a settings dict.

        Returns:
            dict: the settings the backbone is built from.
        """
        return cls.check_arch(cls.arch_settings_of(arch))

    @classmethod
    def check_arch(cls, arch):
        """Validate and normalize complete settings; the family's own rules.

        Args:
            arch (dict): from :meth:`arch_settings_of`.

        Returns:
            dict: the settings, normalized.
        """
        return arch

    def run_block(self, block, x):
        """``block(x)``, gradient-checkpointed when ``with_cp`` is set and
        ``x`` needs gradients."""
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(block, x, use_reentrant=False)
        return block(x)

    def unused_state_prefixes(self):
        """Key prefixes of modules that this backbone keeps but never
        applies; a checkpoint may lack their tensors (they keep their
        initialization). Default: none.

        Returns:
            tuple[str]: state-dict key prefixes.
        """
        return ()

    def forward(self, x):
        """Return the stage outputs selected by ``out_indices``.

        The default layout (RepVGG, RepMLP-Res50, as the original releases
        name it): a stem ``stage0``, then stages ``stage1`` ..
        ``stage{num_stages}`` of blocks; a family with another layout
        overrides this and :meth:`stem_and_stages`.

        Args:
            x (Tensor): images ``(N, C, H, W)`` of any size.

        Returns:
            tuple[Tensor]: NCHW maps of the stages in ``out_indices``.
        """
        x = self.run_block(self.stage0, x)
        outs = []
        for i in range(self.num_stages):
            for block in getattr(self, f'stage{i + 1}'):
                x = self.run_block(block, x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def stem_and_stages(self):
        """Return ``(stem, [stage_1, stage_2, ...])`` as module lists, each
        stage with the downsampling layer that starts it (default layout:
        see :meth:`forward`)."""
        return [self.stage0], [[getattr(self, f'stage{i + 1}')]
                               for i in range(self.num_stages)]

    def _freeze_stages(self):
        if self.frozen_stages < 0:
            return
        stem, stages = self.stem_and_stages()
        if self.frozen_stages > len(stages):
            raise ModelArgumentError(
                f'frozen_stages={self.frozen_stages} but the '
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
                if isinstance(m, self.norm_eval_types):
                    m.eval()
        return self

    @property
    def deploy(self):
        """Whether the backbone is in its fused form: built with
        ``deploy=True``, switched by :meth:`reparameterize` (or
        ``switch_to_deploy()``), or with every block fused by a walk that
        never calls the backbone itself (timm's ``reparameterize_model`` on
        a bare backbone)."""
        found, unfused = has_unfused(self)
        return self._deploy or (found and not unfused)

    @deploy.setter
    def deploy(self, value):
        self._deploy = bool(value)

    def fuse_own(self):
        """The backbone's own step of the switch to the fused form, after
        every block has fused itself (:meth:`reparameterize`): it records
        the form, also in the build arguments (a copy then builds fused);
        the fused layers of frozen stages are frozen as the layers they
        replace were (:func:`~mmrep.models.layers.fused_conv`).
        """
        self.deploy = True
        self._build_args['deploy'] = True

    def init_weights(self):
        """``init_cfg=dict(type='Pretrained', checkpoint=...)`` goes through
        mmrep's checkpoint loader (:func:`mmrep.checkpoints.load_pretrained`),
        which converts original and mmpretrain checkpoints; other init
        configs go to mmengine."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            load = CHECKPOINT_LOADERS.get('pretrained')
            load(self, cfg['checkpoint'], prefix=cfg.get('prefix', None),
                 map_location=cfg.get('map_location', 'cpu'))
            self._is_init = True
            return
        super().init_weights()
