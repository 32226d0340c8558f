"""Convert released ImageNet weights into mmrep checkpoints.

Usage:
    python tools/convert_checkpoint.py SRC DST
        --family {repmlpnet,repvgg,repmlp-res50,cyclemlp}
        [--arch ARCH] [--source {original,mmpretrain,timm,mindcv,paddle}]
        [--backbone-only]

Sources: the original releases (DingXiaoH RepMLPNet, RepVGG and RepMLP-Res50,
train-time or fused; ShoufaChen CycleMLP), mmpretrain's RepMLPNet and
RepVGG checkpoints, and three ports: timm's RepVGG (``.pth`` or
``.safetensors``), MindCV's RepMLPNet and RepVGG (MindSpore ``.ckpt``) and
Paddle-CycleMLP (``.pdparams``), read without their frameworks. The source
is detected (a MindSpore file is MindCV's, a PaddlePaddle file
Paddle-CycleMLP's, otherwise the key names tell); ``--source``, when given,
is checked against it. The preset is inferred from the weights' names and
shapes unless ``--arch`` names it (a preset name, or a dict literal such as
``"{'channels': (16, 32), ...}"``); weights of no preset (a port's or
mmpretrain's custom arch) get the arch their shapes give. A port's
options that shapes do not show (MindCV RepMLPNet's tanh GELU, floor
rounding and partition order) are set on the converted backbone and
recorded in ``meta['port_options']``.

DST is written atomically and holds ``state_dict`` and ``meta``:

* by default, an mmpretrain ``ImageClassifier`` as the
  ``configs/imagenet`` configs build it (``backbone.*``, ``head.fc.*``),
  usable as ``load_from`` or with ``tools/test.py``; a fused source gives a
  fused classifier (the deploy config: ``deploy=True`` on the backbone);
* with ``--backbone-only``, the backbone's own weights (no prefix), for
  ``init_cfg=dict(type='Pretrained', checkpoint=DST)`` in any mmrep
  backbone.

The weights are loaded strictly into the model they describe before anything
is written: a checkpoint that does not fit is refused with the missing,
unexpected and mis-shaped keys named, and so is one with keys that nothing
consumes. Files are read with ``weights_only=True`` (no pickled code runs).
The conversion itself is :func:`mmrep.checkpoints.conversion.convert`.

Exit status: 0 when DST is written; 1 for a refused input (missing,
unreadable or unsafe SRC, wrong ``--source``, unknown or ambiguous preset,
an ``--arch`` dict that does not build, weights that do not fit, keys
nothing consumes, a missing classifier, a DST that cannot be written):
one ``error:`` line on stderr, nothing written; 2 for arguments argparse
rejects. Any other exception is a bug and shows as a traceback.
"""
import argparse
import ast
import sys

from mmrep.apis import check_writable, note_replacing, refusals_as_errors
from mmrep.checkpoints import CHECKPOINT_FAMILIES
from mmrep.checkpoints.conversion import convert
from mmrep.checkpoints.ports import source_names
from mmrep.utils import atomic_save


def arch_argument(text):
    """A preset name, or a dict literal (``{...}``) read as an arch."""
    if not text.lstrip().startswith('{'):
        return text
    try:
        arch = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        arch = None
    if not isinstance(arch, dict):
        raise argparse.ArgumentTypeError(f'not a dict literal: {text}')
    return arch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    parser.add_argument('src', help='checkpoint to convert')
    parser.add_argument('dst', help='where the mmrep checkpoint goes')
    parser.add_argument('--family', required=True,
                        choices=sorted(CHECKPOINT_FAMILIES))
    parser.add_argument('--arch', type=arch_argument,
                        help='preset name or arch dict literal (default: '
                        'inferred from the weights)')
    parser.add_argument('--source', choices=list(source_names()),
                        help='where the weights come from (default: '
                        'detected from the file and the names)')
    parser.add_argument('--backbone-only', action='store_true',
                        help='write the backbone weights only')
    return parser.parse_args(argv)


@refusals_as_errors()
def main(argv=None):
    """Run the tool.

    Args:
        argv (list[str], optional): command-line arguments.

    Returns:
        int: exit status 0 (DST written).

    Raises:
        SystemExit: ``'error: ...'`` (exit status 1) for a refused input,
            nothing written.
    """
    args = parse_args(argv)
    check_writable(args.dst, 'DST')
    checkpoint = convert(args.src, args.family, args.arch, args.source,
                         args.backbone_only)
    note_replacing(args.dst)
    atomic_save(checkpoint, args.dst)
    meta = checkpoint['meta']
    what = 'backbone' if args.backbone_only else 'classifier'
    arch = meta['arch'] if isinstance(meta['arch'], str) else 'custom arch'
    print(f'{meta["family"]} {arch} ({meta["source"]}, '
          f'{"fused" if meta["deploy"] else "train-time"}) {what}: '
          f'{len(checkpoint["state_dict"])} tensors written to {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
