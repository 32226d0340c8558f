from .repmlpnet import RepMLPNet

__all__ = ['RepMLPNet']
