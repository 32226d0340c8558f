"""A small generated classification set in ImageNet's folder layout.

It lets the ImageNet configs run mmpretrain's real ``ImageNet`` dataset,
pipelines and ``Accuracy`` metric without downloading anything. Each class
is a colour and a stripe pattern (orientation and period), drawn with random
phase, brightness, noise and a random blob, so the label follows from the
pixels and a model can learn it.
"""
import os
import os.path as osp

import numpy as np
from PIL import Image

# Hues (RGB) and stripe orientations (radians) that classes combine.
_COLOURS = ((220, 40, 40), (40, 170, 60), (40, 80, 220), (230, 200, 40),
            (170, 60, 200), (40, 200, 210), (240, 130, 30), (130, 130, 130))
_ANGLES = (0.0, np.pi / 2, np.pi / 4, 3 * np.pi / 4)


def class_names(num_classes):
    """ImageNet-style folder names of the generated classes.

    Args:
        num_classes (int): number of classes.

    Returns:
        list[str]: ``['n00000000', 'n00000001', ...]``.
    """
    return [f'n{i:08d}' for i in range(num_classes)]


def _image(rng, label, size):
    """One ``(H, W, 3)`` uint8 image of class ``label``."""
    height, width = size
    colour = np.array(_COLOURS[label % len(_COLOURS)], np.float32)
    angle = _ANGLES[(label // len(_COLOURS)) % len(_ANGLES)]
    period = 6.0 + 4.0 * ((label // (len(_COLOURS) * len(_ANGLES))) % 3)
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi)
    wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle))
                  * 2 * np.pi / period + phase)
    image = colour * (0.6 + 0.4 * wave[..., None])
    # A distractor blob of another colour, brightness and pixel noise.
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    r = rng.uniform(0.1, 0.25) * min(height, width)
    blob = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    image[blob] = rng.uniform(0, 255, 3)
    image *= rng.uniform(0.8, 1.2)
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_imagenet_like(root, num_classes=4, per_class_train=8,
                       per_class_val=2, size=(64, 64), seed=0):
    """Write a small ImageNet-layout classification set.

    Layout (as mmpretrain's ``ImageNet`` and ``CustomDataset`` read it)::

        root/train/<class>/<class>_<n>.png
        root/val/<class>/<class>_<n>.png
        root/meta/train.txt     # "<class>/<file> <label>" per line
        root/meta/val.txt
        root/meta/classes.txt   # one class name per line

    The annotation files make ``ImageNet(data_root=root, split=...)`` use
    these labels instead of matching the folders to ImageNet's 1000
    classes; ``CustomDataset(data_root=root, data_prefix='train')`` reads
    the folders directly.

    Args:
        root (str): output directory (created).
        num_classes (int): number of classes (each a colour and a stripe
            pattern; up to 96 are distinct).
        per_class_train (int): training images per class.
        per_class_val (int): validation images per class.
        size (int | tuple[int, int]): image ``(height, width)``.
        seed (int): random seed; the same arguments give the same files.

    Returns:
        str: ``root``.

    Raises:
        ValueError: fewer than 2 classes, or no image in a split.
    """
    if num_classes < 2:
        raise ValueError(f'need at least 2 classes, got {num_classes}')
    if per_class_train < 1 or per_class_val < 1:
        raise ValueError('need at least one training and one val image per '
                         'class')
    size = (size, size) if isinstance(size, int) else tuple(size)
    rng = np.random.default_rng(seed)
    names = class_names(num_classes)
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    for split, count in (('train', per_class_train), ('val', per_class_val)):
        lines = []
        for label, name in enumerate(names):
            folder = osp.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                filename = f'{name}_{i:05d}.png'
                Image.fromarray(_image(rng, label, size)).save(
                    osp.join(folder, filename))
                lines.append(f'{name}/{filename} {label}')
        with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    with open(osp.join(root, 'meta', 'classes.txt'), 'w') as f:
        f.write('\n'.join(names) + '\n')
    return root
