from .backbones import *  # noqa: F401,F403  (registers the backbones)
from .checkpoint import CheckpointMismatchError, load_pretrained

__all__ = ['load_pretrained', 'CheckpointMismatchError']
