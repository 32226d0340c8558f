"""Files written whole or not at all."""
import os
import os.path as osp
import stat
import tempfile

import torch


def default_file_mode(path):
    """The permission bits a plain ``open(path, 'w')`` would leave.

    Args:
        path (str): the file about to be written.

    Returns:
        int: the mode of ``path`` when it exists (a write keeps it),
        otherwise ``0o666`` less the process umask.
    """
    if osp.exists(path):
        return stat.S_IMODE(os.stat(path).st_mode)
    umask = os.umask(0)  # reading the umask means setting it
    os.umask(umask)
    return 0o666 & ~umask


def temporary_prefix(path):
    """The name prefix of :func:`atomic_write`'s temporary files for
    ``path``: ``work/iter_8_deploy.pth -> '.iter_8_deploy.pth.'``."""
    return '.' + osp.basename(path) + '.'


def atomic_write(path, write):
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename
    it to ``path``, so a crash or an error never leaves a truncated file
    there (on an error the temporary file is removed; a killed process
    leaves it, named ``.<name>.<random>.tmp``). The final file gets the mode
    a plain write would give it (:func:`default_file_mode`), not the
    temporary file's 0600.

    Args:
        path (str): the file to create or replace.
        write (callable): writes the whole file to the path it is given.
    """
    folder = osp.dirname(osp.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), suffix='.tmp',
                               dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, default_file_mode(path))
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def atomic_save(obj, path):
    """``torch.save(obj, path)`` through :func:`atomic_write`."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))
