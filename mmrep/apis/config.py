"""Configs and models as the tools read and build them."""
import os.path as osp

from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from ..utils import check_custom_imports
from .refusals import BadArgumentError, ConfigReadError


def load_config(path, cfg_options=None):
    """Read a config for building a model whose weights come from a file.

    Args:
        path (str): the config file, or ``package::path``
            (:func:`read_config`).
        cfg_options (dict, optional): ``--cfg-options`` overrides.

    Returns:
        Config: the config, its model without ``init_cfg`` / ``pretrained``
        (the checkpoint given on the command line supplies the weights).

    Raises:
        ConfigReadError: the config cannot be read.
        MissingCustomImportsError: mmrep backbones without
            ``custom_imports=dict(imports=['mmrep'])``.
    """
    cfg = read_config(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    check_custom_imports(cfg, path)
    for key in ('init_cfg', 'pretrained'):
        cfg.model.pop(key, None)
    return cfg


def build_model(cfg):
    """Build ``cfg.model`` in the config's default scope, in eval mode.

    Args:
        cfg (Config): the config.

    Returns:
        nn.Module: the model, in eval mode.
    """
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    model = MODELS.build(cfg.model)
    return model.eval()


def read_config(name):
    """Read a config file, or ``package::path`` inside an installed
    OpenMMLab package (``mmpretrain::repvgg/repvgg-A0_8xb32_in1k.py``),
    resolved as mmengine resolves such names in ``_base_``.

    Args:
        name (str): the file or ``package::path``.

    Returns:
        Config: the config.

    Raises:
        ConfigReadError: the file does not exist, the package is not
            installed, or the config does not parse.
    """
    try:
        path = Config._get_cfg_path(name, '')[0] if '::' in name else name
        if not osp.isfile(path):
            raise FileNotFoundError(f'no such file: {path}')
        return Config.fromfile(path)
    except Exception as e:  # noqa: BLE001  configs fail in many ways
        raise ConfigReadError(f'cannot read config {name}: '
                              f'{type(e).__name__}: {e}') from None


def build_config(args):
    """Load the config and apply the command-line overrides.

    Shared by tools/train.py and tools/test.py, whose arguments lack the
    training options (``--amp``, ``--resume``).

    Args:
        args (argparse.Namespace): parsed arguments (``config``,
            ``cfg_options``, ``launcher``, ``work_dir``, optionally ``amp``
            and ``resume``).

    Returns:
        Config: the config to run.

    Raises:
        ConfigReadError: the config cannot be read.
    """
    cfg = read_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if getattr(args, 'amp', False):
        wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper == 'AmpOptimWrapper':
            print('AMP is already enabled in the config')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    resume = getattr(args, 'resume', None)
    if resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif resume:
        cfg.resume = True
        cfg.load_from = resume
    return cfg


def enable_visualization(cfg, show_dir, interval=1):
    """Make the config's visualization hook draw test predictions into
    ``show_dir``, as mmseg's, mmdet's and mmpretrain's test tools do.

    Args:
        cfg (Config): the config; changed in place.
        show_dir (str): the folder for the drawings.
        interval (int): draw every ``interval``-th batch. Default: 1.

    Raises:
        BadArgumentError: the config has no visualization hook that draws
            test predictions.
    """
    hook = cfg.get('default_hooks', {}).get('visualization')
    kind = str(hook.get('type', '')).split('.')[-1] if hook else ''
    show_dir = osp.abspath(show_dir)
    if kind == 'SegVisualizationHook':  # mmseg: the visualizer saves
        hook['draw'] = True
        cfg.visualizer['save_dir'] = show_dir
    elif kind == 'DetVisualizationHook':
        hook['draw'] = True
        hook['test_out_dir'] = show_dir
    elif kind == 'VisualizationHook':  # mmpretrain
        hook['enable'] = True
        hook['out_dir'] = show_dir
    else:
        raise BadArgumentError(
            '--show-dir needs default_hooks.visualization of type '
            'SegVisualizationHook, DetVisualizationHook or VisualizationHook '
            f'(mmpretrain) in the config; it has {kind or "none"}')
    hook['interval'] = interval
