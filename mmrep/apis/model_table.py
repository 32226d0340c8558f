"""The numbers of tools/model_table.py: every mmrep ImageNet preset as the
classifier of ``configs/imagenet`` (the backbone, global average pooling and
a 1000-class linear head), its train-time and fused parameter counts, the
fused model's FLOPs and CPU throughput, and the markdown table."""
import statistics
import time

import torch

from ..models.backbones.family import CHECKPOINT_FAMILIES, get_family


def display_name(family, arch):
    """A preset's name in the table, e.g. ``'RepVGG-A0'``."""
    return get_family(family).display.format(arch)


def presets(families=None):
    """Every preset as ``(family, arch, resolution)``.

    Args:
        families (Sequence[str], optional): restrict to these families.

    Returns:
        list[tuple[str, str, int]]: each preset at its family's
        ``preset_size`` (RepMLPNet's in its name, all others 224).
    """
    rows = []
    for name, family in CHECKPOINT_FAMILIES.items():
        if families and name not in families:
            continue
        for arch in family.model.arch_zoo:
            rows.append((name, arch, family.preset_size(arch)))
    return rows


def backbone_cfg(family, arch, deploy=False):
    """The backbone dict of the family's ImageNet classifier config.

    Args:
        family (str): a registered family name.
        arch (str): preset name.
        deploy (bool): fused form.

    Returns:
        dict: backbone config (``type='mmrep.<Class>'``).
    """
    spec = get_family(family)
    cfg = dict(type='mmrep.' + spec.model.__name__, arch=arch,
               out_indices=(3, ), deploy=deploy)
    cfg.update(spec.classifier_kwargs())  # e.g. the norm before the head
    return cfg


def build_classifier(family, arch, deploy=False, num_classes=1000,
                     device=None):
    """Build the ImageNet classifier of a preset.

    Args:
        family (str): a registered family name.
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
    size = get_family(family).preset_size(arch)
    with torch.device('meta'):  # the head's input: the last stage's width
        probe = get_family(family).model(**kwargs)
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
        family (str): a registered family name.
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
        cells = [display_name(family, arch), f'{size}x{size}',
                 f'{r["params"] / 1e6:.2f}', f'{r["fused_params"] / 1e6:.2f}',
                 f'{r["flops"] / 1e9:.2f}']
        if speed:
            cells.append(f'{r["throughput"]:.1f}')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'
