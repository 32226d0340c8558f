"""Deploy configs: the same config with every mmrep module fused."""
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


def make_deploy_config(cfg):
    """Return a copy of ``cfg`` whose mmrep backbones build fused.

    Args:
        cfg (Config | dict): a training or test config.

    Returns:
        Config: the deploy config (``model.*.deploy=True`` for every
        ``mmrep.*`` type); ``tools/test.py`` accepts it with fused weights.

    Raises:
        ValueError: the config's model uses no mmrep module.
    """
    text_cfg = cfg if isinstance(cfg, Config) else Config(dict(cfg))
    deploy = Config(copy.deepcopy(text_cfg._cfg_dict.to_dict()))
    model = deploy.get('model')
    if model is None or _set_deploy(model) == 0:
        raise ValueError('the config builds no mmrep module (no '
                         "type='mmrep.*' under model)")
    deploy.model = ConfigDict(model)
    return deploy
