"""Shared by the benchmark scripts: machine description and writing a result
table into ``benchmarks/README.md`` between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->`` markers."""
import datetime
import os
import os.path as osp
import platform

import torch

README = osp.join(osp.dirname(osp.abspath(__file__)), 'README.md')


def cpu_model():
    """The CPU model name from ``/proc/cpuinfo`` (or ``platform``)."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line():
    """One line naming the CPU, torch threads, torch version and date.

    Returns:
        str: e.g. ``AMD EPYC, 2 torch threads (2 logical CPUs), torch 2.14.1,
        2025-01-31``.
    """
    return (f'{cpu_model()}, {torch.get_num_threads()} torch threads '
            f'({os.cpu_count()} logical CPUs), torch {torch.__version__}, '
            f'{platform.python_implementation()} '
            f'{platform.python_version()}, '
            f'{datetime.date.today().isoformat()}')


def update_section(name, text, path=README):
    """Replace the text between the ``name`` markers of ``path``.

    Args:
        name (str): marker name, e.g. ``'deploy-bench'``.
        text (str): the new section body (markdown).
        path (str): the markdown file. Default: ``benchmarks/README.md``.

    Returns:
        bool: True when the markers were found and the file was written;
        False (nothing written) when they are missing.
    """
    start, end = f'<!-- {name}:start -->', f'<!-- {name}:end -->'
    with open(path) as f:
        doc = f.read()
    i, j = doc.find(start), doc.find(end)
    if i < 0 or j < i:
        return False
    doc = doc[:i + len(start)] + '\n' + text.strip('\n') + '\n' + doc[j:]
    with open(path, 'w') as f:
        f.write(doc)
    return True
