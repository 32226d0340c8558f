"""Print a markdown table of every mmrep ImageNet preset.

Usage:
    python tools/model_table.py [--no-speed] [--batch 8] [--iters 5]
        [--families repvgg,repmlpnet,...] [--out FILE]

For each preset, as the ImageNet classifier of ``configs/imagenet`` (the
backbone, global average pooling and a 1000-class linear head):

* train-time parameters (equal to the original release's count);
* parameters after re-parameterization (``deploy=True``; mmrep also folds
  the conv-BN pairs and RepMLPNet's ``prebn2`` that the originals' fused
  forms keep, so its RepMLPNet numbers are lower than theirs);
* FLOPs of the fused model at the preset's resolution, counted by
  ``mmengine.analysis.get_model_complexity_info`` (one multiply-add = one
  FLOP, as the papers count; the fused RepMLP blocks' batched products are
  counted too); CycleMLP's channel shifts are not counted;
* unless ``--no-speed``: CPU throughput of the fused model in eval mode
  (images/s, batch ``--batch``, the median of ``--iters`` timed passes after
  one warm-up), with the threads torch uses by default.

The numbers come from :mod:`mmrep.apis.model_table`.

Exit status: 0 when the table is printed (and written); 1 for an unknown
``--families`` entry or a ``--batch`` / ``--iters`` below 1: one ``error:``
line on stderr, nothing written; 2 for arguments argparse rejects.
"""
import argparse
import sys

import mmrep  # noqa: F401  (registers the backbones)
from mmrep.apis import BadArgumentError, note_replacing, refusals_as_errors
from mmrep.apis.model_table import (display_name, markdown, measure,
                                    presets)
from mmrep.checkpoints import CHECKPOINT_FAMILIES


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    parser.add_argument('--no-speed', action='store_true',
                        help='skip the throughput measurement')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--families',
                        help='comma-separated subset of '
                        f'{list(CHECKPOINT_FAMILIES)}')
    parser.add_argument('--out', help='also write the table to this file')
    return parser.parse_args(argv)


@refusals_as_errors()
def main(argv=None):
    """Run the tool.

    Args:
        argv (list[str], optional): command-line arguments.

    Returns:
        int: exit status 0.

    Raises:
        SystemExit: ``'error: ...'`` (exit status 1) for an unknown family
            or a ``--batch`` / ``--iters`` below 1, nothing written.
    """
    args = parse_args(argv)
    families = args.families.split(',') if args.families else None
    unknown = set(families or ()) - set(CHECKPOINT_FAMILIES)
    if unknown:
        raise BadArgumentError(f'unknown families {sorted(unknown)}; choose '
                               f'from {list(CHECKPOINT_FAMILIES)}')
    for name in ('batch', 'iters'):
        if getattr(args, name) < 1:
            raise BadArgumentError(f'--{name} must be at least 1, got '
                                   f'{getattr(args, name)}')
    speed = not args.no_speed
    rows = []
    for family, arch, size in presets(families):
        numbers = measure(family, arch, size, speed, args.batch, args.iters)
        rows.append((family, arch, size, numbers))
        print(f'{display_name(family, arch)}: {numbers}',
              file=sys.stderr, flush=True)
    table = markdown(rows, speed, args.batch)
    print(table)
    if args.out:
        note_replacing(args.out)
        with open(args.out, 'w') as f:
            f.write(table)
    return 0


if __name__ == '__main__':
    sys.exit(main())
