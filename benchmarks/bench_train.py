"""Training-step speed and memory: one forward + backward pass in train mode,
mmrep against mmpretrain (and, optionally, the original releases), and the
Cityscapes configs' backbones at two resolutions, in one CPU run.

* Classifiers at batch 8, 224x224 (backbone -> global average pool ->
  1000-class linear head, cross-entropy loss): RepMLPNet-T224 (mmrep,
  mmpretrain ``RepMLPNet`` with the T224 arch dict), RepVGG-A0 (mmrep,
  mmpretrain ``RepVGG('A0')``), CycleMLP-B1 (mmrep; mmpretrain has none).
  Beside each time: the peak memory of one training step, as the peak of
  the bytes that PyTorch's CPU allocator holds for tensors during the step
  (from the profiler's memory events; deterministic), and as the growth of
  the resident set in a fresh process per model (``VmHWM`` after the step
  minus ``VmRSS`` before it, the high-water mark reset through
  ``/proc/self/clear_refs``; Linux only; it includes the libraries' own
  buffers and moves by tens of MiB from run to run).
* Backbones of the ``configs/cityscapes`` configs (mmrep backbones only) at
  batch 1, 512x1024 and 1024x2048 (loss: the sum of the outputs' means),
  with the time ratio for the 4x pixels.
* ``--baseline-root DIR``: also time CycleMLP-B1 (forward and training
  step, both sizes) of another mmrep checkout in ``DIR`` (e.g. ``git
  worktree add DIR REV``), each run in a fresh process alternating with
  one of this checkout, so that a change is measured against the code it
  replaced rather than against a re-creation of it.
* ``--original-root DIR``: also time the original releases, imported from
  ``DIR`` (which holds DingXiaoH/RepMLP's ``repmlpnet.py``, DingXiaoH/
  RepVGG's ``repvgg.py`` and ShoufaChen/CycleMLP's ``cycle_mlp.py``, the
  latter with its own dependencies, timm among them). They are not
  dependencies of mmrep; without the option their rows are left out.

Every timing runs the jobs of a row alternately (so that they share the
machine's state) and reports the median of ``--repeats`` after
``--warmup`` runs.

Usage::

    python benchmarks/bench_train.py [--repeats 3] [--warmup 1]
        [--threads 2] [--seg-repeats N] [--only NAME] [--no-seg]
        [--seg-exclude NAME ...] [--no-memory]
        [--original-root DIR] [--baseline-root DIR]
        [--tables cyclemlp classifiers seg]
        [--no-readme]

Prints markdown tables and writes each into ``benchmarks/README.md`` as
soon as it is done, between the ``<!-- NAME:start -->`` and
``<!-- NAME:end -->`` markers of ``train-bench-cyclemlp``, ``train-bench``
(classifiers) and ``train-bench-seg`` (Cityscapes backbones).
"""
import argparse
import contextlib
import copy
import json
import multiprocessing
import os
import os.path as osp
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from unittest import mock

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.profiler import profile

from bench_deploy import T224_MMPRETRAIN, flat, seg_backbones
from readme_section import machine_line, update_section

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

SEG_SIZES = ((512, 1024), (1024, 2048))


class Classifier(nn.Module):
    """Last backbone output -> global average pool -> linear head."""

    def __init__(self, backbone, channels, num_classes=1000):
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.fc(flat(self.backbone(x))[-1].mean((2, 3)))


def _original(root, module, factory):
    if root not in sys.path:
        sys.path.insert(0, root)
    return getattr(__import__(module), factory)()


def classifiers(original_root=None):
    """``{model: {implementation: build_fn}}`` for the batch-8 rows; each
    ``build_fn`` returns a 1000-class classifier."""
    from mmpretrain.models import RepMLPNet as MMPRepMLPNet
    from mmpretrain.models import RepVGG as MMPRepVGG

    from mmrep.models.backbones import CycleMLP, RepMLPNet, RepVGG
    rows = {
        'RepMLPNet-T224': {
            'mmrep': lambda: Classifier(
                RepMLPNet('T224', out_indices=(3, ), final_norm=True), 512),
            'mmpretrain': lambda: Classifier(MMPRepMLPNet(
                copy.deepcopy(T224_MMPRETRAIN), img_size=224,
                out_indices=(3, ), reparam_conv_kernels=(1, 3),
                final_norm=True), 512),
        },
        'RepVGG-A0': {
            'mmrep': lambda: Classifier(RepVGG('A0'), 1280),
            'mmpretrain': lambda: Classifier(MMPRepVGG('A0'), 1280),
        },
        'CycleMLP-B1': {
            'mmrep': lambda: Classifier(
                CycleMLP('B1', out_indices=(3, ), final_norm=True), 512),
        },
    }
    if original_root:
        for name, module, factory in (
                ('RepMLPNet-T224', 'repmlpnet', 'create_RepMLPNet_T224'),
                ('RepVGG-A0', 'repvgg', 'create_RepVGG_A0'),
                ('CycleMLP-B1', 'cycle_mlp', 'CycleMLP_B1')):
            rows[name]['original'] = \
                lambda m=module, f=factory: _original(original_root, m, f)
    return rows


def train_step(model, x, target=None):
    """One forward + backward pass; returns the loss."""
    model.zero_grad(set_to_none=True)
    out = model(x)
    loss = F.cross_entropy(out, target) if target is not None else \
        sum(o.mean() for o in flat(out))
    loss.backward()
    return loss.detach()


def time_steps(jobs, repeats, warmup):
    """Median milliseconds of each job (callables, run alternately)."""
    times = [[] for _ in jobs]
    for i in range(warmup + repeats):
        for t, job in zip(times, jobs):
            start = time.perf_counter()
            job()
            if i >= warmup:
                t.append((time.perf_counter() - start) * 1e3)
    return [statistics.median(t) for t in times]


def step_tensor_peak(model, x, target=None):
    """Peak MiB that PyTorch's CPU allocator holds for tensors during one
    training step, above what it held before (profiler memory events)."""
    with profile(profile_memory=True) as prof:
        train_step(model, x, target)
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, 'trace.json')
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)['traceEvents']
    held = [e['args']['Total Allocated'] for e in events
            if e.get('name') == '[memory]']
    return max(held + [0]) / 2**20


def _rss_kib(field):
    with open('/proc/self/status') as f:
        return int(re.search(rf'{field}:\s+(\d+) kB', f.read()).group(1))


def _step_memory(args):
    """In a fresh process: resident-set growth (MiB) of one training step of
    ``classifiers(...)[model][impl]`` at batch 8, 224x224."""
    model, impl, threads, original_root = args
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = classifiers(original_root)[model][impl]().train()
    x, target = torch.randn(8, 3, 224, 224), torch.randint(0, 1000, (8, ))
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset the high-water mark to the current RSS
    before = _rss_kib('VmRSS')
    train_step(net, x, target)
    return (_rss_kib('VmHWM') - before) / 1024


def step_memory(model, impl, threads, original_root):
    """:func:`_step_memory` in a spawned process; None where unavailable."""
    try:
        ctx = multiprocessing.get_context('spawn')
        with ctx.Pool(1) as pool:
            return pool.map(_step_memory,
                            [(model, impl, threads, original_root)])[0]
    except Exception as e:  # noqa: BLE001 (reported in the table)
        print(f'memory of {model} {impl}: {e}', file=sys.stderr)
        return None


def cyclemlp_fused_vs_step_by_step(repeats, warmup):
    """CycleMLP-B1 backbone (all four outputs), batch 1, at ``SEG_SIZES``:
    mmrep's fused blocks against the same weights computed step by step
    (``mmrep.utils.testing.cycle_block_step_by_step``: the original's
    sequence of operations, which mmrep ran before), forward without
    autograd and training step.

    Returns:
        list[tuple]: ``(pass, form, ms per size...)`` rows, and the largest
        relative output difference of the two forms.
    """
    from mmrep.models.backbones.cyclemlp import CycleBlock, CycleMLP
    from mmrep.utils.testing import cycle_block_step_by_step
    torch.manual_seed(0)
    net = CycleMLP('B1')

    def run(step_by_step, x, train):
        patch = mock.patch.object(CycleBlock, 'forward',
                                  cycle_block_step_by_step) \
            if step_by_step else contextlib.nullcontext()
        with patch:
            if train:
                return train_step(net.train(), x)
            with torch.no_grad():
                return net.eval()(x)

    x = torch.randn(1, 3, *SEG_SIZES[0])
    diff = max(((a - b).abs().max() / b.abs().max()).item()
               for a, b in zip(run(False, x, False), run(True, x, False)))
    rows = []
    for train in (False, True):
        times = []
        for size in SEG_SIZES:
            x = torch.randn(1, 3, *size)
            times.append(time_steps([lambda: run(False, x, train),
                                     lambda: run(True, x, train)],
                                    repeats, warmup))
        kind = 'forward + backward (train)' if train else 'forward (eval)'
        for i, form in enumerate(('fused (this version)',
                                  'step by step (previous version)')):
            rows.append((kind, form) + tuple(t[i] for t in times))
    return rows, diff


_REVISION_RUN = """
import statistics, sys, time, torch
threads, train, h, w, warmup, repeats = map(int, sys.argv[1:])
torch.set_num_threads(threads)
from mmrep.models.backbones import CycleMLP
torch.manual_seed(0)
net = CycleMLP('B1').train(bool(train))
x = torch.randn(1, 3, h, w)
def run():
    if train:
        net.zero_grad(set_to_none=True)
        sum(o.mean() for o in net(x)).backward()
    else:
        with torch.no_grad():
            net(x)
for _ in range(warmup):
    run()
times = []
for _ in range(repeats):
    start = time.perf_counter()
    run()
    times.append((time.perf_counter() - start) * 1e3)
print(statistics.median(times))
"""


def _revision_ms(root, threads, train, size, warmup):
    """One fresh process importing mmrep from ``root``: milliseconds of one
    CycleMLP-B1 forward or training step at ``size`` after ``warmup``."""
    env = dict(os.environ, PYTHONPATH=root)
    out = subprocess.run(
        [sys.executable, '-c', _REVISION_RUN, str(threads), str(int(train)),
         *map(str, size), str(warmup), '1'], env=env, cwd=root,
        capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def _describe(root):
    try:
        return subprocess.run(['git', '-C', root, 'log', '-1',
                               '--format=%h %s'], capture_output=True,
                              text=True, check=True).stdout.strip()[:72]
    except (OSError, subprocess.CalledProcessError):
        return root


def cyclemlp_vs_revision(root, repeats, warmup, threads):
    """CycleMLP-B1 of this checkout against the mmrep checkout in ``root``,
    each run in fresh processes, alternately (``repeats`` of each).

    Returns:
        list[tuple]: ``(pass, form, ms per size...)`` rows.
    """
    here = osp.dirname(osp.dirname(osp.abspath(__file__)))
    rows = []
    for train in (False, True):
        kind = 'forward + backward (train)' if train else 'forward (eval)'
        times = {here: [], root: []}
        for size in SEG_SIZES:
            runs = {here: [], root: []}
            for _ in range(repeats):
                for r in runs:
                    runs[r].append(_revision_ms(r, threads, train, size,
                                                warmup))
            for r in runs:
                times[r].append(statistics.median(runs[r]))
        rows.append((kind, 'this checkout, fresh processes')
                    + tuple(times[here]))
        rows.append((kind, f'baseline `{_describe(root)}`')
                    + tuple(times[root]))
    return rows


def size_header(first):
    """Header lines of a table with one column per ``SEG_SIZES`` entry and
    the ratio of the last two."""
    sizes = ' | '.join(f'{h}x{w} ms' for h, w in SEG_SIZES)
    return [f'| {first} | {sizes} | ratio (4x pixels) |',
            '|---|---|' + '---:|' * (len(SEG_SIZES) + 1)]


def size_cells(times):
    """Cells of :func:`size_header` for one row of times."""
    return ' | '.join(f'{t:.0f}' for t in times) + \
        f' | {times[-1] / times[-2]:.2f}'


def classifier_table(args, wanted, log):
    """Lines of the batch-8 classifier table (times and peak memory)."""
    lines = [
        '**Classifiers, batch 8, 224x224** (peak memory of one training '
        'step: tensors held by PyTorch\'s allocator, and the resident-set '
        'growth in a fresh process)',
        '',
        '| model | implementation | step ms | vs mmrep | peak tensor memory '
        'MiB | resident-set growth MiB |',
        '|---|---|---:|---:|---:|---:|',
    ]
    for model, impls in classifiers(args.original_root).items():
        if not wanted(model):
            continue
        log(model)
        torch.manual_seed(0)
        x, target = torch.randn(8, 3, 224, 224), torch.randint(0, 1000, (8, ))
        nets, missing = {}, []
        for impl, build in impls.items():
            try:
                nets[impl] = build().train()
            except Exception as e:  # noqa: BLE001 (optional originals)
                missing.append(f'{impl}: {type(e).__name__}: {e}')
        times = time_steps([lambda n=n: train_step(n, x, target)
                            for n in nets.values()], args.repeats,
                           args.warmup)
        ms = dict(zip(nets, times))
        for impl, t in ms.items():
            peak = rss = None
            if not args.no_memory:
                peak = step_tensor_peak(nets[impl], x, target)
                rss = step_memory(model, impl, args.threads,
                                  args.original_root)
            lines.append(
                f'| {model} | {impl} | {t:.0f} | '
                f'{t / ms["mmrep"]:.2f}x | ' + ' | '.join(
                    '-' if m is None else f'{m:.0f}' for m in (peak, rss))
                + ' |')
        for m in missing:
            lines.append(f'| {model} | not built ({m}) | | | | |')
    return lines


def seg_table(args, wanted, log):
    """Lines of the Cityscapes backbones' table."""
    repeats = args.seg_repeats or args.repeats
    lines = [
        f'**Cityscapes configs\' backbones, batch 1** (loss: sum of the '
        f'outputs\' means; median of {repeats})',
        '',
        *size_header('config | backbone'),
    ]
    done = {}
    for cfg_name, build in seg_backbones(False):
        if not wanted(cfg_name) or any(e in cfg_name
                                       for e in args.seg_exclude):
            continue
        if isinstance(build, str):
            if build in done:
                lines.append(f'| {cfg_name} | as {build} | {done[build]} |')
            continue
        log(cfg_name)
        net = build().train()
        times = []
        for h, w in SEG_SIZES:
            x = torch.randn(1, 3, h, w)
            times += time_steps([lambda: train_step(net, x)], repeats,
                                args.warmup)
        done[cfg_name] = size_cells(times)
        lines.append(f'| {cfg_name} | {type(net).__name__} | '
                     f'{done[cfg_name]} |')
    return lines


def pair_rows(rows, label):
    """Table lines of ``(pass, form, ms per size...)`` rows that come in
    pairs per pass (this form, the other), then each pass's speed-up."""
    lines = [f'| {kind} | {form} | {size_cells(times)} |'
             for kind, form, *times in rows]
    for i in range(0, len(rows), 2):
        lines.append(f'| {rows[i][0]} | {label} | ' + ' | '.join(
            f'{b / a:.2f}x' for a, b in zip(rows[i][2:], rows[i + 1][2:]))
            + ' | |')
    return lines


def cyclemlp_table(args, wanted, log):
    """Lines of the CycleMLP fused vs step-by-step table."""
    log('CycleMLP-B1 fused vs step by step')
    ab, diff = cyclemlp_fused_vs_step_by_step(args.repeats, args.warmup)
    lines = [
        f'**CycleMLP-B1 backbone, batch 1: fused blocks vs step by step**'
        f' (same weights; outputs agree to {diff:.1e} relative)',
        '',
        *size_header('pass | form'),
    ]
    lines += pair_rows(ab, 'speed-up of the fused form')
    if args.baseline_root:
        log(f'CycleMLP-B1 against {args.baseline_root}')
        rev = cyclemlp_vs_revision(args.baseline_root, args.repeats,
                                   args.warmup, args.threads)
        lines += ['', f'**CycleMLP-B1 backbone, batch 1: this checkout '
                  f'against an earlier revision** (each time a fresh '
                  f'process, the two checkouts alternating; median of '
                  f'{args.repeats})', '', *size_header('pass | code')]
        lines += pair_rows(rev, 'speed-up over the baseline')
    return lines


TABLES = {'cyclemlp': ('train-bench-cyclemlp', cyclemlp_table),
          'classifiers': ('train-bench', classifier_table),
          'seg': ('train-bench-seg', seg_table)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--seg-repeats', type=int, default=None,
                        help='repeats of the Cityscapes backbones\' table '
                        '(default: --repeats)')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--only', default=None,
                        help='time only models / configs whose name '
                        'contains this string')
    parser.add_argument('--no-seg', action='store_true',
                        help='skip the Cityscapes backbones and the CycleMLP '
                        'comparison')
    parser.add_argument('--seg-exclude', nargs='*', default=[],
                        metavar='NAME', help='leave out Cityscapes configs '
                        'whose name contains one of these strings (e.g. '
                        'when the machine lacks the memory for them)')
    parser.add_argument('--no-memory', action='store_true',
                        help='skip the peak-memory measurements')
    parser.add_argument('--original-root', default=None, metavar='DIR',
                        help='directory holding the original releases\' '
                        'model files (repmlpnet.py, repvgg.py, '
                        'cycle_mlp.py) to compare against')
    parser.add_argument('--baseline-root', default=None, metavar='DIR',
                        help='an earlier mmrep checkout (e.g. git worktree '
                        'add DIR REV) whose CycleMLP-B1 the cyclemlp table '
                        'also times, in fresh processes')
    parser.add_argument('--tables', nargs='+', default=list(TABLES),
                        choices=list(TABLES),
                        help='tables to produce (default: all)')
    parser.add_argument('--no-readme', action='store_true',
                        help='print only; leave benchmarks/README.md alone')
    args = parser.parse_args()
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1 or (
            args.seg_repeats is not None and args.seg_repeats < 1):
        raise ValueError('--repeats, --seg-repeats and --threads must be '
                         'positive, --warmup non-negative')
    if args.baseline_root and not osp.isdir(
            osp.join(args.baseline_root, 'mmrep')):
        parser.error(f'--baseline-root {args.baseline_root}: no mmrep '
                     f'package there')
    torch.set_num_threads(args.threads)

    def wanted(name):
        return not args.only or args.only.lower() in name.lower()

    def log(msg):
        print(f'[{time.perf_counter() - started:6.0f}s] {msg}',
              file=sys.stderr, flush=True)

    # Each table is written into its own README section as soon as it is
    # done, so that an interrupted run keeps what it measured.
    tables = [t for t in args.tables
              if not (args.no_seg and t != 'classifiers')
              and (t != 'cyclemlp' or wanted('CycleMLP-B1'))]
    for name in tables:
        section, table = TABLES[name]
        repeats = args.seg_repeats or args.repeats if name == 'seg' \
            else args.repeats
        started = time.perf_counter()
        lines = table(args, wanted, log)
        text = '\n'.join([
            f'Machine: {machine_line()}. Median of {repeats} timed runs'
            f' after {args.warmup} warm-up (the forms of a row alternate); '
            f'training steps: forward + backward, train mode, float32. '
            f'This table: {time.perf_counter() - started:.0f} s.', ''
        ] + lines)
        print(text + '\n', flush=True)
        if args.no_readme:
            continue
        if update_section(section, text):
            log(f'benchmarks/README.md section {section} updated')
        else:
            log(f'benchmarks/README.md has no {section} markers; not written')


if __name__ == '__main__':
    main()
