"""Deploy configs: the same config with every mmrep module fused and the
BatchNorms of its necks and heads folded into their convolutions."""
import copy

from mmengine.config import Config, ConfigDict


def _set_deploy(node):
    """Set ``deploy=True`` on every ``mmrep.*`` model dict below ``node``.

    Returns:
        int: how many dicts were changed.
    """
    changed = 0
    if isinstance(node, dict):
        if str(node.get('type', '')).startswith('mmrep.'):
            node['deploy'] = True
            node.pop('init_cfg', None)  # fused weights come from load_from
            changed += 1
        for value in node.values():
            changed += _set_deploy(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            changed += _set_deploy(value)
    return changed


#: ``norm_cfg`` types that build a torch BatchNorm, which
#: :func:`~mmrep.deploy.walker.reparameterize_model` folds in a ConvModule.
FOLDED_NORMS = ('BN', 'BN2d', 'SyncBN', 'BatchNorm2d', 'SyncBatchNorm')


def _drop_folded_norms(node):
    """Set ``norm_cfg=None`` wherever it names a BatchNorm below ``node``.

    A ConvModule built with ``norm_cfg=None`` has a conv with bias and no
    norm: the structure a folded conv + BN pair has.

    Returns:
        int: how many dicts were changed.
    """
    changed = 0
    if isinstance(node, dict):
        norm = node.get('norm_cfg')
        if isinstance(norm, dict) and norm.get('type') in FOLDED_NORMS:
            node['norm_cfg'] = None
            changed += 1
        for value in node.values():
            changed += _drop_folded_norms(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            changed += _drop_folded_norms(value)
    return changed


def make_deploy_config(cfg):
    """Return a copy of ``cfg`` that builds the model
    :func:`~mmrep.deploy.walker.reparameterize_model` makes of it.

    Every ``mmrep.*`` model dict gets ``deploy=True``; outside
    ``model.backbone``, every ``norm_cfg`` naming a BatchNorm (``BN``,
    ``SyncBN``) becomes ``None``, so the ConvModules of necks and heads
    build as folded (conv with bias, no norm).

    Args:
        cfg (Config | dict): a training or test config.

    Returns:
        Config: the deploy config; ``tools/test.py`` accepts it with the
        fused weights.

    Raises:
        ValueError: the config's model has nothing to fuse (no mmrep
            module and no BatchNorm outside the backbone).
    """
    text_cfg = cfg if isinstance(cfg, Config) else Config(dict(cfg))
    deploy = Config(copy.deepcopy(text_cfg._cfg_dict.to_dict()))
    model = deploy.get('model')
    changed = 0 if model is None else _set_deploy(model) + sum(
        _drop_folded_norms(value) for key, value in model.items()
        if key != 'backbone')
    if not changed:
        raise ValueError('the config builds nothing to fuse (no '
                         "type='mmrep.*' under model and no BatchNorm "
                         'outside the backbone)')
    deploy.model = ConfigDict(model)
    return deploy
