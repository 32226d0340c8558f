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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs',
                                                       'demo'))
    parser.add_argument('--data-root',
                        default=osp.join(ROOT, 'data', 'demo_cityscapes'))
    parser.add_argument('--iters', type=int, default=300)
    args = parser.parse_args()

    sys.path.insert(0, ROOT)
    from mmrep.datasets import make_cityscapes_like
    if not osp.isdir(osp.join(args.data_root, 'gtFine', 'val')):
        print(f'[demo] writing a Cityscapes-layout dataset to {args.data_root}')
        make_cityscapes_like(args.data_root, num_train=64, num_val=16)
    opts = [f'data_root={args.data_root}',
            f'train_dataloader.dataset.data_root={args.data_root}',
            f'val_dataloader.dataset.data_root={args.data_root}',
            f'test_dataloader.dataset.data_root={args.data_root}',
            f'train_cfg.max_iters={args.iters}',
            f'train_cfg.val_interval={args.iters}',
            f'default_hooks.checkpoint.interval={args.iters}',
            f'param_scheduler.1.end={args.iters}']
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
