from .synthetic import CITYSCAPES_DEMO_CLASSES, make_cityscapes_like
from .synthetic_imagenet import make_imagenet_like  # noqa: F401

__all__ = ['make_cityscapes_like', 'CITYSCAPES_DEMO_CLASSES']
from .synthetic_coco import COCO_DEMO_CLASSES, make_coco_like  # noqa: E402,F401
