"""How the command-line tools refuse an input: one ``error:`` line.

Every tool answers an input it cannot use (a missing file, a checkpoint
that cannot be read safely or does not fit, a config that does not read or
build, a config without ``custom_imports``, a model argument that cannot
build, arguments that argparse cannot check) the same way, before it
writes anything: a single line ``error: <message>`` on stderr and exit
status 1. The checks raise an :class:`~mmrep.utils.MmrepError` (every
refusal class of mmrep inherits it beside its builtin base), or a builtin
error of :data:`REFUSED`; :func:`refusals_as_errors` turns them into that
line (``SystemExit`` with a string prints it to stderr and exits 1), and
lets everything else, a bug, through as a traceback. Every output path is
checked the same way before the work starts (:func:`check_writable`).
"""
import contextlib
import os
import os.path as osp
import sys
import tempfile

from ..utils import MmrepError


class ConfigReadError(MmrepError, ValueError):
    """A config file is missing, its package is not installed, or it does
    not parse."""


class BadArgumentError(MmrepError, ValueError):
    """A command-line argument that argparse accepts but the tool cannot
    use (e.g. ``--batch 0``, an unknown ``--families`` entry)."""


class UnwritableOutputError(BadArgumentError):
    """An output path that cannot be written: a folder on its way is a
    file, or its nearest existing folder does not let this process create
    files."""


#: The errors the tools report as one ``error:`` line, writing nothing:
#: every mmrep refusal, and the two builtin errors that name a user's
#: input or environment wherever they come from: ``FileNotFoundError``
#: (a missing checkpoint, data root or annotation file, raised by mmrep's
#: checks as by ``open`` and the datasets) and ``ModuleNotFoundError`` (a
#: library that the config or the option needs is not installed, e.g.
#: onnxruntime for ``--verify``).
REFUSED = (MmrepError, FileNotFoundError, ModuleNotFoundError)


def error_line(error):
    """The ``error:`` line a tool prints for a refused input.

    Args:
        error (BaseException | str): the refusal.

    Returns:
        str: ``'error: <message>'`` on one line (the message's lines joined
        with single spaces).
    """
    lines = (line.strip() for line in str(error).splitlines())
    return 'error: ' + ' '.join(line for line in lines if line)


@contextlib.contextmanager
def refusals_as_errors(*also):
    """Turn a refused input into the tools' ``error:`` line and exit 1.

    Use it around the checks that run before a tool writes anything, or as
    a decorator of a tool's ``main``.

    Any other exception raised inside (a ``ValueError`` or ``KeyError`` of
    a bug) propagates unchanged, as a traceback.

    Args:
        *also (type[Exception]): further exception types the tool refuses
            its input with; none of mmrep's tools needs any (their
            refusals are :class:`~mmrep.utils.MmrepError` subclasses).

    Raises:
        SystemExit: with :func:`error_line` of one of the :data:`REFUSED`
            exceptions (or of ``also``) raised inside; Python prints it on
            stderr and exits with status 1.
    """
    try:
        yield
    except REFUSED + tuple(also) as e:
        raise SystemExit(error_line(e)) from None


def note_replacing(path):
    """Say, on stderr, that the tool replaces an existing file: a tool
    writes over a file only where the user named it, and never silently.

    Args:
        path (str | os.PathLike): the output about to be written.

    Returns:
        bool: whether ``path`` existed (and the line was printed).
    """
    if not os.path.exists(path):
        return False
    print(f'note: replacing the existing {os.fspath(path)}', file=sys.stderr)
    return True


def check_writable(path, what, folder=False):
    """Refuse an output path that cannot be written, before any work.

    The path must not be a folder (or, with ``folder``, a file); an
    existing file must be writable; and the nearest existing folder on its
    way (its own folder, or the first existing ancestor, below which the
    tools create the missing folders) must let this process create files:
    ``os.access``, then a temporary file created and removed there
    (``os.access`` says yes to root everywhere but on read-only mounts,
    while ``/proc`` and ``/sys`` refuse even root a new file). Nothing is
    left behind.

    Args:
        path (str | os.PathLike): the output file (or folder).
        what (str): the output as the message names it, e.g.
            ``'--out-metrics'``.
        folder (bool): the output is a folder. Default: False.

    Raises:
        UnwritableOutputError: ``'<what> <path> cannot be written: ...'``.
    """
    problem = _write_problem(osp.abspath(path), folder)
    if problem:
        raise UnwritableOutputError(f'{what} {os.fspath(path)} cannot be '
                                    f'written: {problem}')


def _write_problem(path, folder):
    """Why :func:`check_writable` refuses an absolute path, or None."""
    if osp.exists(path) and osp.isdir(path) != folder:
        return 'it is a file, not a folder' if folder else 'it is a folder'
    if osp.isfile(path) and not os.access(path, os.W_OK):
        return 'the file is read-only'
    nearest = path if folder else osp.dirname(path)
    while not osp.exists(nearest):
        nearest = osp.dirname(nearest)
    if not osp.isdir(nearest):
        return f'{nearest} is not a folder'
    if not (os.access(nearest, os.W_OK | os.X_OK)
            and _can_create_in(nearest)):
        return f'cannot create files in {nearest}'
    return None


def _can_create_in(folder):
    """Whether a file can be created in ``folder`` (created and removed)."""
    try:
        fd, probe = tempfile.mkstemp(prefix='.mmrep-write-check.',
                                     suffix='.tmp', dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.remove(probe)
    return True
