"""Registries of the ``mmrep`` scope.

Each registry is a child of mmengine's root registry of the same kind, so a
config running under ``default_scope='mmseg'``, ``'mmdet'`` or
``'mmpretrain'`` can name ``type='mmrep.RepMLPNet'`` once ``mmrep`` has been
imported (``custom_imports=dict(imports=['mmrep'])``).
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmrep',
                  locations=['mmrep.models'])
# (mmrep.apis.finetune: the hook tools/train.py adds for fine-tuning, found
# also where only the config's custom_imports imported mmrep)
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmrep',
                 locations=['mmrep.deploy', 'mmrep.apis.finetune'])

# The function behind ``init_cfg=dict(type='Pretrained')`` of mmrep backbones,
# registered as ``'pretrained'`` by :mod:`mmrep.checkpoints` (the backbones,
# a lower layer, cannot import the loading package). Its ``locations`` are
# needed: for a registry without them in a scope listed in mmengine's
# ``MODULE2PACKAGE`` (mmrep is, see mmrep.utils.config_names), mmengine calls
# ``mmrep.utils.register_all_modules``, which mmrep does not have.
CHECKPOINT_LOADERS = Registry('checkpoint loader', scope='mmrep',
                              locations=['mmrep.checkpoints'])
