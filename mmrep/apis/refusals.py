"""How the command-line tools refuse an input: one ``error:`` line.

Every tool answers an input it cannot use (a missing file, a checkpoint
that cannot be read safely or does not fit, a config that does not read or
build, a config without ``custom_imports``, arguments that argparse cannot
check) the same way, before it writes anything: a single line
``error: <message>`` on stderr and exit status 1. The checks raise the
exceptions of :data:`REFUSED`; :func:`refusals_as_errors` turns them into
that line (``SystemExit`` with a string prints it to stderr and exits 1).
"""
import contextlib
import os
import sys

from ..checkpoints import CheckpointMismatchError
from ..checkpoints.conversion import ConversionError
from ..deploy import NonFiniteWeightsError
from ..utils import (CheckpointLoadError, MissingCustomImportsError,
                     ModelConfigError)


class ConfigReadError(ValueError):
    """A config file is missing, its package is not installed, or it does
    not parse."""


class BadArgumentError(ValueError):
    """A command-line argument that argparse accepts but the tool cannot
    use (e.g. ``--batch 0``, an unknown ``--families`` entry)."""


#: The errors the tools report as one ``error:`` line, writing nothing.
REFUSED = (MissingCustomImportsError, ModelConfigError, CheckpointLoadError,
           CheckpointMismatchError, FileNotFoundError, ModuleNotFoundError,
           ConfigReadError, BadArgumentError, ConversionError,
           NonFiniteWeightsError)


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

    Args:
        *also (type[Exception]): further exception types the tool refuses
            its input with (e.g. ``ValueError`` for a bad ``--arch``).

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
