from .cyclemlp import CycleMLP
from .repmlp_resnet import RepMLPResNet
from .repmlpnet import RepMLPNet
from .repvgg import RepVGG

__all__ = ['RepMLPNet', 'RepVGG', 'RepMLPResNet', 'CycleMLP']
