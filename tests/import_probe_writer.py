"""A module whose import writes a file (tests/project/test_layout.py: the import
probe sees writes)."""
import os
import tempfile

with open(os.path.join(tempfile.gettempdir(),
                       f'import-probe-{os.getpid()}-written'), 'w') as f:
    f.write('x')
os.remove(f.name)
