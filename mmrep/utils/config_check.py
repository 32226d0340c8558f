"""Config checks shared by the tools.

A config that names ``type='mmrep.*'`` modules builds only where :mod:`mmrep`
has been imported. mmrep's own tools import it, but mmseg's, mmdet's and
mmpretrain's tools (and any other runner) import it only through the
config's ``custom_imports``; a config without it would work here and fail
elsewhere, so the tools refuse it up front.
"""

CUSTOM_IMPORTS_HINT = ("custom_imports = dict(imports=['mmrep'], "
                       'allow_failed_imports=False)')


class MissingCustomImportsError(ValueError):
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
