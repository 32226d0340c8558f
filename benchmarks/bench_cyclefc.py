"""Cycle FC speed: mmrep's shift + 1x1 projection against the original's
deformable-convolution form, forward + backward on CPU.

Both sides use the same weights, bias and fixed offsets; the outputs and the
gradients (input, weight, bias) are checked to agree to 1e-5 (gradients
relative to their magnitude) before timing. The deformable baseline is
``mmcv.ops.deform_conv2d`` when ``mmcv.ops`` imports, and
``torchvision.ops.deform_conv2d`` (what the original release calls) always.

Usage::

    python benchmarks/bench_cyclefc.py [--iters 10] [--warmup 2]
        [--threads N] [--batch 8] [--no-readme]

Prints a markdown table of milliseconds per forward + backward pass
(median over ``--iters``, the two sides timed alternately) and the speed-up
of mmrep's layer, and writes it into ``benchmarks/README.md`` between the
``cyclefc-bench`` markers (``--no-readme``: print only).
"""
import argparse
import statistics
import time

import torch
from torch.func import functional_call
from torchvision.ops import deform_conv2d as tv_deform_conv2d

from readme_section import machine_line, update_section

from mmrep.models.layers import CycleFC

CASES = [(64, 56, 56), (320, 14, 14)]
KERNELS = [(1, 3), (3, 1)]


def mmcv_deform_conv2d():
    """``mmcv.ops.deform_conv2d`` or None when mmcv's ops do not import."""
    try:
        from mmcv.ops import deform_conv2d
    except Exception:  # ImportError, or an mmcv build without its ops
        return None
    return deform_conv2d


def make_baselines(layer):
    """Deformable-conv forms of ``layer``: ``{name: fn(x, weight, bias)}``."""
    def torchvision_form(x, weight, bias):
        n, _, h, w = x.shape
        offset = layer.offset.expand(n, -1, h, w)
        return tv_deform_conv2d(x, offset, weight, bias)

    forms = {'torchvision deform_conv2d': torchvision_form}
    mmcv_fn = mmcv_deform_conv2d()
    if mmcv_fn is not None:
        def mmcv_form(x, weight, bias):
            n, c, h, w = x.shape
            offset = layer.offset.expand(n, -1, h, w).contiguous()
            # mmcv's deform conv has no bias: one offset group per channel.
            out = mmcv_fn(x, offset, weight, 1, 0, 1, 1, c)
            return out + bias[:, None, None]

        forms['mmcv deform_conv2d'] = mmcv_form
    return forms


def fwd_bwd(fn, x, weight, bias, grad):
    """One forward + backward; returns the output and the three
    gradients."""
    x = x.detach().requires_grad_()
    weight = weight.detach().requires_grad_()
    bias = bias.detach().requires_grad_()
    out = fn(x, weight, bias)
    gx, gw, gb = torch.autograd.grad(out, (x, weight, bias), grad)
    return out.detach(), gx, gw, gb


def time_pair_ms(first, second, iters, warmup):
    """Median milliseconds of two ``(fn, args)`` jobs, run alternately so
    that both see the same machine state (threads, caches, clock)."""
    for _ in range(warmup):
        for fn, fn_args in (first, second):
            fn(*fn_args)
    times = ([], [])
    for _ in range(iters):
        for (fn, fn_args), out in zip((first, second), times):
            start = time.perf_counter()
            fn(*fn_args)
            out.append((time.perf_counter() - start) * 1e3)
    return tuple(statistics.median(t) for t in times)


def check(name, ours, ref):
    """Raise unless outputs agree to 1e-5 (absolute) and gradients to 1e-5
    relative to their largest magnitude."""
    labels = ('output', 'input grad', 'weight grad', 'bias grad')
    for label, a, b in zip(labels, ours, ref):
        diff = (a - b).abs().max().item()
        tol = 1e-5 if label == 'output' else 1e-5 * max(
            1., b.abs().max().item())
        if diff > tol:
            raise AssertionError(f'{name}: {label} differs by {diff:.3g} '
                                 f'(> {tol:.3g})')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads (default: torch default)')
    parser.add_argument('--no-readme', action='store_true',
                        help='print only; leave benchmarks/README.md alone')
    args = parser.parse_args()
    if args.iters < 1 or args.warmup < 0 or args.batch < 1:
        raise ValueError('--iters and --batch must be positive, --warmup '
                         'non-negative')
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    for channels, h, w in CASES:
        for kernel in KERNELS:
            torch.manual_seed(0)
            layer = CycleFC(channels, channels, kernel)
            x = torch.randn(args.batch, channels, h, w)
            grad = torch.randn(args.batch, channels, h, w)
            weight, bias = layer.weight.detach(), layer.bias.detach()

            def ours(x, weight, bias, layer=layer):
                return functional_call(layer, {'weight': weight,
                                               'bias': bias}, (x, ))

            ours_args = (ours, x, weight, bias, grad)
            ref_out = fwd_bwd(*ours_args)
            for name, fn in make_baselines(layer).items():
                base_args = (fn, x, weight, bias, grad)
                check(f'{name} {channels}x{h}x{w} {kernel}', ref_out,
                      fwd_bwd(*base_args))
                base_ms, ours_ms = time_pair_ms(
                    (fwd_bwd, base_args), (fwd_bwd, ours_args), args.iters,
                    args.warmup)
                rows.append((f'{args.batch}x{channels}x{h}x{w}', kernel,
                             name, base_ms, ours_ms))

    lines = [f'CycleFC forward + backward, CPU, median of {args.iters}. '
             f'Machine: {machine_line()}.', '',
             '| input (NxCxHxW) | pseudo-kernel | deformable baseline | '
             'baseline ms | mmrep ms | speed-up |',
             '|---|---|---|---:|---:|---:|']
    for shape, kernel, name, base_ms, ours_ms in rows:
        lines.append(f'| {shape} | {kernel} | {name} | {base_ms:.1f} | '
                     f'{ours_ms:.1f} | {base_ms / ours_ms:.1f}x |')
    print('\n'.join(lines))
    if not args.no_readme and update_section('cyclefc-bench',
                                              '\n'.join(lines)):
        print('(written to benchmarks/README.md)')


if __name__ == '__main__':
    main()
