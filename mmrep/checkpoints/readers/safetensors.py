"""``.safetensors`` files, read with the ``safetensors`` package (an
optional dependency)."""
import os

from ...utils.untrusted_pickle import one_line
from .common import cannot


def looks_safetensors(head, size):
    """Whether ``head`` starts a safetensors file: an 8-byte little-endian
    header length, then a JSON header.

    Args:
        head (bytes): the file's first bytes.
        size (int): the file's size.

    Returns:
        bool: the verdict.
    """
    if len(head) < 9:
        return False
    length = int.from_bytes(head[:8], 'little')
    return 2 <= length <= size - 8 and head[8:9] == b'{'


def read_safetensors(path):
    """Read a ``.safetensors`` file with the ``safetensors`` package.

    Args:
        path (str | os.PathLike): the file.

    Returns:
        dict[str, Tensor]: its tensors (on the CPU).

    Raises:
        CheckpointLoadError: the package is not installed, or the file is
            truncated or corrupt.
    """
    path = os.fspath(path)
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise cannot(path, 'it is a safetensors file, which needs the '
                           'safetensors package (pip install safetensors)') \
            from None
    try:
        return load_file(path, device='cpu')
    except Exception as e:  # noqa: BLE001  SafetensorError and others
        raise cannot(path, f'the file is truncated or corrupt (a '
                           f'safetensors file: {one_line(e)})') from e
