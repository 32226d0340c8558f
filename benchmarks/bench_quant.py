"""INT8 deployment benchmark: float32 vs INT8 metric and latency of models
trained here, with and without the quantization-friendly options.

Usage:
    python benchmarks/bench_quant.py [--work-dir work_dirs/bench_quant]
        [--only NAME ...] [--seg-iters 300] [--cls-epochs 30]
        [--seg-size 512 1024] [--threads 2] [--runs 5] [--no-readme]

Models (trained when their checkpoint is missing, into ``--work-dir``,
which git ignores):

* segmentors: the README demo (UperNet + RepMLPNet-tiny,
  ``tools/demo.py``'s settings) and the same UperNet with a small RepVGG
  (plain and QARepVGG blocks) and a small CycleMLP
  (``configs/cityscapes/demo_upernet_*-tiny_*``), on the generated
  Cityscapes-layout set, 128x256;
* classifiers: one per family, from ``configs/imagenet`` with a reduced
  arch, on a generated ImageNet-layout set (``make_imagenet_like``: 24
  classes, 16 training and 16 validation images each, 64x64), trained
  ``--cls-epochs`` epochs but those in :data:`CLS_TRAINING`; the configs
  are written into the work dir.

Each model goes through :func:`mmrep.apis.quantize.quantize_config` (what
``tools/quantize.py`` runs) with default settings, and with the options
named in its row. Latency: batch 1, median of ``--runs`` interleaved
rounds, the same threads for every form; segmentors at ``--seg-size``,
classifiers at their 64x64. The table goes into ``benchmarks/README.md``
between the ``quant-bench`` markers.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

SEG_DIR = osp.join(ROOT, 'configs', 'cityscapes')
SEG = {
    'RepMLPNet': 'demo_upernet_repmlpnet-tiny_1xb8-cpu_cityscapes-synthetic',
    'RepVGG': 'demo_upernet_repvgg-tiny_1xb8-cpu_cityscapes-synthetic',
    'QARepVGG': 'demo_upernet_repvgg-tiny_1xb8-cpu_cityscapes-synthetic',
    'CycleMLP': 'demo_upernet_cyclemlp-tiny_1xb8-cpu_cityscapes-synthetic',
}
SEG_OPTIONS = {'QARepVGG': ['model.backbone.block=qarepvgg']}

CLS_CLASSES, CLS_IMG = 24, 64
CLS = {
    'RepVGG': ('repvgg-a0_8xb32_in1k.py',
               dict(num_blocks=(1, 1, 2, 1),
                    width_multiplier=(0.25, 0.25, 0.25, 0.5)), 256, {}),
    'QARepVGG': ('repvgg-a0_8xb32_in1k.py',
                 dict(num_blocks=(1, 1, 2, 1),
                      width_multiplier=(0.25, 0.25, 0.25, 0.5)), 256,
                 dict(block='qarepvgg')),
    'RepMLPNet': ('repmlpnet-t256_8xb32_in1k-256px.py',
                  dict(channels=(16, 32, 64, 128), num_blocks=(1, 1, 2, 1),
                       sharesets=(1, 4, 8, 16),
                       partition_sizes=(16, 8, 4, 2)), 128, {}),
    'CycleMLP': ('cyclemlp-b1_8xb128_in1k.py',
                 dict(channels=(16, 32, 64, 128), num_blocks=(1, 1, 2, 1),
                      mlp_ratios=(2, 2, 2, 2)), 128,
                 dict(drop_path_rate=0.)),
    'RepMLP-Res50': ('repmlp-res50-light-224-g4-8_8xb32_in1k.py',
                     dict(block_type='light', num_blocks=(1, 2, 2, 1),
                          img_size=CLS_IMG, partition=4, fc3_groups=(4, 8)),
                     2048, {}),
}

#: Training of the classifiers that the common recipe (``--cls-epochs``
#: epochs, lr 0.05 for SGD and 2e-3 for AdamW) leaves on a plateau: the
#: CycleMLP classifier tells the colours within a few epochs, then its loss
#: stays on a plateau where the three stripe directions of each colour are
#: not told apart (35% top-1 after 30 epochs; without label smoothing the
#: loss sits at ln 3) until about epoch 50 at lr 4e-3 without stochastic depth (about 70 with
#: it, hence ``drop_path_rate=0.`` in :data:`CLS`), and learns the
#: directions after that (99% top-1 after 100 epochs).
CLS_TRAINING = {'CycleMLP': dict(epochs=100, lr=4e-3)}

#: Extra settings measured per family besides the default (label, options
#: of quantize_config).
VARIANTS = {
    'RepMLPNet': [('fc3 kept float',
                   dict(keep_float=['*repmlp_block/MatMul*']))],
    'RepMLP-Res50': [('fc3 kept float',
                      dict(keep_float=['*repmlp*/MatMul*']))],
    'RepVGG': [('per-tensor', dict(per_channel=False))],
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir',
                        default=osp.join(ROOT, 'work_dirs', 'bench_quant'))
    parser.add_argument('--only', nargs='+', metavar='NAME',
                        help="rows to run, e.g. 'seg:RepVGG' 'cls:CycleMLP'")
    parser.add_argument('--seg-iters', type=int, default=300)
    parser.add_argument('--cls-epochs', type=int, default=30,
                        help='epochs of the classifiers not in CLS_TRAINING')
    parser.add_argument('--seg-size', type=int, nargs=2, default=(512, 1024))
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--calib-batches', type=int, default=8)
    parser.add_argument('--no-readme', action='store_true')
    parser.add_argument('--from-results', action='store_true',
                        help="write the tables from the work dir's "
                        'results.json (an earlier run) without measuring')
    return parser.parse_args(argv)


def run(*args):
    """Run ``python *args`` in the repository.

    Args:
        *args (str): the script and its arguments.

    Raises:
        SystemExit: the command failed (its own output says why).
    """
    proc = subprocess.run([sys.executable, *args], cwd=ROOT)
    if proc.returncode:
        raise SystemExit(f'failed: {" ".join(args)}')


def seg_model(name, work, iters):
    """Train (when its checkpoint is missing) one demo segmentor.

    Args:
        name (str): a key of :data:`SEG`.
        work (str): the work dir.
        iters (int): training iterations.

    Returns:
        tuple[str, list[str], str]: config, ``--cfg-options`` and
        checkpoint.
    """
    from mmrep.apis.demo import demo_config_options
    from mmrep.datasets import make_cityscapes_like
    data = osp.join(work, 'data_cityscapes')
    if not osp.isdir(osp.join(data, 'gtFine', 'val')):
        make_cityscapes_like(data, num_train=64, num_val=16)
    config = osp.join(SEG_DIR, SEG[name] + '.py')
    opts = demo_config_options(data, iters) + SEG_OPTIONS.get(name, [])
    out = osp.join(work, f'seg_{name}')
    ckpt = osp.join(out, f'iter_{iters}.pth')
    if not osp.isfile(ckpt):
        run(osp.join(ROOT, 'tools', 'train.py'), config, '--work-dir', out,
            '--cfg-options', *opts)
    return config, opts, ckpt


def cls_config(name, work, epochs):
    """Write the small classifier config of a family (and the generated
    data set, when missing).

    Args:
        name (str): a key of :data:`CLS`.
        work (str): the work dir.
        epochs (int): training epochs.

    Returns:
        str: the config's path.
    """
    from mmengine.config import Config
    from mmrep.datasets import make_imagenet_like
    data = osp.join(work, 'data_imagenet')
    if not osp.isdir(osp.join(data, 'meta')):
        make_imagenet_like(data, num_classes=CLS_CLASSES, per_class_train=16,
                           per_class_val=16, size=72, seed=0)
    base, arch, channels, extra = CLS[name]
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'imagenet', base))
    cfg.model.backbone.arch = arch
    cfg.model.backbone.update(extra)
    cfg.model.head.in_channels = channels
    cfg.model.head.num_classes = CLS_CLASSES
    cfg.model.head.topk = (1, )
    cfg.data_preprocessor.num_classes = CLS_CLASSES
    cfg.model.pop('train_cfg', None)  # no mixup / cutmix at this scale
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[key]
        loader.batch_size = 16
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.dataset.data_root = data
        loader.dataset.pipeline = [
            t for t in loader.dataset.pipeline
            if t.type not in ('RandAugment', 'RandomErasing', 'ColorJitter')]
        for t in loader.dataset.pipeline:
            if t.type in ('RandomResizedCrop', 'ResizeEdge'):
                t.scale = CLS_IMG
            elif t.type == 'CenterCrop':
                t.crop_size = CLS_IMG
    cfg.val_evaluator = cfg.test_evaluator = dict(type='Accuracy',
                                                  topk=(1, ))
    sgd = cfg.optim_wrapper.optimizer.type == 'SGD'
    cfg.optim_wrapper.optimizer.lr = CLS_TRAINING.get(name, {}).get(
        'lr', 0.05 if sgd else 2e-3)
    cfg.optim_wrapper.pop('clip_grad', None)
    cfg.param_scheduler = [dict(type='CosineAnnealingLR', T_max=epochs,
                                by_epoch=True, begin=0, end=epochs,
                                convert_to_iter_based=True)]
    cfg.train_cfg = dict(by_epoch=True, max_epochs=epochs, val_interval=epochs)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=epochs,
                                        max_keep_ckpts=1)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=10)
    cfg.pop('auto_scale_lr', None)
    os.makedirs(work, exist_ok=True)
    path = osp.join(work, f'cls_{name}.py')
    cfg.dump(path)
    return path


def cls_epochs(name, args):
    """Training epochs of one classifier.

    Args:
        name (str): a key of :data:`CLS`.
        args (argparse.Namespace): the benchmark's arguments.

    Returns:
        int: its :data:`CLS_TRAINING` epochs, else ``--cls-epochs``.
    """
    return CLS_TRAINING.get(name, {}).get('epochs', args.cls_epochs)


def cls_model(name, work, epochs):
    """Train (when its checkpoint is missing) one small classifier.

    Args:
        name (str): a key of :data:`CLS`.
        work (str): the work dir.
        epochs (int): training epochs.

    Returns:
        tuple[str, list, str]: config, no options, checkpoint.
    """
    config = cls_config(name, work, epochs)
    out = osp.join(work, f'cls_{name}')
    ckpt = osp.join(out, f'epoch_{epochs}.pth')
    if not osp.isfile(ckpt):
        run(osp.join(ROOT, 'tools', 'train.py'), config, '--work-dir', out)
    return config, [], ckpt


def quantize_row(config, opts, ckpt, out, shape, args, **kwargs):
    """:func:`mmrep.apis.quantize.quantize_config` on one trained model.

    Args:
        config (str): the config.
        opts (list[str]): its ``key=value`` overrides.
        ckpt (str): the checkpoint.
        out (str): the INT8 .onnx file.
        shape (tuple[int, int]): the timed input size.
        args (argparse.Namespace): the benchmark's arguments.
        **kwargs: further settings of ``quantize_config``.

    Returns:
        dict: what its JSON holds.
    """
    from mmengine.config import DictAction
    from mmrep.apis import load_config
    from mmrep.apis.quantize import quantize_config
    options = {k: DictAction._parse_iterable(v)
               for k, v in (opt.split('=', 1) for opt in opts)}
    cfg = load_config(config, options)
    return quantize_config(cfg, ckpt, out, calib_batches=args.calib_batches,
                           threads=args.threads, latency_shape=shape,
                           latency_runs=args.runs,
                           runtimes=['onnxruntime'], log=lambda m: None,
                           **kwargs)


def main(argv=None):
    """Run the benchmark; see the module docstring.

    Args:
        argv (list[str], optional): command-line arguments.
    """
    args = parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    from readme_section import machine_line, update_section
    os.makedirs(args.work_dir, exist_ok=True)
    rows, start = [], time.time()
    jobs = [('seg', n) for n in SEG] + [('cls', n) for n in CLS]
    if args.only:
        jobs = [j for j in jobs if f'{j[0]}:{j[1]}' in args.only]
    if args.from_results:
        jobs = []
        with open(osp.join(args.work_dir, 'results.json')) as f:
            for r in json.load(f):
                rows.append((r.pop('kind'), r.pop('family'),
                             r.pop('setting'), r.pop('shape'), r))
    for kind, name in jobs:
        if kind == 'seg':
            config, opts, ckpt = seg_model(name, args.work_dir, args.seg_iters)
            shape = tuple(args.seg_size)
        else:
            config, opts, ckpt = cls_model(name, args.work_dir,
                                           cls_epochs(name, args))
            shape = (CLS_IMG, CLS_IMG)
        settings = [('default', {})] + VARIANTS.get(name, [])
        for label, kwargs in settings:
            tag = f'{kind}_{name}_{label.replace(" ", "-")}'
            out = osp.join(args.work_dir, 'onnx', tag + '.onnx')
            result = quantize_row(config, opts, ckpt, out, shape, args,
                                  **kwargs)
            rows.append((kind, name, label, shape, result))
            m = result['metric']
            print(f'{kind} {name} [{label}]: {m} {result["float32"][m]:.2f}'
                  f' -> {result["int8"][m]:.2f}, '
                  f'{result["float32"]["latency_ms"]:.1f} -> '
                  f'{result["int8"]["latency_ms"]:.1f} ms '
                  f'({result["speedup"]:.2f}x), load '
                  f'{result["latency"]["load_average_before_after"]}',
                  flush=True)
            save_rows(rows, osp.join(args.work_dir, 'results.json'))
    if not args.from_results and osp.isfile(
            osp.join(args.work_dir, 'results.json')):
        with open(osp.join(args.work_dir, 'results.json')) as f:
            rows = [(r.pop('kind'), r.pop('family'), r.pop('setting'),
                     r.pop('shape'), r) for r in json.load(f)]
    text = table(rows, args, machine_line(),
                 None if args.from_results else time.time() - start)
    for kind, name, pattern in (('seg', 'RepMLPNet', 'fc3'),
                                ('cls', 'RepMLP-Res50', 'fc3')):
        if kind == 'seg':
            config = osp.join(SEG_DIR, SEG[name] + '.py')
            ckpt = osp.join(args.work_dir, f'seg_{name}',
                            f'iter_{args.seg_iters}.pth')
        else:
            config = osp.join(args.work_dir, f'cls_{name}.py')
            ckpt = osp.join(args.work_dir, f'cls_{name}',
                            f'epoch_{cls_epochs(name, args)}.pth')
        if osp.isfile(ckpt) and osp.isfile(config):
            text += '\n\n' + ranges_table(
                f'{name} ({kind}): Locality Injection and INT8, trained '
                'weights', ranges_rows(config, [], ckpt, pattern))
    print(text)
    if not args.no_readme:
        update_section('quant-bench', text)


def _ms(value):
    """A latency cell: ``'-'`` for a form that was not timed."""
    return '-' if value is None else f'{value:.2f}'


def save_rows(rows, path):
    """Write the rows into ``path``, replacing earlier rows of the same
    model and setting and keeping the others (runs with ``--only``).

    Args:
        rows (list[tuple]): (kind, family, setting, shape, result).
        path (str): the results JSON.
    """
    kept = []
    if osp.isfile(path):
        with open(path) as f:
            kept = json.load(f)
    new = [dict(kind=k, family=n, setting=s, shape=list(sh), **r)
           for k, n, s, sh, r in rows]
    done = {(r['kind'], r['family'], r['setting']) for r in new}
    kept = [r for r in kept
            if (r['kind'], r['family'], r['setting']) not in done]
    order = {(k, n): i for i, (k, n) in enumerate(
        [('seg', n) for n in SEG] + [('cls', n) for n in CLS])}
    merged = sorted(kept + new, key=lambda r: order.get(
        (r['kind'], r['family']), len(order)))
    with open(path, 'w') as f:
        json.dump(merged, f, indent=2)


def cpu_int8_flags():
    """The CPU's INT8-relevant instruction-set flags.

    Returns:
        str: e.g. ``'avx2, avx512f, avx512bw, avx512_vnni'``.
    """
    try:
        with open('/proc/cpuinfo') as f:
            flags = next(l for l in f if l.startswith('flags')).split()
    except (OSError, StopIteration):
        return 'unknown'
    wanted = ('avx2', 'avx512f', 'avx512bw', 'avx512_vnni', 'avx_vnni',
              'amx_int8')
    return ', '.join(f for f in wanted if f in flags) or 'none of AVX2/VNNI'


def table(rows, args, machine, seconds):
    """The markdown table of the measured rows.

    Args:
        rows (list[tuple]): (kind, family, setting, shape, result).
        args (argparse.Namespace): the benchmark's arguments.
        machine (str): the machine line.
        seconds (float): the run's duration.

    Returns:
        str: markdown.
    """
    lines = [
        f'Machine: {machine}; INT8 instructions: {cpu_int8_flags()}. '
        + ('' if seconds is None else f'Last run: {seconds:.0f} s ')
        + '(rows of earlier runs with `--only` are '
        'kept; each row has its own load average).',
        '',
        f'Batch 1, median of {args.runs} interleaved rounds, '
        f'{args.threads} threads for every form; float32 = the fastest of '
        'fused eager PyTorch, onnxruntime with the deploy head and (UperNet) '
        'onnxruntime with the plain head; INT8 = the QDQ graph in '
        'onnxruntime (CPU EP; UperNet segmentors quantized with the plain '
        'head). Load avg: the 1-minute load average when the timing began '
        '(2 cores). Calibration: '
        f'{args.calib_batches} batches of training images through the test '
        'pipeline, min/max, weights per channel unless said. Training: '
        f'segmentors {args.seg_iters} iterations, classifiers '
        f'{args.cls_epochs} epochs'
        + ''.join(f'; {n} classifier {t["epochs"]} epochs at lr {t["lr"]:g}'
                  for n, t in CLS_TRAINING.items())
        + ' (`CLS_TRAINING` in the script says why).',
        '',
        '| model | setting | input | float32 metric | INT8 metric | drop | '
        'float32 ms (eager / ort / ort plain head) | INT8 ms | speed-up | '
        'load avg |',
        '|---|---|---|---:|---:|---:|---|---:|---:|---|',
    ]
    for kind, name, label, shape, r in rows:
        m = r['metric']
        f = r['float32']['latency_ms_by_runtime']
        what = ('UperNet seg.' if kind == 'seg' else 'classifier')
        lines.append(
            f'| {name} {what} | {label} | {shape[0]}x{shape[1]} | '
            f'{m} {r["float32"][m]:.2f} | {r["int8"][m]:.2f} | '
            f'{r["drop"]:.2f} | {f["fused eager"]:.2f} / '
            f'{f["onnxruntime"]:.2f} / '
            f'{_ms(f.get("onnxruntime, plain head"))} | '
            f'{r["int8"]["latency_ms"]:.2f} | '
            f'{r["speedup"]:.2f}x | '
            f'{r["latency"]["load_average_before_after"][0]:.1f} |')
    return '\n'.join(lines)



def ranges_rows(config, opts, ckpt, pattern='fc3'):
    """Ranges and INT8 rounding errors of the layers named ``pattern``,
    train-time branch weights against fused (Locality Injection).

    Args:
        config (str): the config.
        opts (list[str]): its ``key=value`` overrides.
        ckpt (str): a train-time checkpoint.
        pattern (str): a substring of the layers' names.

    Returns:
        list[tuple]: (layer, train-time row, fused row) per layer, rows from
        :func:`mmrep.deploy.quantize.weight_ranges`.
    """
    from mmengine.config import DictAction
    from mmrep.apis import load_config
    from mmrep.apis.forms import load_fused
    from mmrep.deploy.quantize import weight_ranges
    options = {k: DictAction._parse_iterable(v)
               for k, v in (opt.split('=', 1) for opt in opts)}
    loaded = load_fused(load_config(config, options), ckpt,
                        keep_unfused=True)
    train = {r['name']: r for r in weight_ranges(loaded.model)
             if pattern in r['name']}
    fused = {r['name']: r for r in weight_ranges(loaded.fused)
             if pattern in r['name']}
    return [(n, train[n], fused[n]) for n in train if n in fused]


def ranges_table(title, rows):
    """Markdown of :func:`ranges_rows`.

    Args:
        title (str): the table's title.
        rows (list[tuple]): from :func:`ranges_rows`.

    Returns:
        str: markdown.
    """
    lines = [f'**{title}**', '',
             '| layer | weight | spread train-time / fused | INT8 error '
             'per-tensor train-time / fused | per-channel train-time / '
             'fused |', '|---|---|---|---|---|']
    for name, t, f in rows:
        lines.append(
            f'| {name} | {"x".join(map(str, f["shape"]))} | '
            f'{t["spread"]:.1f} / {f["spread"]:.1f} | '
            f'{100 * t["error_per_tensor"]:.2f}% / '
            f'{100 * f["error_per_tensor"]:.2f}% | '
            f'{100 * t["error_per_channel"]:.2f}% / '
            f'{100 * f["error_per_channel"]:.2f}% |')
    return '\n'.join(lines)


if __name__ == '__main__':
    main()
