"""ADE20K end to end: the generated ADE20K-layout set, every ADE20K config
trains one iteration at a reduced size on it, and the small Semantic FPN +
CycleMLP trains through tools/train.py (fused checkpoint written by the
hook) and evaluates through tools/test.py with mmseg's IoUMetric."""
import glob
import os.path as osp

import numpy as np
import pytest
import torch
from conftest import REPO, train_one_iteration
from mmengine.config import Config
from mmengine.registry import init_default_scope
from PIL import Image
from tool_runner import train_then_test

import mmrep  # noqa: F401

# Trains, exports, quantizes, fuzzes or starts processes: `make test-fast`
# leaves it out (the `slow` marker, pytest.ini).
pytestmark = pytest.mark.slow

CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'ade20k', '*.py')))
DEMO = osp.join(REPO, 'configs', 'ade20k',
                'demo_fpn_cyclemlp-tiny_1xb4-cpu_ade20k-synthetic.py')
PIPELINE = [dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', reduce_zero_label=True),
            dict(type='PackSegInputs')]


@pytest.fixture(scope='module')
def ade_data(tmp_path_factory):
    from mmrep.datasets import make_ade20k_like
    return make_ade20k_like(str(tmp_path_factory.mktemp('ade')),
                            num_train=4, num_val=2, size=(64, 64), seed=2)


def test_configs_found():
    names = {osp.basename(c) for c in CONFIGS}
    assert {f'fpn_cyclemlp-b{i}_8xb4-40k_ade20k-512x512.py'
            for i in range(1, 6)} <= names
    assert {'upernet_repmlpnet-t224_8xb2-160k_ade20k-512x512.py',
            'upernet_repvgg-b1g2_8xb2-160k_ade20k-512x512.py',
            osp.basename(DEMO)} <= names


def test_generated_ade20k_layout(ade_data):
    from mmrep.datasets import ADE20K_DEMO_LABELS
    from mmseg.datasets import ADE20KDataset
    for split, count in (('training', 4), ('validation', 2)):
        images = sorted(glob.glob(osp.join(ade_data, 'images', split,
                                           '*.jpg')))
        labels = sorted(glob.glob(osp.join(ade_data, 'annotations', split,
                                           '*.png')))
        assert len(images) == len(labels) == count
        assert [osp.basename(p)[:-4] for p in images] == \
            [osp.basename(p)[:-4] for p in labels]
    values = np.unique(np.asarray(Image.open(labels[0])))
    assert 0 in values  # "other": ignored once reduce_zero_label applies
    assert set(values) <= {0, *ADE20K_DEMO_LABELS.values()}
    # mmseg's dataset reads it with reduce_zero_label: 0 -> 255, v -> v - 1.
    init_default_scope('mmseg')
    data = ADE20KDataset(data_root=ade_data, pipeline=PIPELINE,
                         data_prefix=dict(img_path='images/validation',
                                          seg_map_path='annotations/'
                                                       'validation'))
    assert len(data) == 2
    seg = data[1]['data_samples'].gt_sem_seg.data
    assert set(seg.unique().tolist()) <= \
        {255, *(v - 1 for v in ADE20K_DEMO_LABELS.values())}
    assert (seg == 255).any()


@pytest.mark.parametrize('config', [c for c in CONFIGS if c != DEMO],
                         ids=osp.basename)
def test_config_trains_one_iteration(config, ade_data):
    cfg = Config.fromfile(config)
    assert cfg.custom_imports == dict(
        imports=['mmrep', 'mmrep.deploy.autoswitch'],
        allow_failed_imports=False)
    assert dict(type='mmrep.ReparamCheckpointHook') in cfg.custom_hooks
    assert cfg.crop_size == (512, 512)
    assert cfg.model.decode_head.num_classes == 150
    assert cfg.train_dataloader.dataset.type == 'ADE20KDataset'
    backbone = cfg.model.backbone
    assert backbone.init_cfg.type == 'Pretrained'
    if backbone.type != 'mmrep.CycleMLP':  # CycleMLP has no BatchNorm
        assert backbone.norm_cfg == dict(type='SyncBN', requires_grad=True)
    if osp.basename(config).startswith('fpn_'):  # the CycleMLP recipe
        assert cfg.optim_wrapper.optimizer == dict(
            type='AdamW', lr=2e-4, weight_decay=1e-4)
        assert cfg.train_cfg.max_iters == 40000
        assert cfg.train_dataloader.batch_size == 4
    log, change = train_one_iteration(config, ade_data, PIPELINE,
                                      crop_size=(64, 64))
    assert np.isfinite(log['loss']) and log['loss'] > 0
    assert change > 0


def test_train_and_evaluate_ade20k(ade_data, tmp_path):
    work = str(tmp_path / 'work')
    options = ['--cfg-options',
               *(f'{loader}.dataset.data_root={ade_data}' for loader in
                 ('train_dataloader', 'val_dataloader', 'test_dataloader')),
               'model.data_preprocessor.size=(64,64)',
               'train_dataloader.batch_size=2', 'train_cfg.max_iters=2',
               'train_cfg.val_interval=2',
               'default_hooks.checkpoint.interval=2',
               'default_hooks.logger.interval=1']
    out, metrics = train_then_test(DEMO, work, options,
                                   str(tmp_path / 'metrics.json'))
    assert 'mIoU' in out  # validation at the end of training
    assert {'mIoU', 'mAcc', 'aAcc'} <= set(metrics)
    assert 0 <= metrics['mIoU'] <= 100
