"""The versions of the OpenMMLab libraries mmrep works with, checked when
mmrep is imported.

The ranges here are the ones ``requirements/*.txt`` declare (a test keeps
them equal). Installed versions are read from the distributions' metadata,
without importing the libraries, so that a library whose own import would
fail (mmseg 1.2.2 asserts on mmcv >= 2.2) is still named in one line.
"""
import logging
from importlib.metadata import PackageNotFoundError, version

from packaging.version import InvalidVersion, Version

#: Libraries mmrep cannot import without: module -> (distributions that
#: provide it, lowest supported version, first unsupported version).
REQUIRED = {
    'mmengine': (('mmengine', 'mmengine-lite'), '0.10.7', '1.0.0'),
    'mmcv': (('mmcv', 'mmcv-lite'), '2.1.0', '2.2.0'),
}

#: Libraries whose configs mmrep serves; what needs them is disabled when
#: they are installed at a version outside the range or fail to import.
OPTIONAL = {
    'mmseg': (('mmsegmentation', ), '1.2.2', '1.3.0'),
    'mmdet': (('mmdet', ), '3.3.0', '3.4.0'),
    'mmpretrain': (('mmpretrain', ), '1.2.0', '1.3.0'),
}


class IncompatibleVersionError(ImportError):
    """A library mmrep needs is missing or installed at a version outside
    the supported range.

    Raised by ``import mmrep`` itself, before any tool runs and before
    :mod:`mmrep.utils` (which imports torch and mmengine) may be imported,
    so it is no :class:`~mmrep.utils.MmrepError`: it stops the import with
    an ``ImportError`` traceback that names the versions.
    """


def installed_version(distributions):
    """The installed version of the first of ``distributions`` present.

    Args:
        distributions (tuple[str]): distribution names, e.g.
            ``('mmcv', 'mmcv-lite')``.

    Returns:
        str | None: the version, or ``None`` when none is installed.
    """
    for name in distributions:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def supported_range(module):
    """The supported versions of a library, as pip writes them.

    Args:
        module (str): a key of :data:`REQUIRED` or :data:`OPTIONAL`.

    Returns:
        str: e.g. ``'mmcv>=2.1.0,<2.2.0'``.
    """
    distributions, low, high = {**REQUIRED, **OPTIONAL}[module]
    return f'{distributions[0]}>={low},<{high}'


def version_problem(module, installed=None):
    """Why a library's installed version does not suit mmrep.

    Args:
        module (str): a key of :data:`REQUIRED` or :data:`OPTIONAL`.
        installed (str, optional): the version to judge; by default the
            installed one.

    Returns:
        str | None: one line naming the installed and the supported
        versions, or ``None`` when the version is supported.
    """
    distributions, low, high = {**REQUIRED, **OPTIONAL}[module]
    if installed is None:
        installed = installed_version(distributions)
    wanted = supported_range(module)
    if installed is None:
        return f'mmrep needs {wanted}; {distributions[0]} is not installed'
    try:
        release = Version(Version(installed).base_version)
    except InvalidVersion:
        return (f'mmrep needs {wanted}; the installed {distributions[0]} '
                f'has a version it cannot read: {installed}')
    if not Version(low) <= release < Version(high):
        return (f'mmrep needs {wanted}; {distributions[0]} {installed} is '
                f'installed')
    return None


def check_required_versions():
    """Check mmengine's and mmcv's versions.

    Raises:
        IncompatibleVersionError: one of them is missing or outside its
            range; the message is one line naming the installed and the
            supported versions.
    """
    for module in REQUIRED:
        problem = version_problem(module)
        if problem:
            raise IncompatibleVersionError(problem)


#: Optional libraries found unusable, with the line logged for each.
_DISABLED = {}


def optional_library(module, needed_for):
    """Whether an optional library can be used, logging once when it is
    installed but cannot.

    A library that is not installed is silently absent. One that is
    installed at an unsupported version, or whose import fails (its own
    version checks, a broken build), disables ``needed_for`` with one
    warning in mmengine's current logger.

    Args:
        module (str): a key of :data:`OPTIONAL` (``'mmseg'``, ...).
        needed_for (str): what mmrep disables without it, for the message.

    Returns:
        bool: True when the library is installed, in range, and imports.
    """
    distributions = OPTIONAL[module][0]
    if module in _DISABLED:
        return False
    if installed_version(distributions) is None:
        return False
    problem = version_problem(module)
    if problem is None:
        try:
            __import__(module)
        except Exception as e:  # noqa: BLE001  its own checks, any kind
            first = str(e).strip().splitlines()[0] if str(e).strip() else ''
            problem = (f'{distributions[0]} fails to import '
                       f'({type(e).__name__}: {first})')
    if problem is None:
        return True
    _DISABLED[module] = f'{problem}: {needed_for} disabled'
    from mmengine.logging import print_log
    print_log(_DISABLED[module], logger='current', level=logging.WARNING)
    return False
