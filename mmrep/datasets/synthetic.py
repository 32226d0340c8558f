"""Small generated datasets in the real datasets' layouts.

They let the demo and the tests run the real mmseg / mmdet / mmpretrain data
pipelines and evaluators without downloading anything. Labels are a function
of the pixels (coloured shapes on textured backgrounds), so a model can learn
them and a metric far above chance shows that training works.
"""
import os
import os.path as osp

import numpy as np
from PIL import Image

# Cityscapes train ids used by the demo scenes, with the mean colour (RGB)
# of their pixels.
CITYSCAPES_DEMO_CLASSES = {
    0: ('road', (128, 64, 128)),
    2: ('building', (70, 70, 70)),
    10: ('sky', (70, 130, 180)),
    11: ('person', (220, 20, 60)),
    13: ('car', (0, 0, 142)),
    6: ('traffic light', (250, 170, 30)),
}


def _scene(rng, height, width):
    """One image and its train-id label map."""
    label = np.zeros((height, width), np.uint8)
    horizon = int(height * rng.uniform(0.35, 0.55))
    label[:horizon] = 10  # sky above the horizon, road below
    # Buildings standing on the horizon.
    for _ in range(rng.integers(1, 4)):
        w = int(width * rng.uniform(0.1, 0.3))
        x0 = int(rng.integers(0, width - w))
        top = int(horizon * rng.uniform(0.1, 0.6))
        label[top:horizon, x0:x0 + w] = 2
    yy, xx = np.mgrid[:height, :width]
    # Cars (rectangles) and people (ellipses) on the road, lights in the sky.
    for _ in range(rng.integers(1, 4)):
        h = int(height * rng.uniform(0.1, 0.25))
        w = int(width * rng.uniform(0.1, 0.25))
        y0 = int(rng.integers(horizon, max(horizon + 1, height - h)))
        x0 = int(rng.integers(0, width - w))
        label[y0:y0 + h, x0:x0 + w] = 13
    for _ in range(rng.integers(1, 3)):
        cy = rng.uniform(horizon, height)
        cx = rng.uniform(0, width)
        ry, rx = height * rng.uniform(0.06, 0.14), width * rng.uniform(0.02, 0.05)
        label[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = 11
    if rng.random() < 0.7:
        s = int(height * rng.uniform(0.05, 0.1))
        y0 = int(rng.integers(0, max(1, horizon - s)))
        x0 = int(rng.integers(0, width - s))
        label[y0:y0 + s, x0:x0 + s] = 6
    image = np.zeros((height, width, 3), np.float32)
    for train_id, (_, colour) in CITYSCAPES_DEMO_CLASSES.items():
        image[label == train_id] = colour
    # Per-image brightness, pixel noise and a texture make it non-trivial.
    image *= rng.uniform(0.8, 1.2)
    image += rng.normal(0, 18, image.shape)
    image += 12 * np.sin(xx / rng.uniform(3, 9))[..., None]
    return np.clip(image, 0, 255).astype(np.uint8), label


def make_cityscapes_like(root, num_train=40, num_val=10, size=(128, 256),
                         cities=('aachen', 'bremen'), seed=0):
    """Write a small Cityscapes-layout segmentation set.

    Layout (as mmseg's ``CityscapesDataset`` expects)::

        root/leftImg8bit/{train,val}/<city>/<city>_000000_0000NN_leftImg8bit.png
        root/gtFine/{train,val}/<city>/<city>_000000_0000NN_gtFine_labelTrainIds.png

    Args:
        root (str): output directory (created).
        num_train (int): training images.
        num_val (int): validation images.
        size (tuple[int, int]): image ``(height, width)``.
        cities (Sequence[str]): city folder names, used in turn.
        seed (int): random seed; the same arguments give the same files.

    Returns:
        str: ``root``.
    """
    if num_train < 1 or num_val < 1:
        raise ValueError('need at least one training and one val image')
    rng = np.random.default_rng(seed)
    for split, count in (('train', num_train), ('val', num_val)):
        for i in range(count):
            city = cities[i % len(cities)]
            stem = f'{city}_000000_{i:06d}'
            image, label = _scene(rng, *size)
            img_dir = osp.join(root, 'leftImg8bit', split, city)
            ann_dir = osp.join(root, 'gtFine', split, city)
            os.makedirs(img_dir, exist_ok=True)
            os.makedirs(ann_dir, exist_ok=True)
            Image.fromarray(image).save(
                osp.join(img_dir, f'{stem}_leftImg8bit.png'))
            Image.fromarray(label).save(
                osp.join(ann_dir, f'{stem}_gtFine_labelTrainIds.png'))
    return root
