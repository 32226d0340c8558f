# The import order is the registration order of the families
# (mmrep.models.backbones.family.CHECKPOINT_FAMILIES), which the model
# table and the tools' listings follow.
from .repvgg import RepVGG  # isort: skip
from .repmlpnet import RepMLPNet  # isort: skip
from .repmlp_resnet import RepMLPResNet  # isort: skip
from .cyclemlp import CycleMLP  # isort: skip

__all__ = ['RepMLPNet', 'RepVGG', 'RepMLPResNet', 'CycleMLP']
