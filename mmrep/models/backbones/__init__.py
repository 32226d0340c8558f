from .repmlpnet import RepMLPNet
from .repvgg import RepVGG

__all__ = ['RepMLPNet', 'RepVGG']
