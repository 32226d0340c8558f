"""What a backbone family knows about checkpoints, and the registry of
families.

Each family file (``repmlpnet.py``, ``repvgg.py``, ``repmlp_resnet.py``,
``cyclemlp.py``) ends with one :func:`register_family` call that declares,
next to the model:

* its sources (:class:`Source`): for each place its weights come from (the
  original release, mmpretrain, timm, MindCV, Paddle-CycleMLP), the key map
  into mmrep's names, how the source is told (by key names or by the file's
  framework), the translation of the source's constructor arguments and the
  backbone options its computation needs;
* its classifier settings, the keys only its train-time form has, where
  its image channels show, how its arch is read from weights' shapes, and
  the reconciliations a checkpoint may need before it fits.

``mmrep.checkpoints``, the tools and the tests list families from
:data:`CHECKPOINT_FAMILIES` and dispatch through :func:`family_of`; no other
module names a family's keys (``tests/project/test_layout.py`` checks this).
"""
import re
from dataclasses import dataclass, field
from typing import Callable, Optional

from ...utils.errors import ModelArgumentError


def _no_settings(backbone_state=None, num_stages=4):
    return {}


@dataclass(frozen=True)
class Source:
    """One place a family's weights come from, declared in the family's
    file: everything that tells, names and converts the source's weights.

    A source several families have (``original``, ``mmpretrain``,
    ``mindcv``) is declared in each with the same ``label``, ``priority``,
    ``port`` and ``framework`` (:func:`register_family` checks).

    Args:
        name (str): the ``--source`` name.
        to_mmrep (callable): the key map: the source's state dict (for a
            source that is no port, without any ``backbone.`` prefix) ->
            ``(backbone weights, head weights)``, mmrep's names (head:
            ``fc.weight`` / ``fc.bias``).
        from_kwargs (callable, optional): the source's constructor
            arguments -> ``(backbone constructor arguments with 'arch',
            number of classes or None)``.
        detect (callable, optional): ``state -> bool``, whether the key
            names are this source's (sources told by names).
        framework (str, optional): the file format the source's weights
            come in (``'mindspore'``, ``'paddle'``:
            :func:`mmrep.checkpoints.readers.framework_of`), which tells the
            source before any name does.
        options (dict): backbone options the source's computation needs
            (shapes do not show them; without them the backbone computes
            otherwise).
        key_marks (tuple[str]): key fragments only this source's
            checkpoints have.
        label (str, optional): how messages and the loading report name
            the source. Default: ``'original release'`` for ``original``,
            else ``name``.
        priority (int): sources told by names are tried from the highest
            priority down (timm's RepVGG names share mmpretrain's
            ``stem.`` prefix: timm's is higher). Default: 0.
        port (bool): the weights are laid out as the source's own model,
            not as the original's: they go through ``to_mmrep`` whole, and
            a family without this source refuses them. Default: False.
    """

    name: str
    to_mmrep: Callable
    from_kwargs: Optional[Callable] = None
    detect: Optional[Callable] = None
    framework: Optional[str] = None
    options: dict = field(default_factory=dict)
    key_marks: tuple = ()
    label: Optional[str] = None
    priority: int = 0
    port: bool = False

    def __post_init__(self):
        if self.label is None:
            object.__setattr__(self, 'label', 'original release'
                               if self.name == 'original' else self.name)
        told = self.detect is not None or self.framework is not None
        if told == (self.name == 'original'):
            raise ValueError(
                f'source {self.name!r}: the original release is the one '
                f'source told by nothing (every other needs detect or '
                f'framework)')

    def traits(self):
        """What every family's declaration of this source shares."""
        return (self.label, self.priority, self.port, self.framework)


@dataclass(frozen=True)
class CheckpointFamily:
    """A backbone family's checkpoint knowledge.

    Args:
        name (str): the ``--family`` name.
        model (type): the backbone class (its subclasses belong to it).
        display (str): a preset's display name, ``'{}'`` for the preset.
        sources (tuple[Source]): where its weights come from; ``original``
            first.
        train_only_markers (tuple[str]): key fragments only the train-time
            (unfused) form has.
        input_weights (tuple[str]): keys whose dim 1 is the image channels.
        classifier_kwargs (callable): ``(backbone_state=None,
            num_stages=4) -> dict``, backbone arguments of the family's
            ImageNet classifier (``backbone_state`` None: a preset's); the
            last stage as output is the default.
        read_arch (callable, optional): converted weights -> an arch dict
            read from their names and shapes (raises KeyError, ValueError or
            IndexError where the weights are not laid out as the family's).
        adapt (callable, optional): ``(backbone, state) -> state``,
            reconciles converted weights that do not fit as they are
            (another resolution, output norms).
        release_fused (callable, optional): ``state -> state``, folds what
            an original release's fused form keeps and mmrep's fused form
            does not (conv-BN pairs are folded for every family).
        preset_size (callable): preset name -> its ImageNet resolution.
    """

    name: str
    model: type
    display: str
    sources: tuple
    train_only_markers: tuple
    input_weights: tuple = ()
    classifier_kwargs: Callable = _no_settings
    read_arch: Optional[Callable] = None
    adapt: Optional[Callable] = None
    release_fused: Optional[Callable] = None
    preset_size: Callable = lambda arch: 224

    def source(self, name):
        """The family's :class:`Source` called ``name`` (None if it has
        none)."""
        for source in self.sources:
            if source.name == name:
                return source
        return None

    def source_names(self):
        """The names of the family's sources."""
        return tuple(s.name for s in self.sources)


#: ``--family`` name -> :class:`CheckpointFamily`, in registration order.
CHECKPOINT_FAMILIES = {}

#: ``--source`` name -> its first declaration, in registration order
#: (``original`` first): what tells and names a source, whichever family
#: declared it.
CHECKPOINT_SOURCES = {}


def register_family(family):
    """Add a family to :data:`CHECKPOINT_FAMILIES`.

    Args:
        family (CheckpointFamily): the declaration.

    Returns:
        CheckpointFamily: ``family``.

    Raises:
        ValueError: the name is taken, ``original`` is not a source, or a
            source's label, priority, port or framework differs from
            another family's declaration of it.
    """
    if family.name in CHECKPOINT_FAMILIES:
        raise ValueError(f'family {family.name!r} is registered already')
    if family.source('original') is None:
        raise ValueError(f'family {family.name!r} has no original source')
    for source in family.sources:
        known = CHECKPOINT_SOURCES.get(source.name)
        if known is not None and known.traits() != source.traits():
            raise ValueError(
                f'family {family.name!r} declares source {source.name!r} '
                f'as {source.traits()}, another family as {known.traits()}')
    CHECKPOINT_FAMILIES[family.name] = family
    for source in family.sources:
        CHECKPOINT_SOURCES.setdefault(source.name, source)
    return family


def family_of(backbone, required=False):
    """The family a backbone (instance or class) belongs to.

    Args:
        backbone (nn.Module | type): a backbone or its class.
        required (bool): raise for a class of no family instead of
            returning None.

    Returns:
        CheckpointFamily | None: None for a class of no family.

    Raises:
        TypeError: ``"<class> is not an mmrep backbone"`` (``required``).
    """
    cls = backbone if isinstance(backbone, type) else type(backbone)
    for family in CHECKPOINT_FAMILIES.values():
        if issubclass(cls, family.model):
            return family
    if required:
        raise TypeError(f'{cls.__name__} is not an mmrep backbone')
    return None


def get_family(name):
    """The family registered as ``name``.

    Raises:
        ModelArgumentError: ``"unknown family 'x'; one of [...]"``.
    """
    if name not in CHECKPOINT_FAMILIES:
        raise ModelArgumentError(f'unknown family {name!r}; one of '
                                 f'{sorted(CHECKPOINT_FAMILIES)}')
    return CHECKPOINT_FAMILIES[name]


# ---------------------------------------------------------------------------
# Pieces the families' key maps share.
# ---------------------------------------------------------------------------
def split_classifier(state, rename=None, head_prefixes=('linear.', 'head.'),
                     drop=()):
    """Split a classifier's state dict into backbone and head weights.

    A key under one of ``head_prefixes`` goes to the head as ``fc.*``
    (mmpretrain's ``head.fc.*`` stays ``fc.*``); every other key is the
    backbone's, renamed by ``rename``.

    Args:
        state (dict[str, Tensor]): classifier or backbone weights, without
            any ``backbone.`` prefix.
        rename (callable, optional): maps a backbone key to mmrep's name.
        head_prefixes (tuple[str]): the classifier's key prefixes.
        drop (tuple[str]): keys the source holds but never uses.

    Returns:
        tuple[dict, dict]: backbone weights and head weights (``fc.weight``,
        ``fc.bias``, mmpretrain's ``LinearClsHead`` names).
    """
    backbone, head = {}, {}
    for key, value in state.items():
        if key in drop:
            continue
        prefix = next((p for p in head_prefixes if key.startswith(p)), None)
        if prefix is None:
            backbone[rename(key) if rename else key] = value
        else:
            name = key[len(prefix):]
            head[name if name.startswith('fc.') else 'fc.' + name] = value
    return backbone, head


def rename_args(kwargs, names, dropped=()):
    """Translate a source's constructor arguments into mmrep's names.

    Args:
        kwargs (dict): the arguments (mmrep's own names pass through).
        names (dict[str, str]): the source's name -> mmrep's.
        dropped (tuple[str]): arguments that leave (the classifier's, the
            input pipeline's).

    Returns:
        dict: the translated arguments.

    Raises:
        ModelArgumentError: an argument given under both names.
    """
    out = dict(kwargs)
    for old, new in names.items():
        if old in out and old != new:
            if new in out:
                raise ModelArgumentError(
                    f'arch gives both {old!r} and {new!r}')
            out[new] = out.pop(old)
    for key in dropped:
        out.pop(key, None)
    return out


def renamer(renames):
    """A key map applying ``(old, new)`` pairs in order: ``str.replace`` for
    a string, ``re.sub`` for a compiled pattern."""
    def rename(key):
        for old, new in renames:
            key = old.sub(new, key) if hasattr(old, 'sub') \
                else key.replace(old, new)
        return key
    return rename


def has_key_prefix(state, prefixes):
    """Whether any key (a ``backbone.`` prefix ignored) starts with one of
    ``prefixes``."""
    return any(k[len('backbone.'):].startswith(prefixes)
               if k.startswith('backbone.') else k.startswith(prefixes)
               for k in state)


#: MindSpore BatchNorm tensor name -> PyTorch's.
MINDSPORE_BN_NAMES = {'gamma': 'weight', 'beta': 'bias',
                      'moving_mean': 'running_mean',
                      'moving_variance': 'running_var'}


def torch_bn_name(key):
    """A MindSpore BatchNorm tensor's key with PyTorch's last name.

    Args:
        key (str): e.g. ``'stages.0.0.prebn1.moving_mean'``.

    Returns:
        str: e.g. ``'stages.0.0.prebn1.running_mean'``; other keys as they
        are.
    """
    head, _, last = key.rpartition('.')
    if last not in MINDSPORE_BN_NAMES:
        return key
    return f'{head}.{MINDSPORE_BN_NAMES[last]}' if head else \
        MINDSPORE_BN_NAMES[last]


def indices(state, pattern):
    """The sorted ints the first group of ``pattern`` takes over the keys
    (``re.match``)."""
    found = set()
    for key in state:
        m = re.match(pattern, key)
        if m:
            found.add(int(m.group(1)))
    return sorted(found)
