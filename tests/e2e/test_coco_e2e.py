"""Detection end to end: every COCO config builds and runs (the new ones
also train one iteration on generated data), and short trainings of the
small CycleMLP RetinaNet and Mask R-CNN through tools/train.py save
checkpoints (and their fused form) that tools/test.py evaluates with mmdet's
CocoMetric (boxes; boxes and masks)."""
import glob
import json
import os.path as osp

import pytest
import torch
from conftest import REPO, train_one_iteration
from mmengine.config import Config
from mmengine.registry import init_default_scope
from test_cityscapes_e2e import run_tool
from tool_runner import train_then_test

import mmrep  # noqa: F401
from mmrep.utils import safe_load

# Trains, exports, quantizes, fuzzes or starts processes: `make test-fast`
# leaves it out (the `slow` marker, pytest.ini).
pytestmark = pytest.mark.slow

CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'coco', '*.py')))
RETINANET = [c for c in CONFIGS if 'retinanet' in osp.basename(c)]
MASK_RCNN = [c for c in CONFIGS if 'mask-rcnn' in osp.basename(c)]
DEMO = osp.join(REPO, 'configs', 'coco',
                'demo_retinanet_cyclemlp-tiny_1xb2-cpu_coco-synthetic.py')
MASK_DEMO = osp.join(REPO, 'configs', 'coco',
                     'demo_mask-rcnn_cyclemlp-tiny_1xb2-cpu_coco-synthetic.py')
# The CycleMLP paper's settings beyond the first RetinaNet configs.
PAPER_CONFIGS = [c for c in MASK_RCNN if c != MASK_DEMO] + [
    osp.join(REPO, 'configs', 'coco',
             f'retinanet_cyclemlp-b{i}_fpn_1x_coco.py') for i in (3, 4, 5)]
# Reduced input: not a multiple of RepMLPNet-T224's stage-0 partition (56),
# so the partition padding runs; still a multiple of 32, as the detector's
# batch padding would make it.
INPUT_HW = (256, 320)


def test_configs_found():
    names = {osp.basename(c) for c in CONFIGS}
    assert {'retinanet_cyclemlp-b1_fpn_1x_coco.py',
            'retinanet_cyclemlp-b2_fpn_1x_coco.py',
            'retinanet_repmlpnet-t224_fpn_1x_coco.py',
            osp.basename(DEMO), osp.basename(MASK_DEMO)} <= names
    assert len(PAPER_CONFIGS) == 8 and set(PAPER_CONFIGS) <= set(CONFIGS)


def load_config(config, detector):
    """Read a COCO config, check what every one of them sets (the CycleMLP
    paper's recipe but in the demos) and drop its pretrained weights.

    Args:
        config (str): the config file.
        detector (str): the detector type it must build.

    Returns:
        Config: the config, ``init_cfg=None`` in the backbone.
    """
    cfg = Config.fromfile(config)
    assert cfg.custom_imports == dict(
        imports=['mmrep', 'mmrep.deploy.autoswitch'],
        allow_failed_imports=False)
    assert dict(type='mmrep.ReparamCheckpointHook') in cfg.custom_hooks
    assert cfg.model.type == detector
    assert cfg.model.backbone.type.startswith('mmrep.')
    if not osp.basename(config).startswith('demo_'):
        assert cfg.model.backbone.init_cfg.type == 'Pretrained'
        assert cfg.optim_wrapper.optimizer == dict(
            type='AdamW', lr=1e-4, weight_decay=1e-4)
        assert cfg.train_dataloader.batch_size == 2
        assert cfg.auto_scale_lr.base_batch_size == 16
        assert cfg.train_cfg.max_epochs == 12
    cfg.model.backbone.init_cfg = None  # random weights, nothing to load
    return cfg


@pytest.mark.parametrize('config', RETINANET, ids=osp.basename)
def test_config_builds_and_runs_forward(config):
    from mmdet.registry import MODELS
    cfg = load_config(config, 'RetinaNet')
    neck = cfg.model.neck
    assert neck.start_level == 1 and neck.add_extra_convs == 'on_input'
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model).eval()

    # The FPN's inputs are the backbone's stage widths.
    assert list(neck.in_channels) == list(model.backbone.arch['channels'])
    h, w = INPUT_HW
    partitions = model.backbone.arch.get('partition_sizes')
    if partitions is not None:
        assert any((h // (4 * 2**i)) % ph or (w // (4 * 2**i)) % pw
                   for i, (ph, pw) in enumerate(partitions))

    with torch.no_grad():
        cls_scores, bbox_preds = model(torch.randn(1, 3, h, w),
                                       mode='tensor')
    head = cfg.model.bbox_head
    anchors = head.anchor_generator.scales_per_octave * len(
        head.anchor_generator.ratios)
    assert len(cls_scores) == len(bbox_preds) == neck.num_outs == 5
    for level, (cls, box) in enumerate(zip(cls_scores, bbox_preds)):
        stride = 8 * 2**level
        size = (-(-h // stride), -(-w // stride))
        assert cls.shape == (1, anchors * head.num_classes, *size)
        assert box.shape == (1, anchors * 4, *size)
        assert torch.isfinite(cls).all() and torch.isfinite(box).all()

    # Multi-GPU training (DDP) needs every trainable parameter to get a
    # gradient unless the config sets find_unused_parameters.
    model.train()
    outs = model(torch.randn(1, 3, 64, 96), mode='tensor')
    sum(o.sum() for level in outs for o in level).backward()
    unused = [n for n, p in model.named_parameters()
              if p.requires_grad and p.grad is None]
    assert not unused or cfg.get('find_unused_parameters'), unused


@pytest.fixture(scope='module')
def coco_data(tmp_path_factory):
    from mmrep.datasets import make_coco_like
    root = str(tmp_path_factory.mktemp('coco'))
    return make_coco_like(root, num_train=8, num_val=2, size=(128, 128),
                          seed=1)


@pytest.mark.parametrize('config', MASK_RCNN, ids=osp.basename)
def test_mask_rcnn_config_builds_and_runs_forward(config):
    from mmdet.registry import MODELS
    cfg = load_config(config, 'MaskRCNN')
    assert cfg.model.backbone.type == 'mmrep.CycleMLP'
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model).eval()
    assert list(cfg.model.neck.in_channels) == \
        list(model.backbone.arch['channels'])
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, *INPUT_HW))
    h, w = INPUT_HW
    assert [f.shape[-2:] for f in feats] == [
        (-(-h // s), -(-w // s)) for s in (4, 8, 16, 32, 64)]


@pytest.fixture(scope='module')
def small_coco(tmp_path_factory):
    from mmrep.datasets import make_coco_like
    return make_coco_like(str(tmp_path_factory.mktemp('small_coco')),
                          num_train=2, num_val=1, size=(64, 64), seed=4)


@pytest.mark.parametrize('config', PAPER_CONFIGS, ids=osp.basename)
def test_paper_config_trains_one_iteration(config, small_coco):
    from mmrep.datasets import COCO_DEMO_CLASSES
    with_mask = 'mask-rcnn' in osp.basename(config)
    pipeline = [dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', with_bbox=True,
                     with_mask=with_mask),
                dict(type='PackDetInputs')]
    dataset = dict(ann_file='annotations/instances_train.json',
                   data_prefix=dict(img='images/train/'),
                   metainfo=dict(classes=tuple(
                       n for n, _ in COCO_DEMO_CLASSES.values())))
    log, change = train_one_iteration(config, small_coco + '/', pipeline,
                                      dataset)
    assert torch.isfinite(torch.tensor(log['loss'])) and log['loss'] > 0
    if with_mask:
        assert 'loss_mask' in log
    assert change > 0


def coco_options(root, iters):
    """Command-line overrides for a short run of the demo config.

    Args:
        root (str): a folder written by ``make_coco_like``.
        iters (int): training iterations; validation and the checkpoint
            come at the last one.

    Returns:
        list[str]: ``--cfg-options`` and its ``key=value`` items.
    """
    ann_val = osp.join(root, 'annotations', 'instances_val.json')
    return ['--cfg-options',
            *(f'{loader}.dataset.data_root={root}/' for loader in
              ('train_dataloader', 'val_dataloader', 'test_dataloader')),
            f'val_evaluator.ann_file={ann_val}',
            f'test_evaluator.ann_file={ann_val}',
            'train_dataloader.batch_size=2',
            f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
            f'default_hooks.checkpoint.interval={iters}',
            'default_hooks.logger.interval=1']


def test_synthetic_coco_annotations(coco_data):
    from mmrep.datasets import COCO_DEMO_CLASSES
    for split, count in (('train', 8), ('val', 2)):
        with open(osp.join(coco_data, 'annotations',
                           f'instances_{split}.json')) as f:
            ann = json.load(f)
        assert len(ann['images']) == count
        assert {c['id'] for c in ann['categories']} == set(COCO_DEMO_CLASSES)
        per_image = {a['image_id'] for a in ann['annotations']}
        assert per_image == {im['id'] for im in ann['images']}
        for a in ann['annotations']:
            x, y, w, h = a['bbox']
            assert w > 0 and h > 0 and x >= 0 and y >= 0
            assert x + w <= 128 and y + h <= 128
            # One polygon outline within the box; the mask's pixel count.
            (poly, ) = a['segmentation']
            xs, ys = poly[0::2], poly[1::2]
            assert len(poly) >= 8 and len(xs) == len(ys)
            assert x - 1 <= min(xs) and max(xs) <= x + w + 1
            assert y - 1 <= min(ys) and max(ys) <= y + h + 1
            assert 0.6 * w * h <= a['area'] <= w * h
        for im in ann['images']:
            assert osp.isfile(osp.join(coco_data, 'images', split,
                                       im['file_name']))


def test_train_and_evaluate_coco(coco_data, tmp_path):
    work = str(tmp_path / 'work')
    out = run_tool('tools/train.py', DEMO, '--work-dir', work,
                   *coco_options(coco_data, 2))
    assert 'Iter(train) [2/2]' in out
    assert 'coco/bbox_mAP' in out  # validation at the end of training
    ckpt = osp.join(work, 'iter_2.pth')
    deploy = osp.join(work, 'iter_2_deploy.pth')
    assert osp.isfile(ckpt) and osp.isfile(deploy)
    state = safe_load(ckpt)
    assert state['meta']['iter'] == 2
    assert any(k.startswith('backbone.network.')
               for k in state['state_dict'])
    fused = safe_load(deploy)
    assert fused['meta']['source_checkpoint'] == 'iter_2.pth'
    assert "type='mmrep.CycleMLP'" in fused['meta']['deploy_config']
    assert set(fused['state_dict']) == set(state['state_dict'])

    # Evaluation through tools/test.py with mmdet's CocoMetric.
    metrics_file = str(tmp_path / 'metrics.json')
    run_tool('tools/test.py', DEMO, ckpt, '--work-dir', work,
             '--out-metrics', metrics_file, *coco_options(coco_data, 2))
    with open(metrics_file) as f:
        metrics = json.load(f)
    assert isinstance(metrics.get('coco/bbox_mAP'), float), metrics
    assert 0 <= metrics['coco/bbox_mAP'] <= 1
    assert 0 <= metrics['coco/bbox_mAP_50'] <= 1


def test_train_and_evaluate_mask_rcnn(coco_data, tmp_path):
    out, metrics = train_then_test(MASK_DEMO, str(tmp_path / 'work'),
                                   coco_options(coco_data, 2),
                                   str(tmp_path / 'metrics.json'))
    assert 'loss_mask' in out
    for key in ('coco/bbox_mAP', 'coco/segm_mAP', 'coco/segm_mAP_50'):
        assert isinstance(metrics.get(key), float), metrics
        assert 0 <= metrics[key] <= 1
