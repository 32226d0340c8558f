"""Telling the formats apart by a file's first bytes."""
import os

from .mindspore import looks_mindspore
from .paddle import looks_paddle
from .safetensors import looks_safetensors

#: The extensions that decide where the content is too short to tell.
EXTENSIONS = {'.ckpt': 'mindspore', '.pdparams': 'paddle',
              '.pdopt': 'paddle'}
_HEAD = 4096


def file_format(path):
    """The format of a checkpoint file, from its first bytes.

    Args:
        path (str | os.PathLike): the file.

    Returns:
        str | None: ``'mindspore'``, ``'paddle'`` or ``'safetensors'``; None
        for torch's formats (zip or legacy pickle) and anything else. The
        extension (:data:`EXTENSIONS`) decides only where the file is too
        short for its content to tell (an empty file).
    """
    path = os.fspath(path)
    with open(path, 'rb') as f:
        head = f.read(_HEAD)
    if head[:4] == b'PK\x03\x04':  # torch's zip format
        return None
    if looks_safetensors(head, os.path.getsize(path)):
        return 'safetensors'
    verdicts = {'mindspore': looks_mindspore(head),
                'paddle': looks_paddle(head)}
    for name, verdict in verdicts.items():
        if verdict:
            return name
    hint = EXTENSIONS.get(os.path.splitext(path)[1].lower())
    return hint if hint and verdicts[hint] is None else None


def framework_of(path):
    """The framework that wrote a checkpoint file, from its first bytes.

    Args:
        path (str | os.PathLike): the file.

    Returns:
        str | None: ``'mindspore'`` (a protocol-buffers ``.ckpt``),
        ``'paddle'`` (a pickle of a dict, as ``paddle.save`` writes a
        ``.pdparams``) or None (torch's formats, safetensors, anything
        else). The extension is a hint only, used where the content is too
        short to tell (an empty file).
    """
    found = file_format(path)
    return found if found in ('mindspore', 'paddle') else None
