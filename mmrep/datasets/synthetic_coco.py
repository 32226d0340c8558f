"""A small generated detection set in COCO's layout.

Each image shows a few solid rectangles and ellipses on a noisy, textured
grey background. An object's category follows from its colour alone (its
shape is drawn at random), its box is the tight box of its pixels and its
instance mask a polygon of its outline (the rectangle's corners, or 32
points on the ellipse), so a detector or an instance segmenter can learn the
set and a COCO mAP far above zero shows that training works.
"""
import json
import os
import os.path as osp

import numpy as np
from PIL import Image

# COCO category id -> (name, RGB colour of the object's pixels).
COCO_DEMO_CLASSES = {
    1: ('red', (220, 40, 40)),
    2: ('green', (40, 190, 60)),
    3: ('blue', (40, 70, 230)),
}


def _overlaps(box, boxes, margin):
    """Whether a box comes within ``margin`` pixels of any other.

    Args:
        box (tuple[int, int, int, int]): ``(x0, y0, x1, y1)``.
        boxes (Sequence[tuple[int, int, int, int]]): boxes already placed.
        margin (int): the gap a box must keep from the others.

    Returns:
        bool: True when ``box`` is too close to one of ``boxes``.
    """
    x0, y0, x1, y1 = box
    for a0, b0, a1, b1 in boxes:
        if (x0 < a1 + margin and a0 < x1 + margin
                and y0 < b1 + margin and b0 < y1 + margin):
            return True
    return False


def _ellipse_outline(cy, cx, ry, rx, points=32):
    """``points`` vertices of an ellipse, as a flat ``[x1, y1, ...]`` list.

    Args:
        cy (float): centre row, in pixel-edge coordinates.
        cx (float): centre column.
        ry (float): vertical radius.
        rx (float): horizontal radius.
        points (int): number of vertices.

    Returns:
        list[float]: the polygon.
    """
    t = np.linspace(0, 2 * np.pi, points, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1).ravel()


def _scene(rng, height, width, max_objects=4):
    """One image and its objects.

    Args:
        rng (numpy.random.Generator): random source.
        height (int): image height.
        width (int): image width.
        max_objects (int): most objects per image (at least one is drawn).

    Returns:
        tuple[ndarray, list[tuple]]: the ``(H, W, 3)`` uint8 RGB image and
        its objects as ``(category_id, [x, y, w, h], polygon, area)``: the
        outline in COCO's ``[x1, y1, x2, y2, ...]`` pixel-edge coordinates
        and the mask's pixel count.
    """
    yy, xx = np.mgrid[:height, :width]
    # Background: grey with a low-contrast stripe texture and pixel noise.
    grey = rng.uniform(90, 160)
    image = np.full((height, width, 3), grey, np.float32)
    image += 15 * np.sin(xx / rng.uniform(3, 9) + yy / rng.uniform(5, 15)
                         )[..., None]
    short = min(height, width)
    boxes, objects = [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            h = int(short * rng.uniform(0.15, 0.45))
            w = int(short * rng.uniform(0.15, 0.45))
            y0 = int(rng.integers(0, height - h + 1))
            x0 = int(rng.integers(0, width - w + 1))
            if not _overlaps((x0, y0, x0 + w, y0 + h), boxes, 2):
                break
        else:
            continue
        cat_id = int(rng.choice(list(COCO_DEMO_CLASSES)))
        if rng.random() < 0.5:
            mask = ((yy >= y0) & (yy < y0 + h) & (xx >= x0) & (xx < x0 + w))
            polygon = [x0, y0, x0 + w, y0, x0 + w, y0 + h, x0, y0 + h]
        else:
            cy, cx = y0 + (h - 1) / 2, x0 + (w - 1) / 2
            mask = (((yy - cy) / (h / 2)) ** 2
                    + ((xx - cx) / (w / 2)) ** 2) <= 1
            polygon = _ellipse_outline(cy + 0.5, cx + 0.5, h / 2, w / 2)
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            continue
        colour = np.asarray(COCO_DEMO_CLASSES[cat_id][1], np.float32)
        image[mask] = colour * rng.uniform(0.85, 1.15)
        bx0, by0 = int(xs.min()), int(ys.min())
        bx1, by1 = int(xs.max()) + 1, int(ys.max()) + 1
        boxes.append((bx0, by0, bx1, by1))
        objects.append((cat_id, [float(bx0), float(by0), float(bx1 - bx0),
                                 float(by1 - by0)],
                        [round(float(v), 2) for v in polygon],
                        float(ys.size)))
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), objects


def make_coco_like(root, num_train=40, num_val=10, size=(128, 128), seed=0,
                   ext='jpg'):
    """Write a small COCO-format detection set.

    Layout (as mmdet's ``CocoDataset`` reads it with
    ``data_prefix=dict(img='images/<split>/')``)::

        root/images/{train,val}/000000.jpg ...
        root/annotations/instances_{train,val}.json

    Every image has at least one object; categories are
    :data:`COCO_DEMO_CLASSES` (``red``, ``green``, ``blue``, ids 1-3). Each
    annotation has a ``bbox``, a polygon ``segmentation`` (one outline) and
    the mask's ``area``, so Mask R-CNN (``with_mask=True``) trains and
    CocoMetric evaluates ``bbox`` and ``segm`` on it.

    Args:
        root (str): output directory (created).
        num_train (int): training images.
        num_val (int): validation images.
        size (int | tuple[int, int]): image ``(height, width)``; at least
            32 on each side.
        seed (int): random seed; the same arguments give the same files.
        ext (str): image format, ``'jpg'`` (quality 95) or ``'png'``.

    Returns:
        str: ``root``.
    """
    if num_train < 1 or num_val < 1:
        raise ValueError('need at least one training and one val image')
    height, width = (size, size) if isinstance(size, int) else size
    if min(height, width) < 32:
        raise ValueError(f'images need at least 32 pixels a side, got {size}')
    if ext not in ('jpg', 'png'):
        raise ValueError(f"ext must be 'jpg' or 'png', got {ext!r}")
    rng = np.random.default_rng(seed)
    categories = [dict(id=i, name=name, supercategory='shape')
                  for i, (name, _) in sorted(COCO_DEMO_CLASSES.items())]
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    for split, count in (('train', num_train), ('val', num_val)):
        img_dir = osp.join(root, 'images', split)
        os.makedirs(img_dir, exist_ok=True)
        images, annotations = [], []
        for i in range(count):
            image, objects = _scene(rng, height, width)
            while not objects:  # keep every image annotated
                image, objects = _scene(rng, height, width)
            file_name = f'{i:06d}.{ext}'
            path = osp.join(img_dir, file_name)
            if ext == 'jpg':
                Image.fromarray(image).save(path, quality=95)
            else:
                Image.fromarray(image).save(path)
            image_id = i + 1
            images.append(dict(id=image_id, file_name=file_name,
                               height=height, width=width))
            for cat_id, bbox, polygon, area in objects:
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=image_id,
                    category_id=cat_id, bbox=bbox, segmentation=[polygon],
                    area=area, iscrowd=0))
        with open(osp.join(root, 'annotations',
                           f'instances_{split}.json'), 'w') as f:
            json.dump(dict(images=images, annotations=annotations,
                           categories=categories), f)
    return root
