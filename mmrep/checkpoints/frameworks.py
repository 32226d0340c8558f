"""Checkpoint files of other frameworks, read without them.

MindSpore ``.ckpt`` files (MindCV's releases) are protocol-buffers messages
of named tensors; PaddlePaddle ``.pdparams`` files are Python pickles of
numpy arrays. mmrep reads both without mindspore, paddle or protobuf
installed: the first with a reader of the protocol-buffers wire format, the
second with an unpickler that admits only the few numpy globals arrays need
(each checking its arguments) and refuses anything else before it runs.

:func:`mmrep.utils.safe_load` (and so
:func:`~mmrep.checkpoints.read_state_dict`, ``init_cfg=Pretrained`` and the
tools) tells these files by their first bytes and returns their tensors as
a plain state dict under the framework's own names; translating the names
to mmrep's is the converters' work. The byte-level readers live in
:mod:`mmrep.utils.frameworks`, below ``safe_load``.
"""
from ..utils.frameworks import (MINDSPORE_DTYPES, PADDLE_GLOBALS,
                                framework_of)
from ..utils.serialization import read_framework_checkpoint

__all__ = ['read_mindspore_checkpoint', 'read_paddle_checkpoint',
           'framework_of', 'MINDSPORE_DTYPES', 'PADDLE_GLOBALS']


def read_mindspore_checkpoint(path):
    """Read a MindSpore checkpoint (``mindspore.save_checkpoint``).

    Parts of a tensor split over several entries are joined, a trailing
    CRC-32 is checked, and entries without a tensor (``append_dict``
    strings, random-generator state, map parameters) are left out.
    Encrypted checkpoints cannot be read.

    Args:
        path (str | os.PathLike): the ``.ckpt`` file.

    Returns:
        dict[str, Tensor]: the tensors under MindSpore's names (``gamma``,
        ``beta``, ``moving_mean``, ``moving_variance`` for a BatchNorm), on
        the CPU, with the dtypes they were stored in
        (:data:`MINDSPORE_DTYPES`).

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointLoadError: the file is truncated or corrupt, no MindSpore
            checkpoint, or holds a type mmrep cannot read (one line).
    """
    return read_framework_checkpoint(path, framework='mindspore')


def read_paddle_checkpoint(path):
    """Read a PaddlePaddle checkpoint (``paddle.save(layer.state_dict())``).

    Only :data:`PADDLE_GLOBALS` may appear in the pickle, each replaced by a
    stand-in that accepts only the arguments numpy's own pickles pass.

    Args:
        path (str | os.PathLike): the ``.pdparams`` file.

    Returns:
        dict[str, Tensor]: the arrays under Paddle's structured names, on
        the CPU, with their stored dtypes (``uint16`` arrays, Paddle's way
        of saving bfloat16, become bfloat16 tensors). Paddle's
        ``StructuredToParameterName@@`` table is left out.

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointLoadError: the file is truncated or corrupt, or its pickle
            holds no dict (one line).
        UnsafeCheckpointError: the pickle names any other global (as
            ``posix.system``) or calls an admitted one with arguments numpy
            never pickles; nothing was executed.
    """
    return read_framework_checkpoint(path, framework='paddle')
