"""Small generated datasets in the layouts of Cityscapes, COCO and ImageNet,
for demos and end-to-end tests."""
from .synthetic import CITYSCAPES_DEMO_CLASSES, make_cityscapes_like
from .synthetic_coco import COCO_DEMO_CLASSES, make_coco_like
from .synthetic_imagenet import make_imagenet_like

__all__ = ['make_cityscapes_like', 'CITYSCAPES_DEMO_CLASSES',
           'make_coco_like', 'COCO_DEMO_CLASSES', 'make_imagenet_like']
