"""Shared test helpers.

The conformance fixtures (outputs of the original implementations on random
weights) live in ``tests/data`` (its README says where each file came from);
``MMREP_FIXTURES`` names another folder of files of the same formats, which
then run through the same tests.
"""
import glob
import inspect
import os
import os.path as osp

import pytest
import torch

from mmrep.checkpoints.conversion import mmrep_arch as _mmrep_arch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: Deploy configs for mmdeploy (no models): left out of model_configs().
MMDEPLOY_CONFIGS = osp.join(REPO, 'configs', 'mmdeploy')


def model_configs():
    """Every model config of configs/<folder>/ (demos included; the _base_
    files and the mmdeploy deploy configs left out), sorted."""
    return sorted(p for p in glob.glob(osp.join(REPO, 'configs', '*', '*.py'))
                  if not p.startswith(MMDEPLOY_CONFIGS + os.sep))


#: Config folders whose CPU demos train on real data (CamVid's): models of
#: the zoo, listed in their metafile like the full-size configs.
REAL_DATA_DEMOS = ('camvid', )


def zoo_configs():
    """The model configs a metafile lists: every model config but the demos
    on generated data, as paths relative to the repository."""
    return {osp.relpath(p, REPO) for p in model_configs()
            if not osp.basename(p).startswith('demo_')
            or osp.basename(osp.dirname(p)) in REAL_DATA_DEMOS}


FIXTURES = os.environ.get('MMREP_FIXTURES') or osp.join(REPO, 'tests', 'data')

#: What :func:`pytest_configure` replaced: ``(owner, name, original)``,
#: restored by :func:`pytest_unconfigure`.
_REPLACED = []


def pytest_configure(config):
    """Look each ``package::path`` config name (``mmseg::_base_/...``,
    ``mmdet::...``) up once per test process.

    mmengine 0.10's ``Config._get_cfg_path`` resolves such a name on every
    parse of every file that names it: it reloads ``pkg_resources`` to ask
    whether the package is installed, finds its folder, and reads the
    package's metafile index and every metafile it lists (about 200 YAML
    files for mmseg, through ``mmengine.config.utils.load``) looking for
    the name, before it falls back to ``<package>/.mim/configs/<path>``,
    where base configs always are: 0.3 to 3 s per config parse. Two caches
    for the session, neither changing an answer: a name's answer is kept
    (it depends on the name and on what is installed, which a session does
    not change; errors are not kept: a failed lookup runs again and raises
    again), and the YAML files of that search are read once per file
    version (keyed by path, modification time and size). Local names (no
    ``::``) are resolved as before.
    """
    import mmengine.config.utils as config_utils
    from mmengine.config import Config
    lookup = Config._get_cfg_path
    read = config_utils.load
    found, files = {}, {}

    def get_cfg_path(cfg_path, filename):
        if '::' not in cfg_path:
            return lookup(cfg_path, filename)
        if cfg_path not in found:
            found[cfg_path] = lookup(cfg_path, filename)
        return found[cfg_path]

    def load(file, *args, **kwargs):
        if args or kwargs or not isinstance(file, str):
            return read(file, *args, **kwargs)
        stat = os.stat(file)
        key = (file, stat.st_mtime_ns, stat.st_size)
        if key not in files:
            files[key] = read(file)
        return files[key]

    _REPLACED.extend([(Config, '_get_cfg_path', staticmethod(lookup)),
                      (config_utils, 'load', read)])
    Config._get_cfg_path = staticmethod(get_cfg_path)
    config_utils.load = load


def pytest_unconfigure(config):
    while _REPLACED:
        owner, name, original = _REPLACED.pop()
        setattr(owner, name, original)


# Crafted pickle payloads: a safe reader must refuse them, executing nothing.
class CreateFile:
    """Unpickling this object runs ``open(path, 'w')``: it creates a file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


class RunShell:
    """Unpickling this object runs ``os.system('touch PATH')``."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f'touch {self.path}', ))


@pytest.fixture(scope='module')
def one_torch_thread():
    """Run a module's tests with one torch thread (tiny models: as fast, and
    far faster on a busy machine), then restore the count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fixture_files(pattern):
    """Sorted fixture files matching ``pattern`` (e.g. ``repvgg_small_s*.pt``).

    Fails (does not skip) when none is found: the conformance tests are the
    ground truth and must run.
    """
    files = sorted(glob.glob(osp.join(FIXTURES, pattern)))
    assert files, f'no fixture matches {pattern} in {FIXTURES} (MMREP_FIXTURES)'
    return files


def load_fixture(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def fixture_params(pattern):
    """``pytest.mark.parametrize`` over the fixture files of a pattern."""
    files = sorted(glob.glob(osp.join(FIXTURES, pattern)))
    if not files:
        files = [osp.join(FIXTURES, pattern)]  # reported as missing
    return pytest.mark.parametrize('fixture_path', files, ids=osp.basename)


def assert_close(actual, expected, atol=1e-4, what=''):
    """Max-abs-difference check with a readable message.

    The tolerance is ``atol`` for values up to magnitude 1 and scales with
    the largest magnitude of ``expected`` beyond (float32 rounding grows
    with the values compared: a stage whose features reach 189 may differ
    by 1.3e-4 between two exact paths, 7e-7 relative).
    """
    assert actual.shape == expected.shape, \
        f'{what}: shape {tuple(actual.shape)} vs {tuple(expected.shape)}'
    scale = max(1.0, expected.float().abs().max().item()) \
        if expected.numel() else 1.0
    diff = (actual.float() - expected.float()).abs().max().item() \
        if expected.numel() else 0.0
    assert diff <= atol * scale, \
        f'{what}: max abs diff {diff:.3g} > {atol} x {scale:.3g}'


def mmrep_arch(family, original_kwargs):
    """An original release's constructor arguments as an mmrep arch dict
    (:func:`mmrep.checkpoints.conversion.mmrep_arch`, the translator of
    ``tools/convert_checkpoint.py``).

    Args:
        family (str): ``repmlpnet``, ``repvgg``, ``repmlp-res50`` or
            ``cyclemlp``.
        original_kwargs (dict): the original's arguments.

    Returns:
        dict: the arch, in mmrep's names.
    """
    return _mmrep_arch(family, original_kwargs)


def load_via_init_cfg(cls, checkpoint, *args, **kwargs):
    """Build ``cls(*args, **kwargs)`` with ``init_cfg=Pretrained`` on
    ``checkpoint`` (the path a config takes), initialize it, eval mode."""
    model = cls(*args, init_cfg=dict(type='Pretrained',
                                     checkpoint=str(checkpoint)), **kwargs)
    model.init_weights()
    return model.eval()


def check_pretrained_features(cls, arch, checkpoint, x, expected, **kwargs):
    """A backbone loading ``checkpoint`` through ``init_cfg`` reproduces the
    fixture's stage features to 1e-4.

    Args:
        cls (type): the backbone class.
        arch (dict): its arch (translate the original's names with
            :func:`mmrep_arch`).
        checkpoint (str): the original's weights file.
        x (Tensor): the fixture's input.
        expected (list[Tensor]): the fixture's features, one per stage.
        **kwargs: further backbone arguments (e.g. ``norm_cfg``).

    Returns:
        nn.Module: the backbone, in eval mode.
    """
    backbone = load_via_init_cfg(cls, checkpoint, arch, **kwargs)
    with torch.no_grad():
        feats = backbone(x)
    assert len(feats) == len(expected)
    for i, (a, b) in enumerate(zip(feats, expected)):
        assert_close(a, b, 1e-4, f'stage {i} features')
    return backbone


def build_in_scope(scope, cfg):
    """Build ``cfg`` as ``scope``'s tools would: that library's MODELS
    registry, with ``scope`` as the default scope.

    Args:
        scope (str): ``'mmseg'``, ``'mmdet'`` or ``'mmpretrain'``.
        cfg (dict): the model config.

    Returns:
        nn.Module: the built model.
    """
    import importlib

    from mmengine.registry import init_default_scope
    registry = importlib.import_module(f'{scope}.registry').MODELS
    init_default_scope(scope)
    return registry.build(cfg)


def build_classifier(backbone, in_channels, num_classes):
    """An mmpretrain ImageClassifier (GAP + linear head) around a backbone.

    Args:
        backbone (dict): the backbone config (``type='mmrep.*'``).
        in_channels (int): channels of the backbone's last output.
        num_classes (int): classes of the head.

    Returns:
        nn.Module: the classifier.
    """
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    return MODELS.build(dict(
        type='ImageClassifier', backbone=backbone,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=num_classes,
                  in_channels=in_channels)))


def check_stage_shapes_and_fusion(model, x):
    """Stage ``i`` of ``model`` has ``ceil(size / (4 * 2**i))`` rows and
    columns at input ``x``, and its fused copy gives the same outputs."""
    import mmrep
    with torch.no_grad():
        outs = model(x)
        fused = mmrep.reparameterize_model(model)(x)
    n, _, h, w = x.shape
    for i, (o, f) in enumerate(zip(outs, fused)):
        stride = 4 * 2**i
        assert o.shape == (n, model.channels[i], -(-h // stride),
                           -(-w // stride))
        assert_close(f, o, 1e-4 * max(1.0, o.abs().max().item()),
                     f'fused stage {i + 1} at {tuple(x.shape[-2:])}')


#: Each mmrep backbone's depth setting: the key of its (parsed) arch that
#: gives the blocks per stage (:func:`shallow_backbone`).
DEPTH_FIELDS = {'RepMLPNet': 'num_blocks', 'RepVGG': 'num_blocks',
                'CycleMLP': 'num_blocks', 'RepMLPResNet': 'num_blocks'}


def shallow_backbone(cfg, num_blocks):
    """Cut a config's mmrep backbone to at most ``num_blocks`` blocks per
    stage, in place; everything else as configured (widths, partitions,
    groups, stem, neck and heads), so the model is wired as the config's.

    The preset (or arch dict) is expanded to its settings and the family's
    depth field (:data:`DEPTH_FIELDS`) capped per stage. RepVGG's
    ``group_layer_map`` numbers blocks across stages: each kept block keeps
    its groups under its new number. A backbone that is not mmrep's (the
    plain ResNet baselines) is left as it is.

    Args:
        cfg (Config): a model config (``cfg.model.backbone``).
        num_blocks (int): the most blocks a stage keeps (at least 1).

    Returns:
        Config: ``cfg``.
    """
    from mmrep.registry import MODELS
    backbone = cfg.model.backbone
    kind = backbone.type
    if not (isinstance(kind, str) and kind.startswith('mmrep.')):
        return cfg
    name = kind[len('mmrep.'):]
    assert name in DEPTH_FIELDS, \
        f'{kind}: no depth field known (add it to DEPTH_FIELDS)'
    field = DEPTH_FIELDS[name]
    cls = MODELS.get(name)
    arch = cls.parse_arch(backbone.get('arch', inspect.signature(
        cls.__init__).parameters['arch'].default))
    depths = tuple(arch[field])
    arch[field] = tuple(min(n, num_blocks) for n in depths)
    if arch.get('group_layer_map'):
        renumber, old, new = {}, 0, 0
        for was, kept in zip(depths, arch[field]):
            renumber.update({old + j + 1: new + j + 1 for j in range(kept)})
            old, new = old + was, new + kept
        arch['group_layer_map'] = {renumber[k]: groups for k, groups in
                                   arch['group_layer_map'].items()
                                   if k in renumber}
    backbone.arch = arch
    return cfg


def train_one_iteration(config, data_root, pipeline, dataset=None,
                        crop_size=None):
    """Run one training iteration of a config on generated data.

    Builds the config's model (random weights) with one block per stage of
    an mmrep backbone (the preset's widths and other settings, so the neck
    and heads are wired as configured; another library's backbone as
    configured) and its optimizer, its training dataset on
    ``data_root`` with a reduced ``pipeline``, and runs ``model.train_step``
    on a batch of two samples.

    Args:
        config (str): the config file.
        data_root (str): a generated dataset in the config's layout.
        pipeline (list[dict]): the training pipeline to use instead of the
            config's (no resizing to full size).
        dataset (dict, optional): further dataset overrides (annotation
            file, image prefix, classes).
        crop_size (tuple[int, int], optional): the segmentation data
            preprocessor's padding size instead of the config's.

    Returns:
        tuple[dict, float]: the logged losses, and the largest change of a
        backbone parameter.
    """
    import copy

    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DATASETS, MODELS, init_default_scope
    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    cfg.model.backbone.init_cfg = None  # random weights, nothing to load
    backbone = MODELS.get(cfg.model.backbone.type)
    if hasattr(backbone, 'parse_arch'):  # mmrep's; baselines stay as set
        arch = backbone.parse_arch(cfg.model.backbone.arch)
        arch['num_blocks'] = (1, ) * len(arch['num_blocks'])
        if arch.get('group_layer_map'):  # RepVGG: blocks 1..4 remain
            arch['group_layer_map'] = {
                k: g for k, g in arch['group_layer_map'].items() if k <= 4}
        cfg.model.backbone.arch = arch
    if crop_size is not None:
        cfg.model.data_preprocessor.size = crop_size
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    data_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    data_cfg.update(data_root=data_root, pipeline=pipeline, **(dataset or {}))
    data = DATASETS.build(data_cfg)
    batch = pseudo_collate([data[0], data[1]])
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    before = [p.detach().clone() for p in model.backbone.parameters()]
    log = model.train_step(batch, optim)
    change = max((p.detach() - b).abs().max().item()
                 for p, b in zip(model.backbone.parameters(), before))
    return {k: float(v.detach()) for k, v in log.items()}, change
