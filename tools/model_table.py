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
"""
import argparse
import statistics
import sys
import time

import torch

import mmrep  # noqa: F401  (registers the backbones)
from mmrep.models.backbones import CycleMLP, RepMLPNet, RepMLPResNet, RepVGG

# family: (backbone class, display name of a preset)
FAMILIES = {
    'repvgg': (RepVGG, 'RepVGG-{}'),
    'repmlpnet': (RepMLPNet, 'RepMLPNet-{}'),
    'repmlp-res50': (RepMLPResNet, 'RepMLP-Res50-{}'),
    'cyclemlp': (CycleMLP, 'CycleMLP-{}'),
}


def presets(families=None):
    """Every preset as ``(family, arch, resolution)``.

    Args:
        families (Sequence[str], optional): restrict to these families.

    Returns:
        list[tuple[str, str, int]]: RepMLPNet presets run at the resolution
        in their name, all others at 224.
    """
    rows = []
    for family, (cls, _) in FAMILIES.items():
        if families and family not in families:
            continue
        for arch in cls.arch_zoo:
            size = int(arch[1:]) if family == 'repmlpnet' else 224
            rows.append((family, arch, size))
    return rows


def backbone_cfg(family, arch, deploy=False):
    """The backbone dict of the family's ImageNet classifier config.

    Args:
        family (str): a key of :data:`FAMILIES`.
        arch (str): preset name.
        deploy (bool): fused form.

    Returns:
        dict: backbone config (``type='mmrep.<Class>'``).
    """
    cls = FAMILIES[family][0]
    cfg = dict(type='mmrep.' + cls.__name__, arch=arch, out_indices=(3, ),
               deploy=deploy)
    if family in ('repmlpnet', 'cyclemlp'):
        cfg['final_norm'] = True  # the original's norm before the head
    return cfg


def build_classifier(family, arch, deploy=False, num_classes=1000,
                     device=None):
    """Build the ImageNet classifier of a preset.

    Args:
        family (str): a key of :data:`FAMILIES`.
        arch (str): preset name.
        deploy (bool): fused form.
        num_classes (int): head outputs. Default: 1000.
        device (str | torch.device, optional): e.g. ``'meta'`` to build
            without memory or initialization (enough to count parameters).

    Returns:
        nn.Module: mmpretrain ``ImageClassifier``.
    """
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    backbone = backbone_cfg(family, arch, deploy)
    kwargs = {k: v for k, v in backbone.items() if k != 'type'}
    size = int(arch[1:]) if family == 'repmlpnet' else 224
    with torch.device('meta'):  # the head's input: the last stage's width
        probe = FAMILIES[family][0](**kwargs)
        channels = probe(torch.empty(1, 3, size, size))[-1].shape[1]
    with torch.device(device or 'cpu'):
        return MODELS.build(dict(
            type='ImageClassifier', backbone=backbone,
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=num_classes,
                      in_channels=channels)))


def count_params(model):
    """Number of parameters (buffers such as BN statistics excluded).

    Args:
        model (nn.Module): any module.

    Returns:
        int: ``sum(p.numel() for p in model.parameters())``.
    """
    return sum(p.numel() for p in model.parameters())


def flops(model, size):
    """FLOPs (multiply-adds) of one ``size x size`` image.

    Args:
        model (nn.Module): an ``ImageClassifier`` (its ``mode='tensor'``
            forward is analysed).
        size (int): image side.

    Returns:
        int: FLOPs.
    """
    from mmengine.analysis import FlopAnalyzer
    from mmengine.analysis.jit_handles import bmm_flop_jit

    class Logits(torch.nn.Module):
        def __init__(self, classifier):
            super().__init__()
            self.classifier = classifier

        def forward(self, x):
            return self.classifier(x, mode='tensor')

    analyzer = FlopAnalyzer(Logits(model).eval(),
                            torch.randn(1, 3, size, size))
    # Traced, the fused RepMLP block's partition FC is one baddbmm (bias +
    # batched product), which mmengine does not count: count it as bmm.
    analyzer.set_op_handle(
        'aten::baddbmm', lambda inputs, outputs: bmm_flop_jit(inputs[1:3],
                                                              outputs))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return int(analyzer.total())


def throughput(model, size, batch=8, iters=5):
    """Images per second of ``model`` in eval mode on the CPU.

    Args:
        model (nn.Module): an ``ImageClassifier``.
        size (int): image side.
        batch (int): images per pass.
        iters (int): timed passes (after one warm-up pass).

    Returns:
        float: ``batch / median pass time``.
    """
    model.eval()
    x = torch.randn(batch, 3, size, size)
    times = []
    with torch.no_grad():
        model(x, mode='tensor')
        for _ in range(iters):
            start = time.perf_counter()
            model(x, mode='tensor')
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def measure(family, arch, size, speed=True, batch=8, iters=5):
    """One table row's numbers.

    Args:
        family (str): a key of :data:`FAMILIES`.
        arch (str): preset name.
        size (int): resolution.
        speed (bool): also time the fused model.
        batch (int): images per timed pass.
        iters (int): timed passes.

    Returns:
        dict: params, fused_params, flops, throughput (None without speed).
    """
    train_params = count_params(build_classifier(family, arch,
                                                 device='meta'))
    torch.manual_seed(0)
    fused = build_classifier(family, arch, deploy=True).eval()
    row = dict(params=train_params, fused_params=count_params(fused),
               flops=flops(fused, size), throughput=None)
    if speed:
        row['throughput'] = throughput(fused, size, batch, iters)
    del fused
    return row


def markdown(rows, speed=True, batch=8):
    """Format measured rows as a markdown table.

    Args:
        rows (list[tuple]): ``(family, arch, size, numbers)``.
        speed (bool): include the throughput column.
        batch (int): batch size the throughput was measured with.

    Returns:
        str: the table.
    """
    head = ['model', 'input', 'params (M)', 'fused params (M)',
            'FLOPs (G)']
    if speed:
        head.append(f'CPU img/s (fused, batch {batch})')
    lines = ['| ' + ' | '.join(head) + ' |',
             '|' + '---|' * len(head)]
    for family, arch, size, r in rows:
        cells = [FAMILIES[family][1].format(arch), f'{size}x{size}',
                 f'{r["params"] / 1e6:.2f}', f'{r["fused_params"] / 1e6:.2f}',
                 f'{r["flops"] / 1e9:.2f}']
        if speed:
            cells.append(f'{r["throughput"]:.1f}')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--no-speed', action='store_true',
                        help='skip the throughput measurement')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--families',
                        help=f'comma-separated subset of {list(FAMILIES)}')
    parser.add_argument('--out', help='also write the table to this file')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    families = args.families.split(',') if args.families else None
    unknown = set(families or ()) - set(FAMILIES)
    if unknown:
        raise SystemExit(f'unknown families {sorted(unknown)}; choose from '
                         f'{list(FAMILIES)}')
    speed = not args.no_speed
    rows = []
    for family, arch, size in presets(families):
        numbers = measure(family, arch, size, speed, args.batch, args.iters)
        rows.append((family, arch, size, numbers))
        print(f'{FAMILIES[family][1].format(arch)}: {numbers}',
              file=sys.stderr, flush=True)
    table = markdown(rows, speed, args.batch)
    print(table)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(table)
    return 0


if __name__ == '__main__':
    sys.exit(main())
