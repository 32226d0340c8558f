"""The settings and the baseline of the README demo (tools/demo.py): the
demo config's schedule for any number of iterations, and the mIoU of
predicting the most frequent class."""
import glob
import os.path as osp


def demo_config_options(data_root, iters):
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


def majority_miou(data_root):
    """mIoU (in %) of predicting the most frequent val class everywhere.

    Args:
        data_root (str): a Cityscapes-layout dataset
            (``gtFine/val/*/*labelTrainIds.png``).

    Returns:
        float: the mIoU, in %.
    """
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
