"""Config checks shared by the tools.

A config that names ``type='mmrep.*'`` modules builds only where :mod:`mmrep`
has been imported. mmrep's own tools import it, but mmseg's, mmdet's and
mmpretrain's tools (and any other runner) import it only through the
config's ``custom_imports``; a config without it would work here and fail
elsewhere, so the tools refuse it up front. The tools also build the
config's model once on the meta device and read the checkpoints it
initializes from before they create anything.
"""
import copy
import re

from .errors import MmrepError, builtin_name
from .serialization import safe_load

CUSTOM_IMPORTS_HINT = ("custom_imports = dict(imports=['mmrep'], "
                       'allow_failed_imports=False)')


class MissingCustomImportsError(MmrepError, ValueError):
    """A config uses ``mmrep.*`` types but does not import :mod:`mmrep`."""


def mmrep_types(node, path='', found=None):
    """List the ``type='mmrep.*'`` entries of a (nested) config.

    Args:
        node (dict | list | tuple | object): a config or part of one.
        path (str): the dotted location of ``node``, used in the result.
        found (list, optional): list to append to.

    Returns:
        list[tuple[str, str]]: ``(location, type)`` pairs, e.g.
        ``('model.backbone', 'mmrep.RepMLPNet')``.
    """
    found = [] if found is None else found
    if isinstance(node, dict):
        kind = node.get('type')
        if isinstance(kind, str) and kind.startswith('mmrep.'):
            found.append((path or '<root>', kind))
        for key, value in node.items():
            mmrep_types(value, f'{path}.{key}' if path else str(key), found)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            mmrep_types(value, f'{path}[{i}]', found)
    return found


def imports_mmrep(cfg):
    """Whether ``cfg.custom_imports`` imports :mod:`mmrep` (or a submodule).

    Args:
        cfg (dict | mmengine.Config): the config.

    Returns:
        bool: True when ``custom_imports.imports`` names ``mmrep`` or
        ``mmrep.<something>``.
    """
    custom = cfg.get('custom_imports') if hasattr(cfg, 'get') else None
    if not custom:
        return False
    imports = custom.get('imports', []) if hasattr(custom, 'get') else []
    if isinstance(imports, str):
        imports = [imports]
    return any(isinstance(m, str) and (m == 'mmrep' or m.startswith('mmrep.'))
               for m in imports)


def check_custom_imports(cfg, name='the config'):
    """Refuse a config that uses ``mmrep.*`` types without importing mmrep.

    Args:
        cfg (dict | mmengine.Config): the config (after command-line
            overrides).
        name (str): how to call the config in the message (its path).

    Raises:
        MissingCustomImportsError: ``cfg`` names ``mmrep.*`` types and its
            ``custom_imports`` does not import ``mmrep``. The message names
            the first such type and the line to add.
    """
    if imports_mmrep(cfg):
        return
    data = cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)
    found = mmrep_types(data)
    if not found:
        return
    # The model's entries first: they are what fails to build.
    found.sort(key=lambda item: not item[0].startswith('model'))
    where, kind = found[0]
    more = f' (and {len(found) - 1} more)' if len(found) > 1 else ''
    raise MissingCustomImportsError(
        f'{name} uses {kind!r} at {where}{more} but has no custom_imports '
        f'for mmrep, so the mmrep modules are not registered outside '
        f"mmrep's own tools; add\n    {CUSTOM_IMPORTS_HINT}\nto the config")


class ModelConfigError(MmrepError, ValueError):
    """A config's model cannot be built, or a checkpoint it names to
    initialize from cannot be read."""


_BUILD_CONTEXT = re.compile(r'class `\w+` in [\w/.\\-]+\.py: ')


def model_config(cfg):
    """``cfg.model`` as the runner builds it: with the top-level
    ``data_preprocessor`` merged in when the model has none.

    Args:
        cfg (mmengine.Config): the config.

    Returns:
        ConfigDict: the model config (a copy; a ConfigDict, as the runner
        passes it: mmdet's detectors read ``train_cfg.rpn`` as attributes).
    """
    from mmengine.config import ConfigDict
    model = ConfigDict(copy.deepcopy(cfg.model))
    if cfg.get('data_preprocessor') is not None:
        model.setdefault('data_preprocessor',
                         copy.deepcopy(cfg.data_preprocessor))
    return model


def build_model_state(cfg, name='the config'):
    """Build the config's model without allocating its weights and return
    its state dict (names and shapes; tensors on the meta device).

    Every argument of every module is checked by its constructor, so a bad
    ``arch`` or ``partition_sizes`` is refused here, before a runner
    creates anything. Modules that cannot be built on the meta device are
    built on the CPU instead.

    Args:
        cfg (mmengine.Config): the config.
        name (str): how to call the config in messages (its path).

    Returns:
        dict[str, Tensor]: the model's state dict.

    Raises:
        ModelConfigError: the model cannot be built; the message names the
            innermost error (e.g. ``ValueError: unknown RepMLPNet arch``).
    """
    import torch
    from mmengine.registry import MODELS, DefaultScope
    model = model_config(cfg)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        try:
            with torch.device('meta'):
                return MODELS.build(copy.deepcopy(model)).state_dict()
        except Exception:  # noqa: BLE001  retried on the CPU below
            pass
        try:
            return MODELS.build(model).state_dict()
        except Exception as e:  # noqa: BLE001  any constructor error
            detail = _BUILD_CONTEXT.sub('', str(e)).strip()
            raise ModelConfigError(
                f'cannot build the model of {name}: {builtin_name(e)}: '
                f'{detail}') from e


def pretrained_checkpoints(node, found=None):
    """Local checkpoint files a model config initializes from.

    Args:
        node (dict | list | object): a model config or part of one.
        found (list, optional): list to append to.

    Returns:
        list[str]: the ``checkpoint`` of every ``init_cfg`` of type
        ``'Pretrained'`` and every string ``pretrained``, except URLs
        (``scheme://...``), which mmengine downloads.
    """
    found = [] if found is None else found
    if isinstance(node, dict):
        init = node.get('init_cfg')
        for cfg in init if isinstance(init, (list, tuple)) else [init]:
            if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
                found.append(cfg.get('checkpoint'))
        found.append(node.get('pretrained'))
        for value in node.values():
            pretrained_checkpoints(value, found)
    elif isinstance(node, (list, tuple)):
        for value in node:
            pretrained_checkpoints(value, found)
    return [p for p in dict.fromkeys(found)
            if isinstance(p, str) and p and '://' not in p]


def check_model_config(cfg, name='the config'):
    """Refuse a config whose model cannot be built or initialized.

    Builds the model on the meta device (:func:`build_model_state`) and
    reads every local checkpoint its ``init_cfg`` names with
    :func:`~mmrep.utils.safe_load`: a run that would fail there fails here,
    before a runner creates its work dir.

    Args:
        cfg (mmengine.Config): the config (after command-line overrides).
        name (str): how to call the config in messages (its path).

    Returns:
        dict[str, Tensor]: the model's state dict (meta tensors).

    Raises:
        ModelConfigError: the model cannot be built.
        FileNotFoundError: an ``init_cfg`` checkpoint does not exist.
        CheckpointLoadError: one is truncated, corrupt or unsafe.
    """
    state = build_model_state(cfg, name)
    for path in pretrained_checkpoints(model_config(cfg)):
        safe_load(path)
    return state
