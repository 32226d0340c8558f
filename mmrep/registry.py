"""Registries of the ``mmrep`` scope.

Each registry is a child of mmengine's root registry of the same kind, so a
config running under ``default_scope='mmseg'``, ``'mmdet'`` or
``'mmpretrain'`` can name ``type='mmrep.RepMLPNet'`` once ``mmrep`` has been
imported (``custom_imports=dict(imports=['mmrep'])``).
"""
from importlib import import_module

from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry


class LazyRegistry(Registry):
    """mmengine's ``Registry`` with names whose module is imported on their
    first lookup.

    ``locations`` import a registry's modules on its first lookup of any
    name; a module listed in ``lazy`` is imported only when its own name is
    looked up (``get``, ``build``, ``in``), directly or through a
    ``mmrep.<name>`` type of another scope's config. This keeps a module
    that needs a heavy optional library (the deploy UPerHead: all of
    ``mmseg.models``) out of ``import mmrep`` and out of the lookups of
    every other name.

    Args:
        lazy (dict[str, str]): ``{registered name: module}``; the module
            registers the name when imported (or nothing, when what it
            needs is unusable: the lookup then finds nothing).
        *args, **kwargs: as ``Registry``.
    """

    def __init__(self, *args, lazy=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._lazy = dict(lazy or {})

    def get(self, key):
        if isinstance(key, str):
            scope, name = self.split_scope_key(key)
            if scope in (None, self.scope) and name in self._lazy:
                import_module(self._lazy[name])
                self._lazy.pop(name, None)  # a failed import retries
        return super().get(key)


MODELS = LazyRegistry(
    'model', parent=MMENGINE_MODELS, scope='mmrep',
    locations=['mmrep.models'],
    # the deploy form of mmseg's UPerHead: mmrep.deploy.heads
    lazy={'DeployUPerHead': 'mmrep.deploy.uper_head'})
# (mmrep.deploy.hook: ReparamCheckpointHook, which ``import mmrep`` does not
# import; mmrep.apis.finetune: the hook tools/train.py adds for fine-tuning,
# found also where only the config's custom_imports imported mmrep)
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmrep',
                 locations=['mmrep.deploy.hook', 'mmrep.apis.finetune'])
# mmseg datasets of mmrep (``type='mmrep.CamVidDataset'`` under
# ``default_scope='mmseg'``): their modules import mmseg, so each is imported
# on the first lookup of its own name. ``locations`` (the package, which
# imports no mmseg) keeps mmengine from looking for
# ``mmrep.utils.register_all_modules`` (see CHECKPOINT_LOADERS below).
DATASETS = LazyRegistry(
    'dataset', parent=MMENGINE_DATASETS, scope='mmrep',
    locations=['mmrep.datasets'],
    lazy={'CamVidDataset': 'mmrep.datasets.camvid'})

# The function behind ``init_cfg=dict(type='Pretrained')`` of mmrep backbones,
# registered as ``'pretrained'`` by :mod:`mmrep.checkpoints` (the backbones,
# a lower layer, cannot import the loading package), and the reader of other
# frameworks' files behind ``mmrep.utils.safe_load``, registered as
# ``'framework_file'`` by :mod:`mmrep.checkpoints.readers` (utils cannot
# import it either). Its ``locations`` are needed: for a registry without
# them in a scope listed in mmengine's ``MODULE2PACKAGE`` (mmrep is, see
# mmrep.utils.config_names), mmengine calls
# ``mmrep.utils.register_all_modules``, which mmrep does not have.
CHECKPOINT_LOADERS = Registry('checkpoint loader', scope='mmrep',
                              locations=['mmrep.checkpoints'])
