"""Deploy speed: train-time form (eval mode) against the fused form of every
mmrep backbone preset, mmrep's fused RepMLPNet-T224 against mmpretrain's,
and the fused T224's arithmetic throughput against a plain matmul, all in
one CPU run.

* Presets (batch 8 at 224x224, 256x256 for the ``*256`` RepMLPNets):
  RepMLPNet, RepVGG, RepMLP-Res50 and CycleMLP (which has no
  re-parameterization: LayerNorm, nothing to fuse; timed once, 1.0x).
* Segmentation configs of ``configs/cityscapes`` whose backbone is an mmrep
  one: the **backbone only** (the whole segmentor: ``--dense`` below), at
  batch 1, 512x1024.
* mmrep's fused RepMLPNet-T224 against mmpretrain's (``mmpretrain.models.
  RepMLPNet`` with the T224 arch dict, img_size 224, ``switch_to_deploy()``):
  a train-time mmpretrain model with random BN statistics is loaded into
  mmrep through mmrep's mmpretrain key conversion (``load_pretrained``),
  both are fused and their outputs checked to agree before timing.
* Throughput: FLOPs of the fused T224 forward counted by
  ``mmengine.analysis.FlopAnalyzer`` (multiply-accumulates; GFLOP/s below
  count 2 per multiply-accumulate, as ``2 n^3`` for the matmul) against a
  2048x2048 float32 matmul timed in the same loop.

Every timing: ``torch.inference_mode()``, warm-up, then the jobs of a row
run alternately (so they share the machine's state) and the median of
``--repeats`` is reported. Fused outputs are checked against the train-time
ones (relative difference <= 1e-3) on random weights.

Usage::

    python benchmarks/bench_deploy.py [--quick] [--repeats 3] [--warmup 1]
        [--threads 2] [--only NAME ...] [--seg-size 512 1024] [--no-readme]

Prints markdown tables and writes them into ``benchmarks/README.md``
between ``<!-- deploy-bench:start -->`` and ``<!-- deploy-bench:end -->``.

``--dense`` times the whole segmentor instead (``mode='tensor'``: backbone
and heads) of every ``configs/cityscapes`` config (``--only`` selects) at
batch 1 and ``--seg-size``, in four forms: train-time eager, fused eager
(:func:`mmrep.reparameterize_model`: backbone fused and the heads' BNs
folded), fused with ``channels_last`` weights and input, and the fused model
exported by ``tools/export_onnx.py --dynamic`` run by onnxruntime (CPU
execution provider, ``--threads`` intra-op threads); each against the
train-time model's outputs. Its table goes between
``<!-- dense-bench:start -->`` and ``<!-- dense-bench:end -->``.
"""
import argparse
import copy
import glob
import os.path as osp
import statistics
import sys
import time
import warnings

import torch

from readme_section import machine_line, update_section

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
warnings.filterwarnings('ignore', message='TF32 acceleration on top of oneDNN')

import mmrep
from mmrep.models.backbones import (CycleMLP, RepMLPNet, RepMLPResNet,
                                    RepVGG)
from mmrep.models.layers.linear import linear
from mmrep.utils.testing import randomize_bn

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
T224_MMPRETRAIN = dict(channels=[64, 128, 256, 512], depths=[2, 2, 6, 2],
                       sharesets_nums=[1, 4, 16, 128])


def presets(quick):
    """``[(family, preset, build_fn, input_size)]`` at batch 8."""
    rows = []
    for name in RepMLPNet.arch_zoo:
        rows.append(('RepMLPNet', name,
                     lambda n=name: RepMLPNet(n, out_indices=(3, ),
                                              final_norm=True),
                     int(name[-3:])))
    for name in RepVGG.arch_zoo:
        rows.append(('RepVGG', name, lambda n=name: RepVGG(n), 224))
    for name in RepMLPResNet.arch_zoo:
        rows.append(('RepMLP-Res50', name,
                     lambda n=name: RepMLPResNet(n), 224))
    for name in CycleMLP.arch_zoo:
        rows.append(('CycleMLP', name, lambda n=name: CycleMLP(n), 224))
    if quick:
        keep = {'T224', 'A0', 'bottleneck-224', 'B1'}
        rows = [r for r in rows if r[1] in keep and
                not (r[0] == 'RepVGG' and r[1] == 'B1')]
    return rows


def seg_backbones(quick):
    """``[(config name, build_fn)]`` for configs/cityscapes configs whose
    backbone is an mmrep one; ``build_fn`` is the name of an earlier config
    when the backbone is the same."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    rows, seen = [], {}
    for path in sorted(glob.glob(osp.join(REPO, 'configs', 'cityscapes',
                                          '*.py'))):
        cfg = Config.fromfile(path)
        backbone = cfg.model.get('backbone', {})
        if not str(backbone.get('type', '')).startswith('mmrep.'):
            continue
        key = repr(sorted(backbone.to_dict().items()))
        if key in seen:  # the same backbone: timed once
            rows.append((osp.basename(path)[:-3], seen[key]))
            continue
        seen[key] = osp.basename(path)[:-3]
        scope = cfg.get('default_scope', 'mmseg')

        def build(backbone=copy.deepcopy(backbone), scope=scope):
            from mmengine.registry import MODELS
            init_default_scope(scope)
            return MODELS.build(backbone)

        rows.append((osp.basename(path)[:-3], build))
    if quick:
        rows = [r for r in rows if 'pspnet_repmlpnet-t224' in r[0]]
    return rows


def time_jobs(jobs, repeats, warmup):
    """Run ``jobs`` (callables) alternately; return the median milliseconds
    of each and its last result."""
    results = [None] * len(jobs)
    times = [[] for _ in jobs]
    with torch.inference_mode():
        for _ in range(warmup):
            for i, job in enumerate(jobs):
                results[i] = job()
        for _ in range(repeats):
            for i, job in enumerate(jobs):
                start = time.perf_counter()
                results[i] = job()
                times[i].append((time.perf_counter() - start) * 1e3)
    return [statistics.median(t) for t in times], results


def flat(out):
    if torch.is_tensor(out):
        return [out]
    return [t for o in out for t in flat(o)]


def rel_diff(a, b):
    """Largest relative difference between two (nested) outputs."""
    return max(((x - y).abs().max() / y.abs().max().clamp_min(1e-12)).item()
               for x, y in zip(flat(a), flat(b)))


def train_vs_fused(build, x, repeats, warmup):
    """Median ms of the train-time (eval) and fused forward, and their
    relative output difference; ``fused_ms`` is None without fusion."""
    model = build().eval()
    if not any(callable(getattr(m, 'reparameterize', None))
               for m in model.modules() if m is not model):
        (ms, ), _ = time_jobs([lambda: model(x)], repeats, warmup)
        return ms, None, 0.0
    fused = mmrep.reparameterize_model(model)
    (train_ms, fused_ms), (ref, out) = time_jobs(
        [lambda: model(x), lambda: fused(x)], repeats, warmup)
    diff = rel_diff(out, ref)
    if diff > 1e-3:
        raise AssertionError(f'fused output differs by {diff:.3g}')
    return train_ms, fused_ms, diff


def count_macs(model, x):
    """Multiply-accumulates of ``model(x)`` by mmengine's FlopAnalyzer
    (``aten::baddbmm`` counted as the ``bmm`` it contains)."""
    from mmengine.analysis import FlopAnalyzer
    from mmengine.analysis.jit_handles import bmm_flop_jit
    analyzer = FlopAnalyzer(model, (x, ))
    analyzer.set_op_handle(
        'aten::baddbmm', lambda inputs, outputs: bmm_flop_jit(
            inputs[1:3], outputs))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    with torch.no_grad():
        return analyzer.total()


def mmpretrain_comparison(repeats, warmup):
    """mmrep vs mmpretrain fused T224 and the matmul reference.

    Returns:
        dict: ``mmrep_ms``, ``mmpretrain_ms``, ``matmul_ms``, ``macs``,
        ``mmpretrain_macs``, ``diff``.
    """
    from mmpretrain.models import RepMLPNet as MMPRepMLPNet
    torch.manual_seed(0)
    theirs = randomize_bn(MMPRepMLPNet(
        copy.deepcopy(T224_MMPRETRAIN), img_size=224, out_indices=(3, ),
        reparam_conv_kernels=(1, 3), final_norm=True)).eval()
    ours = RepMLPNet('T224', out_indices=(3, ), final_norm=True).eval()
    mmrep.load_pretrained(ours, {'state_dict': {
        'backbone.' + k: v for k, v in theirs.state_dict().items()}})
    with torch.no_grad():
        theirs.switch_to_deploy()
    ours = mmrep.reparameterize_model(ours)
    x = torch.randn(8, 3, 224, 224)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    b_t = b.t().contiguous()

    def generic():
        with torch.backends.mkldnn.flags(enabled=False):
            return ours(x)
    (ours_ms, theirs_ms, generic_ms, mm_ms, onednn_mm_ms), \
        (out, ref, generic_out, mm, onednn_mm) = time_jobs(
            [lambda: ours(x), lambda: theirs(x), generic, lambda: a @ b,
             lambda: linear(a, b_t)], repeats, warmup)
    diff = rel_diff(out, ref)
    if diff > 1e-3 or rel_diff(generic_out, ref) > 1e-3:
        raise AssertionError(f'mmrep and mmpretrain fused T224 differ by '
                             f'{diff:.3g}')
    if rel_diff(onednn_mm, mm) > 1e-5:
        raise AssertionError('the oneDNN matmul differs from a @ b')
    return dict(mmrep_ms=ours_ms, mmpretrain_ms=theirs_ms,
                generic_ms=generic_ms, matmul_ms=mm_ms,
                onednn_matmul_ms=onednn_mm_ms, macs=count_macs(ours, x),
                mmpretrain_macs=count_macs(theirs, x), diff=diff)


def selected(only, name):
    """Whether ``--only`` (None: everything) selects ``name``."""
    return not only or any(s in name for s in only)


def build_segmentor(path):
    """The config's segmentor with random weights and BN statistics."""
    from mmrep.apis import build_model, load_config
    cfg = load_config(path)
    cfg.model.backbone.pop('init_cfg', None)
    return randomize_bn(build_model(cfg)).eval()


def dense_row(path, size, threads, repeats, warmup, workdir):
    """Time one segmentor in its four forms.

    Returns:
        dict: ``{form: (ms, relative difference to train-time)}``.
    """
    from mmrep.apis.onnx_export import export
    from mmrep.deploy.runtime import session
    model = build_segmentor(path)
    fused = mmrep.reparameterize_model(model)
    fused_cl = copy.deepcopy(fused).to(memory_format=torch.channels_last)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    x_cl = x.contiguous(memory_format=torch.channels_last)
    onnx_file = osp.join(workdir, osp.basename(path)[:-3] + '.onnx')
    export(fused, x, onnx_file, dynamic=True)
    sess = session(onnx_file, threads)
    feed = {sess.get_inputs()[0].name: x.numpy()}
    forms = {
        'train-time eager': lambda: model(x, mode='tensor'),
        'fused eager': lambda: fused(x, mode='tensor'),
        'fused channels_last': lambda: fused_cl(x_cl, mode='tensor'),
        'fused onnxruntime': lambda: [torch.from_numpy(o)
                                      for o in sess.run(None, feed)],
    }
    times, outs = time_jobs(list(forms.values()), repeats, warmup)
    return {name: (ms, rel_diff(out, outs[0]))
            for name, ms, out in zip(forms, times, outs)}


def dense_table(args, repeats, log):
    """Markdown table of :func:`dense_row` for the selected configs."""
    import tempfile
    paths = sorted(glob.glob(osp.join(REPO, 'configs', 'cityscapes',
                                      '*.py')))
    paths = [p for p in paths if selected(args.only, osp.basename(p))]
    h, w = args.seg_size
    lines = [
        f'Machine: {machine_line()}.',
        f'Median of {repeats} timed runs after {args.warmup} warm-up, the '
        f'four forms run alternately; `torch.inference_mode()`, float32, '
        f'batch 1, {h}x{w}, random weights and BN statistics. Max diff: '
        'largest difference to the train-time outputs, relative to their '
        'largest magnitude.',
        '',
        '| config | train-time eager ms | fused eager ms | fused '
        'channels_last ms | fused onnxruntime ms | max diff (fused / '
        'channels_last / onnxruntime) |',
        '|---|---:|---:|---:|---:|---|',
    ]
    with tempfile.TemporaryDirectory() as workdir:
        for path in paths:
            log(osp.basename(path))
            row = dense_row(path, (h, w), args.threads, repeats,
                            args.warmup, workdir)
            base = row['train-time eager'][0]
            cells = [f'{ms:.0f} ({base / ms:.2f}x)' for ms, _ in
                     row.values()]
            diffs = ' / '.join(f'{d:.1e}' for _, d in
                               list(row.values())[1:])
            lines.append(f'| {osp.basename(path)[:-3]} | {base:.0f} | '
                         f'{" | ".join(cells[1:])} | {diffs} |')
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='one preset per family, one segmentation '
                        'config, one repeat')
    parser.add_argument('--repeats', type=int, default=None,
                        help='timed repeats (default 3; 1 with --quick)')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--only', nargs='+', default=None,
                        help='time only presets / configs whose name '
                        'contains one of these strings')
    parser.add_argument('--seg-size', type=int, nargs=2, default=(512, 1024),
                        metavar=('H', 'W'))
    parser.add_argument('--no-readme', action='store_true',
                        help='print only; leave benchmarks/README.md alone')
    parser.add_argument('--dense', action='store_true',
                        help='time whole segmentors of configs/cityscapes '
                        '(four deploy forms) instead')
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    if repeats < 1 or args.warmup < 0 or args.threads < 1:
        raise ValueError('--repeats and --threads must be positive, '
                         '--warmup non-negative')
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    def log(msg):
        print(f'[{time.perf_counter() - started:6.0f}s] {msg}',
              file=sys.stderr, flush=True)

    if args.dense:
        text = dense_table(args, repeats, log)
        print(text)
        if not args.no_readme and update_section('dense-bench', text):
            log('benchmarks/README.md updated')
        return

    log('mmrep vs mmpretrain fused RepMLPNet-T224')
    cmp = mmpretrain_comparison(max(repeats, 5), max(args.warmup, 1))
    mm_gflops = 2 * 2048**3 / cmp['matmul_ms'] / 1e6
    onednn_gflops = 2 * 2048**3 / cmp['onednn_matmul_ms'] / 1e6
    best_gflops = max(mm_gflops, onednn_gflops)
    model_gflops = 2 * cmp['macs'] / cmp['mmrep_ms'] / 1e6

    rows = []
    for family, name, build, size in presets(args.quick):
        if not selected(args.only, name):
            continue
        log(f'{family} {name}')
        x = torch.randn(8, 3, size, size)
        rows.append((family, name, f'8x3x{size}x{size}',
                     *train_vs_fused(build, x, repeats, args.warmup)))
    seg_rows = []
    x = torch.randn(1, 3, *args.seg_size)
    for cfg_name, build in seg_backbones(args.quick):
        if not selected(args.only, cfg_name):
            continue
        if isinstance(build, str):
            same = [r for r in seg_rows if r[0] == build][0]
            seg_rows.append((cfg_name, f'{same[1]} (as {build})',
                             *same[2:]))
            continue
        log(cfg_name)
        seg_rows.append((cfg_name, type(build()).__name__,
                         *train_vs_fused(build, x, repeats, args.warmup)))
    t224 = [r for r in rows if r[:2] == ('RepMLPNet', 'T224')]
    t224 = f'{t224[0][3] / t224[0][4]:.2f}x' if t224 else 'not timed'

    def speed(train_ms, fused_ms):
        return '1.0x (no fusion)' if fused_ms is None else \
            f'{train_ms / fused_ms:.2f}x'

    def ms(v):
        return '=' if v is None else f'{v:.0f}'

    lines = [
        f'Machine: {machine_line()}.',
        f'Median of {repeats} timed runs after {args.warmup} warm-up '
        f'(comparison rows: {max(repeats, 5)}), `torch.inference_mode()`, '
        f'float32. Whole run: {time.perf_counter() - started:.0f} s'
        f'{" (--quick)" if args.quick else ""}.',
        '',
        '**Fused RepMLPNet-T224, batch 8, 224x224**',
        '',
        '| measure | value | target |',
        '|---|---:|---|',
        f'| mmrep fused | {cmp["mmrep_ms"]:.0f} ms | |',
        f'| mmpretrain fused (`switch_to_deploy()`, same weights, outputs '
        f'agree to {cmp["diff"]:.1e}) | {cmp["mmpretrain_ms"]:.0f} ms | |',
        f'| speed-up over mmpretrain fused | '
        f'{cmp["mmpretrain_ms"] / cmp["mmrep_ms"]:.2f}x | >= 3x |',
        f'| speed-up over mmrep train-time form (table below) | '
        f'{t224} | >= 1.3x |',
        f'| work (mmengine FlopAnalyzer) | {cmp["macs"] / 1e9:.1f} GMAC '
        f'(mmpretrain: {cmp["mmpretrain_macs"] / 1e9:.1f}) | |',
        f'| mmrep fused with PyTorch\'s oneDNN backend off '
        f'(`torch.backends.mkldnn.flags(enabled=False)`) | '
        f'{cmp["generic_ms"]:.0f} ms | |',
        f'| fused forward throughput | {model_gflops:.0f} GFLOP/s | |',
        f'| 2048x2048 float32 matmul `a @ b` (MKL), same run | '
        f'{mm_gflops:.0f} GFLOP/s | |',
        f'| the same matmul through oneDNN (`mmrep...linear`), same run | '
        f'{onednn_gflops:.0f} GFLOP/s | |',
        f'| fused forward / faster matmul | '
        f'{model_gflops / best_gflops:.0%} | >= 50% |',
        '',
        '**Backbone presets, batch 8** (train-time form in eval mode vs '
        'fused; `=`: nothing to fuse, timed once)',
        '',
        '| family | preset | input | train-time ms | fused ms | speed-up |',
        '|---|---|---|---:|---:|---:|',
    ]
    for family, name, shape, train_ms, fused_ms, _ in rows:
        lines.append(f'| {family} | {name} | {shape} | {train_ms:.0f} | '
                     f'{ms(fused_ms)} | {speed(train_ms, fused_ms)} |')
    lines += [
        '',
        f'**Segmentation configs (`configs/cityscapes`), backbone only, '
        f'batch 1, {args.seg_size[0]}x{args.seg_size[1]}**',
        '',
        '| config | backbone | train-time ms | fused ms | speed-up |',
        '|---|---|---:|---:|---:|',
    ]
    for cfg_name, kind, train_ms, fused_ms, _ in seg_rows:
        lines.append(f'| {cfg_name} | {kind} | {train_ms:.0f} | '
                     f'{ms(fused_ms)} | {speed(train_ms, fused_ms)} |')
    text = '\n'.join(lines)
    print(text)
    if not args.no_readme:
        if update_section('deploy-bench', text):
            log('benchmarks/README.md updated')
        else:
            log('benchmarks/README.md has no deploy-bench markers; '
                'not written')


if __name__ == '__main__':
    main()
