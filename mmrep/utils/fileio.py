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
    atomic_write_all([(path, write)])


def atomic_write_all(writes):
    """Write several files as one set, the last one (e.g. the weights
    beside their config) marking the set whole.

    Order: every file is written to its temporary file beside its target
    (:func:`atomic_write`'s names and modes); then an existing last target
    is removed; then the temporary files are renamed into place in order,
    the last one last. So wherever the last file exists, the other files
    beside it are the ones written with it, even after a SIGKILL at any
    point (which may leave temporary files, and, between the removal and
    the last rename, the other files without the last one). On an error
    the temporary files are removed, and so are the files already renamed
    into place: the new set is left whole or not at all (the files it
    replaces are kept when the error comes before the renames).

    Args:
        writes (list[tuple[str, callable]]): ``(path, write)`` pairs;
            ``write(tmp)`` writes the whole file to the path it is given.
    """
    tmps, placed = [], []
    try:
        for path, write in writes:
            fd, tmp = tempfile.mkstemp(
                prefix=temporary_prefix(path), suffix='.tmp',
                dir=osp.dirname(osp.abspath(path)))
            os.close(fd)
            tmps.append(tmp)
            write(tmp)
            os.chmod(tmp, default_file_mode(path))
        last = writes[-1][0]
        if len(writes) > 1 and osp.lexists(last):
            os.remove(last)
        for (path, _), tmp in zip(writes, tmps):
            os.replace(tmp, path)
            placed.append(path)
    except BaseException:
        for path in placed:  # never the last: it is renamed last
            os.remove(path)
        raise
    finally:
        for tmp in tmps:
            if osp.exists(tmp):
                os.remove(tmp)


def atomic_save(obj, path):
    """``torch.save(obj, path)`` through :func:`atomic_write`."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))
