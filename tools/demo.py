"""The README demo: train a small UperNet + RepMLPNet on generated
Cityscapes-layout data on the CPU, evaluate its mIoU and say where the
checkpoint is.

Usage:
    python tools/demo.py [--work-dir work_dirs/demo] [--data-root data/demo_cityscapes]
        [--iters N]
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


def majority_miou(data_root):
    """mIoU (in %) of predicting the most frequent val class everywhere."""
    import glob

    import numpy as np
    from PIL import Image
    labels = np.concatenate([
        np.asarray(Image.open(p)).ravel() for p in glob.glob(
            osp.join(data_root, 'gtFine', 'val', '*', '*labelTrainIds.png'))])
    labels = labels[labels != 255]
    counts = np.bincount(labels)
    present = np.count_nonzero(counts)
    # IoU of the majority class is its pixel share; every other present
    # class scores 0.
    return 100 * counts.max() / labels.size / present


def positive_int(text):
    """``argparse`` type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {value}')
    return value


def config_options(data_root, iters):
    """The ``--cfg-options`` that point the demo config at ``data_root`` and
    train for ``iters`` iterations.

    The warm-up (linear, 30 of the config's 300 iterations) scales with
    ``iters``: a tenth of them, at least 1 and at most 30; the polynomial
    decay takes the rest (with ``iters`` = 1 it starts after training ends).

    Args:
        data_root (str): the dataset folder.
        iters (int): training iterations, >= 1.

    Returns:
        list[str]: ``key=value`` overrides.
    """
    warmup = max(1, min(30, iters // 10))
    return [f'data_root={data_root}',
            f'train_dataloader.dataset.data_root={data_root}',
            f'val_dataloader.dataset.data_root={data_root}',
            f'test_dataloader.dataset.data_root={data_root}',
            f'train_cfg.max_iters={iters}',
            f'train_cfg.val_interval={iters}',
            f'default_hooks.checkpoint.interval={iters}',
            f'param_scheduler.0.end={warmup}',
            f'param_scheduler.1.begin={warmup}',
            f'param_scheduler.1.end={max(iters, warmup + 1)}']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs',
                                                       'demo'))
    parser.add_argument('--data-root',
                        default=osp.join(ROOT, 'data', 'demo_cityscapes'))
    parser.add_argument('--iters', type=positive_int, default=300,
                        help='training iterations (default: 300); the '
                        'learning-rate warm-up takes a tenth of them, at '
                        'most 30')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)

    sys.path.insert(0, ROOT)
    from mmrep.datasets import make_cityscapes_like
    if not osp.isdir(osp.join(args.data_root, 'gtFine', 'val')):
        print(f'[demo] writing a Cityscapes-layout dataset to {args.data_root}')
        make_cityscapes_like(args.data_root, num_train=64, num_val=16)
    opts = config_options(args.data_root, args.iters)
    start = time.time()
    print(f'[demo] training {args.iters} iterations on the CPU '
          f'(work dir {args.work_dir})')
    subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'train.py'),
                    CONFIG, '--work-dir', args.work_dir, '--cfg-options',
                    *opts], check=True, cwd=ROOT)
    checkpoint = osp.join(args.work_dir, f'iter_{args.iters}.pth')
    metrics_file = osp.join(args.work_dir, 'test_metrics.json')
    print('[demo] evaluating with mmseg IoUMetric')
    subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'test.py'),
                    CONFIG, checkpoint, '--work-dir', args.work_dir,
                    '--out-metrics', metrics_file, '--cfg-options', *opts],
                   check=True, cwd=ROOT)
    with open(metrics_file) as f:
        metrics = json.load(f)
    print(f'[demo] done in {time.time() - start:.0f} s: mIoU '
          f'{metrics["mIoU"]:.2f}, mAcc {metrics["mAcc"]:.2f}, aAcc '
          f'{metrics["aAcc"]:.2f} (predicting the most frequent class '
          f'everywhere would score mIoU {majority_miou(args.data_root):.2f})')
    print(f'[demo] checkpoint: {checkpoint}')


if __name__ == '__main__':
    main()
