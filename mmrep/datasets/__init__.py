from .synthetic import CITYSCAPES_DEMO_CLASSES, make_cityscapes_like

__all__ = ['make_cityscapes_like', 'CITYSCAPES_DEMO_CLASSES']
