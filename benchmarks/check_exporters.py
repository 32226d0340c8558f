"""Every family through both of torch's ONNX exporters: 32 cases.

Usage:
    python benchmarks/check_exporters.py [--write]

Each registered family at its tiny test arch (tests/models/test_backbone_contract.py),
train-time and fused, through the TorchScript exporter (``dynamo=False``) and
the ``torch.export`` one (``dynamo=True``, needs onnxscript), at a fixed size
and at a free one: onnxruntime against PyTorch at the export shape (and, for
a free size, at another size and batch), as tests/deploy/test_exporters.py checks
its subset (:func:`check_export`). Prints a markdown table of the largest
relative difference and the export time; ``--write`` also puts it into
benchmarks/README.md. Exits with status 1 when any case differs by more than
1e-4 or fails.
"""
import argparse
import os.path as osp
import sys
import tempfile
import traceback

HERE = osp.dirname(osp.abspath(__file__))
sys.path[:0] = [HERE] + [osp.join(osp.dirname(HERE), 'tests', group)
                         for group in ('', 'deploy', 'models')]

from readme_section import machine_line, update_section  # noqa: E402
from test_exporters import EXPORT_SHAPE, OTHER_SHAPE, check_export  # noqa
from test_backbone_contract import FAMILIES  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--write', action='store_true',
                        help='write the table into benchmarks/README.md')
    args = parser.parse_args()
    rows, failed = [], False
    for name in sorted(FAMILIES):
        for form in ('train', 'fused'):
            for dynamo in (False, True):
                for dynamic in (False, True):
                    with tempfile.TemporaryDirectory() as tmp:
                        try:
                            diff, seconds = check_export(
                                name, form, dynamo, dynamic,
                                osp.join(tmp, 'model.onnx'))
                            cell = f'{diff:.1e}'
                            failed |= diff > 1e-4
                        except Exception as e:  # reported, then status 1
                            traceback.print_exc()
                            cell, seconds, failed = \
                                f'failed: {type(e).__name__}', 0., True
                    row = (f'| {name} | {form} | '
                           f'{"dynamo" if dynamo else "TorchScript"} | '
                           f'{"free" if dynamic else "fixed"} | {cell} | '
                           f'{seconds:.1f} |')
                    print(row, flush=True)
                    rows.append(row)
    b, h, w = EXPORT_SHAPE
    ob, oh, ow = OTHER_SHAPE
    text = '\n'.join([
        f'{machine_line()}. Exported at batch {b}, {h}x{w}; a free size is '
        f'also checked at batch {ob}, {oh}x{ow}. Difference: largest '
        f'|onnxruntime - PyTorch| over every output, relative to the largest '
        f'output magnitude (at least 1).', '',
        '| family | form | exporter | size | difference | export s |',
        '|---|---|---|---|---|---|', *rows])
    if args.write:
        update_section('exporters', text)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
