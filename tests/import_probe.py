"""Run in a fresh interpreter by tests/project/test_layout.py: import the module
named on the command line and print, as JSON, every file-system write the
import made (Python's audit events) and every torch or mmengine global it
changed. Bytecode writing is off, so only the code itself counts, and what
torch and mmengine do when they import themselves (torch registers its
DTensor types as safe globals) happens before the first snapshot."""
import json
import os
import os.path as osp
import sys

sys.dont_write_bytecode = True
# this checkout's mmrep, whatever the editable install points to
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
WRITES = []
WRITE_EVENTS = ('os.symlink', 'os.link', 'os.mkdir', 'os.rename',
                'os.remove', 'os.rmdir', 'os.truncate', 'os.chmod',
                'shutil.rmtree', 'shutil.copyfile', 'os.utime')
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND


def audit(event, args):
    if event == 'open' and len(args) >= 3:
        path, mode, flags = args[:3]
        if (isinstance(mode, str) and any(c in mode for c in 'wax+')) or \
                (mode is None and isinstance(flags, int)
                 and flags & WRITE_FLAGS):
            WRITES.append(f'open {path} {mode or flags}')
    elif event in WRITE_EVENTS:
        WRITES.append(f'{event} {args[0]}')


def snapshot():
    import torch
    import torch.nn.modules.module as module
    from mmengine.config import Config
    from mmengine.config.utils import MODULE2PACKAGE
    hooks = {name: len(getattr(module, name)) for name in dir(module)
             if name.startswith('_global_') and name.endswith('_hooks')}
    return dict(
        safe_globals=sorted(repr(g) for g in
                            torch.serialization.get_safe_globals()),
        module_hooks=hooks,
        fromfile=repr(Config.__dict__['fromfile']),
        module2package=sorted(MODULE2PACKAGE),
        threads=torch.get_num_threads(),
        dtype=str(torch.get_default_dtype()),
        grad=torch.is_grad_enabled())


if __name__ == '__main__':
    import mmengine.config  # noqa: F401  the dependencies' own imports
    import mmengine.logging  # noqa: F401
    import mmengine.model  # noqa: F401
    import mmengine.registry  # noqa: F401
    before = snapshot()
    sys.addaudithook(audit)
    __import__(sys.argv[1])
    after = snapshot()
    changed = {k: [before[k], after[k]] for k in before
               if before[k] != after[k]}
    print(json.dumps(dict(writes=WRITES, changed=changed)))
