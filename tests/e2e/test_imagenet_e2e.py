"""ImageNet classification end to end: every configs/imagenet config builds
a classifier whose head fits its backbone, and one config per family trains
for two iterations through tools/train.py and is evaluated through
tools/test.py with mmpretrain's Accuracy metric, on a generated
ImageNet-layout set with reduced architectures and 64x64 images."""
import glob
import json
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmrep  # noqa: F401
from mmrep.utils import safe_load

from conftest import FIXTURES
from tool_runner import load_tool

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(REPO, 'configs', 'imagenet')
CONFIGS = sorted(glob.glob(osp.join(CONFIG_DIR, '*.py')))
NUM_CLASSES = 5  # the configs' Accuracy reports top-1 and top-5
IMG = 64

# One config per family, each with a reduced architecture for 64x64 images
# and the channels its last stage gives the head.
FAMILIES = {
    'repvgg': ('repvgg-b2g4_8xb32_in1k.py',
               dict(num_blocks=(1, 1, 2, 1),
                    width_multiplier=(0.25, 0.25, 0.25, 0.5),
                    group_layer_map={2: 2, 4: 2}), 256),
    'repmlpnet': ('repmlpnet-t256_8xb32_in1k-256px.py',
                  dict(channels=(16, 32, 64, 128), num_blocks=(1, 1, 2, 1),
                       sharesets=(1, 4, 8, 16),
                       partition_sizes=(16, 8, 4, 2)), 128),
    'cyclemlp': ('cyclemlp-b1_8xb128_in1k.py',
                 dict(channels=(16, 32, 64, 128), num_blocks=(1, 1, 2, 1),
                      mlp_ratios=(2, 2, 2, 2)), 128),
    'repmlp-res50': ('repmlp-res50-light-224-g4-8_8xb32_in1k.py',
                     dict(block_type='light', num_blocks=(1, 2, 2, 1),
                          img_size=IMG, partition=4, fc3_groups=(4, 8)),
                     2048),
}


# Tiny models: one thread is as fast, and far faster on a busy machine.
# Trains, exports, quantizes, fuzzes or starts processes: `make test-fast`
# leaves it out (the `slow` marker, pytest.ini).
pytestmark = [pytest.mark.slow,
              pytest.mark.usefixtures('one_torch_thread')]


@pytest.fixture(scope='module', autouse=True)
def quick_base_config_lookup():
    """Skip mmengine's metafile search for ``mmpretrain::_base_/...`` paths.

    mmengine first looks every ``package::`` config up in all the package's
    metafiles (about 0.5 s each) and falls back to the file itself when it
    is not there, which base configs never are; raising at once takes the
    same fallback. Only this test process is affected.
    """
    import mmengine.config.config as config_module
    original = config_module._get_external_cfg_path

    def lookup(package_path, cfg_file):
        if cfg_file.startswith('_base_/'):
            raise ValueError('base configs have no metafile entry')
        return original(package_path, cfg_file)

    config_module._get_external_cfg_path = lookup
    yield
    config_module._get_external_cfg_path = original


def test_every_preset_has_a_config():
    names = {osp.basename(c) for c in CONFIGS}
    for arch in ('a0', 'a1', 'a2', 'b0', 'b1', 'b1g2', 'b1g4', 'b2', 'b2g2',
                 'b2g4', 'b3', 'b3g2', 'b3g4'):
        assert f'repvgg-{arch}_8xb32_in1k.py' in names
    for arch in ('t224', 'b224'):
        assert f'repmlpnet-{arch}_8xb32_in1k.py' in names
    for arch in ('t256', 'b256', 'd256', 'l256'):
        assert f'repmlpnet-{arch}_8xb32_in1k-256px.py' in names
    for arch in ('b1', 'b2', 'b3', 'b4', 'b5'):
        assert f'cyclemlp-{arch}_8xb128_in1k.py' in names
    for arch in ('bottleneck-224', 'light-224', 'bottleneck-224-g4-8',
                 'bottleneck-224-g8-16', 'light-224-g4-8', 'light-224-g8-16'):
        assert f'repmlp-res50-{arch}_8xb32_in1k.py' in names


@pytest.mark.parametrize('config', CONFIGS, ids=osp.basename)
def test_config_builds_with_matching_head(config):
    """Build on the meta device (no memory, no initialization) and run the
    backbone and neck at the config's resolution."""
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(config)
    assert cfg.custom_imports == dict(
        imports=['mmrep', 'mmrep.deploy.autoswitch'],
        allow_failed_imports=False)
    assert cfg.model.backbone.type.startswith('mmrep.')
    assert dict(type='mmrep.ReparamCheckpointHook') in cfg.custom_hooks
    assert cfg.model.head.type == 'LinearClsHead'
    assert cfg.model.head.num_classes == 1000
    init_default_scope('mmpretrain')
    crop = [t for t in cfg.test_dataloader.dataset.pipeline
            if t.type == 'CenterCrop'][0].crop_size
    train_crop = [t for t in cfg.train_dataloader.dataset.pipeline
                  if t.type == 'RandomResizedCrop'][0].scale
    assert crop == train_crop
    if cfg.model.backbone.type == 'mmrep.RepMLPNet':
        # Its partitions are the stage maps at the preset's resolution.
        assert cfg.model.backbone.arch.endswith(str(crop))
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
        feats = model.extract_feat(torch.empty(2, 3, crop, crop))
    assert feats[-1].shape == (2, cfg.model.head.in_channels)
    assert model.head.fc.in_features == cfg.model.head.in_channels
    assert any(k.startswith('head.fc.') for k in model.state_dict())


def small_config(name, arch, in_channels, data_root, folder,
                 num_classes=NUM_CLASSES):
    """Write a copy of ``configs/imagenet/<name>`` for the generated set:
    ``arch`` for the backbone, 64x64 crops, batches of 5, one epoch.

    Args:
        name (str): config file name in ``configs/imagenet``.
        arch (str | dict): backbone arch.
        in_channels (int): the head's input channels.
        data_root (str): the generated set.
        folder (str): where the config is written.
        num_classes (int): the head's outputs.

    Returns:
        str: the path of the written config.
    """
    cfg = Config.fromfile(osp.join(CONFIG_DIR, name))
    cfg.model.backbone.arch = arch
    cfg.model.head.in_channels = in_channels
    cfg.model.head.num_classes = num_classes
    cfg.data_preprocessor.num_classes = num_classes
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[key]
        loader.batch_size = NUM_CLASSES
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.dataset.data_root = data_root
        for t in loader.dataset.pipeline:
            if t.type in ('RandomResizedCrop', 'ResizeEdge'):
                t.scale = IMG
            elif t.type == 'CenterCrop':
                t.crop_size = IMG
    cfg.train_cfg.max_epochs = 1
    cfg.default_hooks.logger.interval = 1
    path = osp.join(folder, name)
    cfg.dump(path)
    return path


@pytest.fixture(scope='module')
def imagenet_data(tmp_path_factory):
    from mmrep.datasets import make_imagenet_like
    root = str(tmp_path_factory.mktemp('imagenet'))
    # Two training batches of 5, one validation batch.
    return make_imagenet_like(root, num_classes=NUM_CLASSES,
                              per_class_train=2, per_class_val=1, size=80,
                              seed=0)


def test_generated_set_layout(imagenet_data):
    from mmpretrain.datasets import ImageNet
    init_default_scope('mmpretrain')
    for split, count in (('train', 2 * NUM_CLASSES), ('val', NUM_CLASSES)):
        dataset = ImageNet(data_root=imagenet_data, split=split,
                           pipeline=[])
        assert len(dataset) == count
        labels = sorted(dataset.get_gt_labels().tolist())
        assert labels == sorted(list(range(NUM_CLASSES)) * (count //
                                                            NUM_CLASSES))


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_train_and_evaluate(family, imagenet_data, tmp_path):
    name, arch, in_channels = FAMILIES[family]
    config = small_config(name, arch, in_channels, imagenet_data,
                          str(tmp_path))
    work = str(tmp_path / 'work')
    # Distinct experiment names: mmengine keys its logger and visualizer on
    # them, and two runs in one second would otherwise share one.
    load_tool('train').main([config, '--work-dir', work, '--cfg-options',
                             f'experiment_name=train_{family}'])
    ckpt = osp.join(work, 'epoch_1.pth')
    assert osp.isfile(ckpt)
    assert osp.isfile(osp.join(work, 'epoch_1_deploy.pth'))
    state = safe_load(ckpt)
    assert state['meta']['epoch'] == 1 and state['meta']['iter'] == 2
    assert state['state_dict']['head.fc.weight'].shape == (NUM_CLASSES,
                                                           in_channels)
    scalars = glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))
    with open(scalars[0]) as f:
        losses = [json.loads(line)['loss'] for line in f if '"loss"' in line]
    assert len(losses) == 2 and all(map(math.isfinite, losses))

    metrics_file = str(tmp_path / 'metrics.json')
    load_tool('test').main([config, ckpt, '--work-dir', work,
                            '--out-metrics', metrics_file, '--cfg-options',
                            f'experiment_name=test_{family}'])
    with open(metrics_file) as f:
        metrics = json.load(f)
    assert 0 <= metrics['accuracy/top1'] <= 100
    assert 0 <= metrics['accuracy/top5'] <= 100


@pytest.mark.parametrize('form', ['train', 'deploy'])
def test_converted_release_evaluates(form, imagenet_data, tmp_path):
    """An original RepVGG-A0 release (its names and shapes, random values),
    converted by tools/convert_checkpoint.py, is evaluated by tools/test.py
    with the unchanged RepVGG-A0 config (1000 classes; the generated labels
    are 0..4); the tool recognises fused weights and evaluates them with
    the backbone in deploy form."""
    with open(osp.join(FIXTURES, 'repvgg_full_keys.json')) as f:
        shapes = json.load(f)['RepVGG-A0'][form]
    torch.manual_seed(0)
    src = {k: torch.tensor(0) if not s else torch.rand(s) * 0.1 + 0.95
           for k, s in shapes.items()}
    src_path, ckpt = str(tmp_path / 'src.pth'), str(tmp_path / 'a0.pth')
    torch.save(src, src_path)
    assert load_tool('convert_checkpoint').main(
        [src_path, ckpt, '--family', 'repvgg']) == 0
    config = small_config('repvgg-a0_8xb32_in1k.py', 'A0', 1280,
                          imagenet_data, str(tmp_path), num_classes=1000)
    metrics_file = str(tmp_path / 'metrics.json')
    load_tool('test').main([
        config, ckpt, '--work-dir', str(tmp_path / 'work'), '--out-metrics',
        metrics_file, '--cfg-options', f'experiment_name=converted_{form}'])
    with open(metrics_file) as f:
        assert 0 <= json.load(f)['accuracy/top1'] <= 100
    log, = glob.glob(osp.join(str(tmp_path / 'work'), '*', '*.log'))
    with open(log) as f:
        assert (f'{ckpt} holds fused (deploy) weights' in f.read()) == \
            (form == 'deploy')
