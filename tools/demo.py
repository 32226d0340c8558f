"""The README demo: train a small UperNet + RepMLPNet on generated
Cityscapes-layout data on the CPU, evaluate its mIoU and say where the
checkpoint is.

Usage:
    python tools/demo.py [--work-dir work_dirs/demo] [--data-root data/demo_cityscapes]
        [--iters N]

Training and evaluation run as ``tools/train.py`` and ``tools/test.py``
subprocesses with :func:`mmrep.apis.demo.demo_config_options`.

Exit status: 0 when done; 1 for a refused input (the demo config missing,
``--data-root`` or ``--work-dir`` naming something that is not a folder):
one ``error:`` line on stderr, nothing written; 2 for arguments argparse
rejects; a failing step's own status, after its own message, when training
or evaluation fails.
"""
import argparse
import json
import os.path as osp
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'cityscapes',
                  'demo_upernet_repmlpnet-tiny_1xb8-cpu_cityscapes-synthetic.py')


def positive_int(text):
    """``argparse`` type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {value}')
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs',
                                                       'demo'))
    parser.add_argument('--data-root',
                        default=osp.join(ROOT, 'data', 'demo_cityscapes'))
    parser.add_argument('--iters', type=positive_int, default=300,
                        help='training iterations (default: 300); the '
                        'learning-rate warm-up takes a tenth of them, at '
                        'most 30')
    return parser.parse_args(argv)


def run_step(*args):
    """Run ``python *args`` in the repository; a failing step ends the demo
    with its exit status (the step has said why)."""
    proc = subprocess.run([sys.executable, *args], cwd=ROOT)
    if proc.returncode:
        raise SystemExit(proc.returncode)


def main(argv=None):
    """Run the demo.

    Args:
        argv (list[str], optional): command-line arguments.

    Raises:
        SystemExit: ``'error: ...'`` (exit status 1) for a refused input,
            before anything is written; a failing step's exit status.
    """
    args = parse_args(argv)

    sys.path.insert(0, ROOT)
    from mmrep.apis import BadArgumentError, refusals_as_errors
    from mmrep.apis.demo import demo_config_options, majority_miou
    from mmrep.datasets import make_cityscapes_like
    with refusals_as_errors():
        if not osp.isfile(CONFIG):
            raise FileNotFoundError(f'the demo config is missing: {CONFIG}')
        for option, path in (('--data-root', args.data_root),
                             ('--work-dir', args.work_dir)):
            if osp.exists(path) and not osp.isdir(path):
                raise BadArgumentError(f'{option} {path} exists and is not '
                                       f'a folder')
    if not osp.isdir(osp.join(args.data_root, 'gtFine', 'val')):
        print(f'[demo] writing a Cityscapes-layout dataset to {args.data_root}')
        make_cityscapes_like(args.data_root, num_train=64, num_val=16)
    opts = demo_config_options(args.data_root, args.iters)
    start = time.time()
    print(f'[demo] training {args.iters} iterations on the CPU '
          f'(work dir {args.work_dir})')
    run_step(osp.join(ROOT, 'tools', 'train.py'), CONFIG, '--work-dir',
             args.work_dir, '--cfg-options', *opts)
    checkpoint = osp.join(args.work_dir, f'iter_{args.iters}.pth')
    metrics_file = osp.join(args.work_dir, 'test_metrics.json')
    print('[demo] evaluating with mmseg IoUMetric')
    run_step(osp.join(ROOT, 'tools', 'test.py'), CONFIG, checkpoint,
             '--work-dir', args.work_dir, '--out-metrics', metrics_file,
             '--cfg-options', *opts)
    with open(metrics_file) as f:
        metrics = json.load(f)
    print(f'[demo] done in {time.time() - start:.0f} s: mIoU '
          f'{metrics["mIoU"]:.2f}, mAcc {metrics["mAcc"]:.2f}, aAcc '
          f'{metrics["aAcc"]:.2f} (predicting the most frequent class '
          f'everywhere would score mIoU {majority_miou(args.data_root):.2f})')
    print(f'[demo] checkpoint: {checkpoint}')


if __name__ == '__main__':
    main()
