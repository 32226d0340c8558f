"""Deploy configs: the same config with every mmrep module fused and the
BatchNorms of its necks and heads folded into their convolutions; and the
name of the fused weights written beside a checkpoint."""
import copy
import os.path as osp

from mmengine.config import Config, ConfigDict

from ..utils import ModelConfigError
from .heads import deploy_head_type


def deploy_path(checkpoint):
    """``work/iter_8.pth -> work/iter_8_deploy.pth``."""
    stem, ext = osp.splitext(checkpoint)
    return f'{stem}_deploy{ext or ".pth"}'


def _change_dicts(node, change):
    """Call ``change(d)`` on every dict ``d`` at or below ``node``.

    Args:
        node: a config value (dicts and lists are walked).
        change (callable): changes a dict in place; returns whether it did.

    Returns:
        int: how many dicts were changed.
    """
    if isinstance(node, dict):
        return int(bool(change(node))) + sum(
            _change_dicts(value, change) for value in node.values())
    if isinstance(node, (list, tuple)):
        return sum(_change_dicts(value, change) for value in node)
    return 0


def _set_deploy(node):
    """``deploy=True`` on an ``mmrep.*`` model dict; returns whether set."""
    if not str(node.get('type', '')).startswith('mmrep.'):
        return False
    node['deploy'] = True
    node.pop('init_cfg', None)  # fused weights come from load_from
    return True


#: ``norm_cfg`` types that build a torch BatchNorm, which
#: :func:`~mmrep.deploy.walker.reparameterize_model` folds in a ConvModule.
FOLDED_NORMS = ('BN', 'BN2d', 'SyncBN', 'BatchNorm2d', 'SyncBatchNorm')


def _drop_folded_norm(node):
    """``norm_cfg=None`` where it names a BatchNorm; returns whether set.

    A ConvModule built with ``norm_cfg=None`` has a conv with bias and no
    norm: the structure a folded conv + BN pair has.
    """
    norm = node.get('norm_cfg')
    if not (isinstance(norm, dict) and norm.get('type') in FOLDED_NORMS):
        return False
    node['norm_cfg'] = None
    return True


def _deploy_head(node):
    """The deploy form's ``type`` on a head dict that has one; returns
    whether set (:func:`~mmrep.deploy.heads.deploy_head_type`)."""
    name = deploy_head_type(str(node.get('type', '')))
    if name is None:
        return False
    node['type'] = name
    return True


def make_deploy_config(cfg):
    """Return a copy of ``cfg`` that builds the model
    :func:`~mmrep.deploy.walker.reparameterize_model` makes of it.

    Every ``mmrep.*`` model dict gets ``deploy=True``; outside
    ``model.backbone``, every ``norm_cfg`` naming a BatchNorm (``BN``,
    ``SyncBN``) becomes ``None``, so the ConvModules of necks and heads
    build as folded (conv with bias, no norm), and a head with a deploy
    form gets its type (mmseg's ``UPerHead``: ``mmrep.DeployUPerHead``).

    Args:
        cfg (Config | dict): a training or test config.

    Returns:
        Config: the deploy config; ``tools/test.py`` accepts it with the
        fused weights.

    Raises:
        ModelConfigError: the config's model has nothing to fuse (no mmrep
            module and no BatchNorm outside the backbone).
    """
    text_cfg = cfg if isinstance(cfg, Config) else Config(dict(cfg))
    deploy = Config(copy.deepcopy(text_cfg._cfg_dict.to_dict()))
    model = deploy.get('model')
    changed = 0 if model is None else _change_dicts(model, _set_deploy) + sum(
        _change_dicts(value, _drop_folded_norm) +
        _change_dicts(value, _deploy_head)  # after _set_deploy: mmrep type
        for key, value in model.items() if key != 'backbone')
    if not changed:
        raise ModelConfigError('the config builds nothing to fuse (no '
                         "type='mmrep.*' under model and no BatchNorm "
                         'outside the backbone)')
    deploy.model = ConfigDict(model)
    return deploy
