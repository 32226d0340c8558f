"""Imported by the distributed training test through ``custom_imports``:
records each importing process (``import <rank>``) and every deploy-file
write of :class:`mmrep.ReparamCheckpointHook` (``write <rank> <target>``)
in the file named by ``MMREP_WRITE_LOG``."""
import os

import mmrep.deploy.hook as hook

_save = hook.atomic_save


def _record(line):
    with open(os.environ['MMREP_WRITE_LOG'], 'a') as f:
        f.write(line + '\n')


def _recording_save(obj, path):
    """``atomic_save`` that also records the write."""
    _save(obj, path)
    _record(f'write {os.environ.get("RANK", "-")} {path}')


if os.environ.get('MMREP_WRITE_LOG'):
    hook.atomic_save = _recording_save
    _record(f'import {os.environ.get("RANK", "-")}')
