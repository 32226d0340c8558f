"""The base of every error by which mmrep refuses an input.

Each refusal class (a checkpoint that cannot be read or does not fit, a
config that does not read or build, a model argument that cannot build, an
argument or output path a tool cannot use ...) inherits :class:`MmrepError`
beside the builtin class its callers have caught it as
(``class CheckpointLoadError(MmrepError, RuntimeError)``), so ``except
ValueError`` keeps working and the tools catch every refusal in one place
(:func:`mmrep.apis.refusals_as_errors`): one ``error:`` line. Anything else
raised in a tool is a bug and shows as a traceback.

This module imports nothing, so that any module of mmrep can use it.
"""


class MmrepError(Exception):
    """An input that mmrep refuses, with a message for the user (one line
    where a tool prints it)."""


class ModelArgumentError(MmrepError, ValueError):
    """A model's or layer's constructor argument that cannot build: an
    unknown ``arch`` preset, a malformed arch dict, an original release's
    (or a port's) arguments that do not translate, an ``in_channels`` or
    ``partition_sizes`` value the model cannot take; also an image size
    that a RepMLPNet built with ``pad=False`` cannot take."""


def builtin_name(error):
    """The name of the builtin exception class that ``error`` is.

    An mmrep error is named by its builtin base (what ``except`` clauses
    outside mmrep catch it as), so that messages naming the kind of an
    error stay as they were before the class was an mmrep one.

    Args:
        error (BaseException): any exception.

    Returns:
        str: e.g. ``'ValueError'`` for a :class:`ModelArgumentError`;
        ``type(error).__name__`` for an exception that is no
        :class:`MmrepError`.
    """
    if not isinstance(error, MmrepError):
        return type(error).__name__
    return next(cls.__name__ for cls in type(error).__mro__
                if cls.__module__ == 'builtins' and cls is not object)
