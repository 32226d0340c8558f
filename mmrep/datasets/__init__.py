"""Small generated datasets in the layouts of Cityscapes, ADE20K, COCO and
ImageNet, for demos and end-to-end tests."""
from .synthetic import (ADE20K_DEMO_LABELS, CITYSCAPES_DEMO_CLASSES,
                        make_ade20k_like, make_cityscapes_like)
from .synthetic_coco import COCO_DEMO_CLASSES, make_coco_like
from .synthetic_imagenet import make_imagenet_like

__all__ = ['make_cityscapes_like', 'CITYSCAPES_DEMO_CLASSES',
           'make_ade20k_like', 'ADE20K_DEMO_LABELS',
           'make_coco_like', 'COCO_DEMO_CLASSES', 'make_imagenet_like']
