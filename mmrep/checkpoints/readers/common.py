"""What the readers share: their one-line refusal, a file's bytes and
tensors from numpy arrays."""
import numpy as np
import torch

from ...utils.serialization import CheckpointLoadError


def cannot(path, detail):
    """The one-line error of a file that cannot be read, in the wording of
    :func:`mmrep.utils.safe_load`.

    Args:
        path (str): the file.
        detail (str): why.

    Returns:
        CheckpointLoadError: the error (to raise).
    """
    return CheckpointLoadError(f'cannot read checkpoint {path}: {detail}')


def read_bytes(path):
    """The whole content of the file at ``path``."""
    with open(path, 'rb') as f:
        return f.read()


def as_tensor(array, bfloat16=False):
    """A torch tensor owning a native-order copy of ``array``.

    Args:
        array (np.ndarray): the array (a boolean one: any nonzero byte is
            True).
        bfloat16 (bool): view its 2-byte items as ``torch.bfloat16``.

    Returns:
        Tensor: the tensor.
    """
    if array.dtype.kind == 'b':
        array = array.view(np.uint8) != 0
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder('='))
    tensor = torch.from_numpy(np.array(array, order='C'))
    return tensor.view(torch.bfloat16) if bfloat16 else tensor
