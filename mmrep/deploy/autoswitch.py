"""Opt-in: fused files load through every checkpoint loader.

Importing this module calls :func:`~mmrep.deploy.fused_loading.
watch_parents` once, which installs one torch module-registration hook:
from then on, every model that holds an mmrep backbone (at any depth: in a
segmentor, a detector, a classifier, a ``ModuleList`` or a test-time
augmentation wrapper) switches itself to its fused form when the weights it
loads are exactly those of that form, necks and heads included, and logs one
line. That is what lets the fused files mmrep writes (``ReparamCheckpointHook``'s
``*_deploy.pth``, ``tools/reparam.py``'s output) load through mmengine's
``load_checkpoint`` and with it mmseg's ``init_model``, mmdet's
``init_detector``, mmpretrain's ``init_model`` and the inferencers, with the
training config.

``import mmrep`` does not import this module: the shipped configs list it
in ``custom_imports`` (``imports=['mmrep', 'mmrep.deploy.autoswitch']``),
so a config opts in where a reader sees it, and a config without it loads
fused files only through mmrep's own tools (``tools/test.py``,
``mmrep.apis.load_fused``) or into a backbone alone (every mmrep backbone
switches itself). :func:`~mmrep.deploy.fused_loading.stop_watching_parents`
removes the hook.
"""
from .fused_loading import watch_parents

watch_parents()
