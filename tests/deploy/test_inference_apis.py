"""mmrep's fused files through the OpenMMLab inference APIs.

For every family, a small segmentor, detector and classifier with random
weights (random BatchNorm statistics, so every fused term counts, and BN in
the detector's head, so necks and heads fold too) is fused as
``ReparamCheckpointHook`` fuses it and saved as the hook saves it
(:func:`mmrep.deploy.hook.fused_checkpoint`). The file then goes through
mmseg's ``init_model`` / ``inference_model`` / ``MMSegInferencer``, mmdet's
``init_detector`` / ``inference_detector`` / ``DetInferencer``,
mmpretrain's ``init_model`` / ``ImageClassificationInferencer`` and
mmengine's ``load_checkpoint``, each with the training config and with the
deploy config, and must give the fused model's predictions: segmentation
pixel by pixel, detection box by box, classification logits to 1e-4.
``tools/reparam.py``'s output and a fused classifier converted by
``tools/convert_checkpoint.py`` go the same way.
"""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope

import mmrep  # noqa: F401
# The opt-in the shipped configs name in custom_imports: models built from
# here on switch to their fused form as a whole when fused weights load.
import mmrep.deploy.autoswitch  # noqa: F401,E402
from mmrep.deploy import (fused_loading, make_deploy_config,
                          reparameterize_model)
from mmrep.deploy.hook import fused_checkpoint
from mmrep.utils.testing import randomize_bn
from mmrep.utils import safe_load
from tool_runner import DEMO, REPO, load_tool, run_tool

COCO_DEMO = osp.join(REPO, 'configs', 'coco',
                     'demo_retinanet_cyclemlp-tiny_1xb2-cpu_coco-synthetic.py')

# A small arch per family, and the channels of its four stages.
FAMILIES = {
    'repmlpnet': (dict(type='mmrep.RepMLPNet', arch=dict(
        channels=(8, 16, 32, 64), num_blocks=(1, 1, 1, 1),
        sharesets=(1, 2, 4, 8), partition_sizes=(8, 4, 2, 1))),
        (8, 16, 32, 64)),
    'repvgg': (dict(type='mmrep.RepVGG', arch=dict(
        num_blocks=(1, 1, 1, 1), width_multiplier=(0.25, 0.25, 0.25, 0.25),
        group_layer_map={2: 2})), (16, 32, 64, 128)),
    'repmlp-res50': (dict(type='mmrep.RepMLPResNet', arch=dict(
        block_type='light', num_blocks=(1, 1, 1, 1), img_size=64,
        partition=2, fc3_groups=(16, 32))), (256, 512, 1024, 2048)),
    'cyclemlp': (dict(type='mmrep.CycleMLP', arch=dict(
        channels=(8, 16, 32, 64), num_blocks=(1, 1, 1, 1),
        mlp_ratios=(1, 1, 1, 1))), (8, 16, 32, 64)),
}
CLS_CLASSES = ('a', 'b', 'c', 'd', 'e')


# Tiny models: one thread is as fast, and far faster on a busy machine.
# Trains, exports, quantizes, fuzzes or starts processes: `make test-fast`
# leaves it out (the `slow` marker, pytest.ini).
pytestmark = [pytest.mark.slow,
              pytest.mark.usefixtures('one_torch_thread')]


@pytest.fixture(scope='module')
def image(tmp_path_factory):
    """A 64x64 RGB image file with some structure."""
    import mmcv
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    img[16:40, 8:48] = (200, 40, 40)
    path = str(tmp_path_factory.mktemp('image') / 'image.png')
    mmcv.imwrite(img, path)
    return path


@pytest.fixture
def switch_lines(monkeypatch):
    """The lines :mod:`mmrep.deploy.fused_loading` logs."""
    lines = []
    real = fused_loading.print_log

    def log(msg, *args, **kwargs):
        lines.append(msg)
        return real(msg, *args, **kwargs)
    monkeypatch.setattr(fused_loading, 'print_log', log)
    return lines


def seg_config(family):
    """The demo segmentor (UperNet with BN heads) on the family's small
    backbone."""
    backbone, channels = FAMILIES[family]
    cfg = Config.fromfile(DEMO)
    cfg.model.backbone = ConfigDict(backbone)
    cfg.model.decode_head.update(in_channels=list(channels), channels=16,
                                 pool_scales=(1, 2))
    cfg.model.auxiliary_head.update(in_channels=channels[2], channels=8)
    return cfg


def det_config(family):
    """The COCO demo RetinaNet on the family's small backbone, with BN in
    its head (folded in the fused file)."""
    backbone, channels = FAMILIES[family]
    cfg = Config.fromfile(COCO_DEMO)
    cfg.model.backbone = ConfigDict(backbone)
    cfg.model.neck.in_channels = list(channels)
    cfg.model.bbox_head.norm_cfg = dict(type='BN')
    cfg.model.test_cfg.max_per_img = 20
    return cfg


def cls_config(family):
    """An mmpretrain classifier (GAP + linear head) on the family's small
    backbone, 64x64 inputs."""
    backbone, channels = FAMILIES[family]
    return Config(dict(
        default_scope='mmpretrain',
        custom_imports=dict(imports=['mmrep', 'mmrep.deploy.autoswitch'],
                            allow_failed_imports=False),
        model=dict(type='ImageClassifier',
                   data_preprocessor=dict(
                       num_classes=len(CLS_CLASSES),
                       mean=[123.675, 116.28, 103.53],
                       std=[58.395, 57.12, 57.375], to_rgb=True),
                   backbone=dict(backbone, out_indices=(3, )),
                   neck=dict(type='GlobalAveragePooling'),
                   head=dict(type='LinearClsHead',
                             num_classes=len(CLS_CLASSES),
                             in_channels=channels[-1])),
        test_dataloader=dict(dataset=dict(type='CustomDataset', pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='ResizeEdge', scale=64, edge='short'),
            dict(type='CenterCrop', crop_size=64),
            dict(type='PackInputs')]))))


def build(cfg):
    from mmengine.registry import MODELS
    init_default_scope(cfg.default_scope)
    return MODELS.build(copy.deepcopy(cfg.model))


def fused_files(cfg, folder, dataset_meta):
    """Fuse a train-time model of ``cfg`` with random weights as the hook
    does and write its files.

    Returns:
        tuple: the train-time model, the fused model (eval mode), the fused
        file, the training config file and the deploy config file.
    """
    model = randomize_bn(build(cfg), seed=1).eval()
    saved = fused_checkpoint(model, cfg, source_checkpoint='iter_1.pth',
                             dataset_meta=dataset_meta)
    fused = reparameterize_model(model)
    assert saved['state_dict'].keys() == fused.state_dict().keys()
    path = osp.join(folder, 'iter_1_deploy.pth')
    torch.save(saved, path)
    train_cfg, deploy_cfg = (osp.join(folder, n)
                             for n in ('train.py', 'deploy.py'))
    cfg.dump(train_cfg)
    Config.fromstring(saved['meta']['deploy_config'], '.py').dump(deploy_cfg)
    fused.cfg = cfg
    return model, fused, path, train_cfg, deploy_cfg


def assert_fused_form(model):
    """The model as the fused file describes it: mmrep modules fused, no
    BatchNorm left outside the backbone."""
    assert model.backbone.deploy is True
    assert not [n for n, m in model.named_modules()
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                and not n.startswith('backbone.')]


def assert_same_tensor_outputs(model, ref, x):
    with torch.no_grad():
        out, expected = model(x, mode='tensor'), ref(x, mode='tensor')
    out = out if isinstance(out, (list, tuple)) else [out]
    expected = expected if isinstance(expected, (list, tuple)) else \
        [expected]
    flat = [t for o in out for t in (o if isinstance(o, (list, tuple))
                                     else [o])]
    flat_ref = [t for o in expected for t in (
        o if isinstance(o, (list, tuple)) else [o])]
    assert len(flat) == len(flat_ref) > 0
    for a, b in zip(flat, flat_ref):
        assert torch.equal(a, b)


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_segmentation_apis(family, image, tmp_path, switch_lines):
    from mmengine.runner import load_checkpoint
    from mmseg.apis import MMSegInferencer, inference_model, init_model
    from mmseg.datasets import CityscapesDataset
    cfg = seg_config(family)
    model, fused, path, train_cfg, deploy_cfg = fused_files(
        cfg, str(tmp_path), CityscapesDataset.METAINFO)
    expected = inference_model(fused, image)
    with torch.no_grad():  # the file is the train-time model, fused
        model.cfg = cfg
        train_logits = inference_model(model, image).seg_logits.data
    scale = train_logits.abs().max()
    assert (expected.seg_logits.data - train_logits).abs().max() <= \
        1e-4 * scale

    for config in (train_cfg, deploy_cfg):
        switch_lines.clear()
        segmentor = init_model(config, path, device='cpu')
        assert_fused_form(segmentor)
        assert segmentor.dataset_meta['classes'] == \
            CityscapesDataset.METAINFO['classes']
        result = inference_model(segmentor, image)
        assert torch.equal(result.pred_sem_seg.data,
                           expected.pred_sem_seg.data)
        if config == train_cfg:
            assert switch_lines == [
                'EncoderDecoder: the weights are in fused (deploy) form; '
                'switched it to its fused form before loading them']
        else:
            assert switch_lines == []

        inferencer = MMSegInferencer(model=config, weights=path,
                                     device='cpu')
        assert_fused_form(inferencer.model)
        out = inferencer(image, return_datasamples=True)
        assert torch.equal(out.pred_sem_seg.data, expected.pred_sem_seg.data)

        plain = build(Config.fromfile(config)).eval()
        load_checkpoint(plain, path, map_location='cpu', strict=True)
        assert_same_tensor_outputs(plain.eval(), fused,
                                   torch.randn(1, 3, 64, 64))


def assert_same_detections(result, expected):
    a, b = result.pred_instances, expected.pred_instances
    assert len(b) > 0
    assert torch.equal(a.labels, b.labels)
    assert torch.allclose(a.bboxes, b.bboxes, atol=1e-4)
    assert torch.allclose(a.scores, b.scores, atol=1e-5)


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_detection_apis(family, image, tmp_path, switch_lines):
    from mmdet.apis import DetInferencer, inference_detector, init_detector
    from mmengine.runner import load_checkpoint
    cfg = det_config(family)
    classes = tuple(cfg.test_dataloader.dataset.metainfo.classes)
    _, fused, path, train_cfg, deploy_cfg = fused_files(
        cfg, str(tmp_path), dict(classes=classes))
    fused.dataset_meta = dict(classes=classes)
    expected = inference_detector(fused, image)

    for config in (train_cfg, deploy_cfg):
        switch_lines.clear()
        detector = init_detector(config, path, device='cpu')
        assert_fused_form(detector)
        assert detector.dataset_meta['classes'] == classes
        assert_same_detections(inference_detector(detector, image), expected)
        assert len(switch_lines) == (config == train_cfg)

        inferencer = DetInferencer(model=config, weights=path, device='cpu',
                                   show_progress=False)
        assert_fused_form(inferencer.model)
        out = inferencer(image, return_datasamples=True, no_save_vis=True)
        assert_same_detections(out['predictions'][0], expected)

        plain = build(Config.fromfile(config)).eval()
        load_checkpoint(plain, path, map_location='cpu', strict=True)
        assert_same_tensor_outputs(plain.eval(), fused,
                                   torch.randn(1, 3, 64, 64))


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_classification_apis(family, image, tmp_path):
    from mmpretrain.apis import ImageClassificationInferencer, init_model
    cfg = cls_config(family)
    model, fused, path, train_cfg, deploy_cfg = fused_files(
        cfg, str(tmp_path), dict(classes=CLS_CLASSES))
    fused._config = cfg
    expected = ImageClassificationInferencer(fused)(image)[0]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = fused(x, mode='tensor')
        assert (logits - model(x, mode='tensor')).abs().max() <= 1e-4

    for config in (train_cfg, deploy_cfg):
        # A CycleMLP classifier has nothing to fuse: both forms are one.
        form = config == deploy_cfg or family != 'cyclemlp'
        classifier = init_model(config, path, device='cpu').eval()
        assert classifier.backbone.deploy is form
        with torch.no_grad():
            assert (classifier(x, mode='tensor') - logits).abs().max() <= \
                1e-4
        inferencer = ImageClassificationInferencer(
            model=config, pretrained=path, device='cpu')
        assert inferencer.model.backbone.deploy is form
        result = inferencer(image)[0]
        assert result['pred_label'] == expected['pred_label']
        assert result['pred_class'] == CLS_CLASSES[expected['pred_label']]
        assert np.abs(result['pred_scores'] -
                      expected['pred_scores']).max() <= 1e-4


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_a_backbone_loads_its_own_fused_weights(family, switch_lines):
    """A bare train-time backbone given fused weights switches itself."""
    from mmrep.models import backbones
    backbone_cfg, _ = FAMILIES[family]
    cls = getattr(backbones, backbone_cfg['type'].split('.')[1])
    backbone = randomize_bn(cls(backbone_cfg['arch']))
    fused = reparameterize_model(backbone.eval())
    fresh = cls(backbone_cfg['arch']).eval()
    fresh.load_state_dict(fused.state_dict(), strict=True)
    # CycleMLP's fused form is its train-time form: nothing to switch.
    switched = family != 'cyclemlp'
    assert fresh.deploy is switched and not fresh.training
    assert switch_lines == [f'{cls.__name__}: the weights are in fused '
                            f'(deploy) form; switched it to its fused form '
                            f'before loading them'] * switched
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(fresh(x), fused(x)):
            assert torch.equal(a, b)


class BackboneInAList(torch.nn.Module):
    """A model whose mmrep backbone sits in a ModuleList, beside a head
    whose conv + BN the fusion folds."""

    def __init__(self):
        super().__init__()
        from mmcv.cnn import ConvModule

        from mmrep.models.backbones import RepVGG
        self.parts = torch.nn.ModuleList([RepVGG(
            FAMILIES['repvgg'][0]['arch'])])
        self.head = ConvModule(128, 4, 1, norm_cfg=dict(type='BN'))

    def forward(self, x):
        return self.head(self.parts[0](x)[-1])


def test_a_backbone_deeper_down_switches_the_whole_model(switch_lines):
    """The hook climbs as the model is assembled: a model holding its
    backbone in a ModuleList switches as a whole, its head's BN folded too
    (with the hook on the backbone's direct parent only, the ModuleList
    switched alone and the head's fused keys did not load)."""
    torch.manual_seed(0)
    fused = reparameterize_model(randomize_bn(BackboneInAList()).eval())
    model = BackboneInAList().eval()
    model.load_state_dict(fused.state_dict(), strict=True)
    assert model.parts[0].deploy and not model.head.with_norm
    assert switch_lines == ['BackboneInAList: the weights are in fused '
                            '(deploy) form; switched it to its fused form '
                            'before loading them']
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), fused(x))


def test_a_train_time_model_keeps_its_form_and_mode(switch_lines):
    """Train-time weights leave the model as it is; a switch keeps the
    train or eval mode."""
    cfg = seg_config('repvgg')
    model = build(cfg)
    state = randomize_bn(build(cfg)).state_dict()
    model.load_state_dict(state, strict=True)
    assert model.backbone.deploy is False and switch_lines == []
    fused = reparameterize_model(randomize_bn(build(cfg)))
    model.train()
    model.load_state_dict(fused.state_dict(), strict=True)
    assert model.backbone.deploy is True and model.training
    assert len(switch_lines) == 1


def test_reparam_tool_output(image, tmp_path):
    """``tools/reparam.py``'s fused file, with the training config and with
    the deploy config it writes, through ``MMSegInferencer``."""
    from mmseg.apis import MMSegInferencer, inference_model
    cfg = seg_config('repvgg')
    model = randomize_bn(build(cfg), seed=2).eval()
    ckpt, out = str(tmp_path / 'model.pth'), str(tmp_path / 'fused.pth')
    classes = tuple(f'class{i}' for i in range(cfg.model.decode_head
                                               .num_classes))
    torch.save({'state_dict': model.state_dict(),
                'meta': {'dataset_meta': {'classes': classes}}}, ckpt)
    train_cfg = str(tmp_path / 'train.py')
    cfg.dump(train_cfg)
    run_tool('tools/reparam.py', train_cfg, ckpt, '--out', out)
    # The source's class names go with the fused weights (the inference
    # APIs read them).
    saved = safe_load(out)
    assert saved['meta']['dataset_meta'] == {'classes': classes}
    fused = reparameterize_model(model)
    fused.cfg = cfg
    expected = inference_model(fused, image).pred_sem_seg.data
    for config in (train_cfg, str(tmp_path / 'fused_config.py')):
        inferencer = MMSegInferencer(model=config, weights=out, device='cpu')
        assert_fused_form(inferencer.model)
        assert tuple(inferencer.model.dataset_meta['classes']) == classes
        result = inferencer(image, return_datasamples=True)
        assert torch.equal(result.pred_sem_seg.data, expected)


def test_converted_fused_classifier(image, tmp_path):
    """A fused RepVGG release (its names), converted by
    ``tools/convert_checkpoint.py``, through mmpretrain's ``init_model``
    with the train-time config."""
    from mmpretrain.apis import init_model

    from mmrep.models.backbones import RepVGG
    arch = FAMILIES['repvgg'][0]['arch']
    torch.manual_seed(0)
    release = RepVGG(arch, out_indices=(3, ), deploy=True).state_dict()
    release = {k: torch.randn_like(v) * 0.1 for k, v in release.items()}
    release['linear.weight'] = torch.randn(len(CLS_CLASSES), 128) * 0.1
    release['linear.bias'] = torch.randn(len(CLS_CLASSES))
    src, dst = str(tmp_path / 'release.pth'), str(tmp_path / 'converted.pth')
    torch.save(release, src)
    run_tool('tools/convert_checkpoint.py', src, dst, '--family', 'repvgg',
             '--arch', repr(arch))
    cfg = cls_config('repvgg')
    config = str(tmp_path / 'train.py')
    cfg.dump(config)
    deployed = build(make_deploy_config(cfg)).eval()
    converted = safe_load(dst)
    deployed.load_state_dict(converted['state_dict'], strict=True)
    classifier = init_model(config, dst, device='cpu').eval()
    assert classifier.backbone.deploy is True
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (classifier(x, mode='tensor') -
                deployed(x, mode='tensor')).abs().max() <= 1e-4


def test_the_hooks_file_from_a_training_run(image, tmp_path):
    """The ``iter_1_deploy.pth`` a demo training run's hook writes carries
    the training set's classes, and gives with the training config what
    the deploy config in its ``meta`` gives, and the train-time
    checkpoint's logits."""
    from mmseg.apis import MMSegInferencer
    from mmseg.datasets import CityscapesDataset

    from mmrep.datasets import make_cityscapes_like
    data = make_cityscapes_like(str(tmp_path / 'data'), num_train=2,
                                num_val=1)
    work = str(tmp_path / 'work')
    load_tool('train').main([
        DEMO, '--work-dir', work, '--cfg-options',
        *(f'{k}.dataset.data_root={data}' for k in (
            'train_dataloader', 'val_dataloader', 'test_dataloader')),
        'train_dataloader.batch_size=2', 'train_cfg.max_iters=1',
        'train_cfg.val_begin=2', 'default_hooks.checkpoint.interval=1',
        'experiment_name=inference_hook_file'])
    path = osp.join(work, 'iter_1_deploy.pth')
    meta = safe_load(path)['meta']
    assert tuple(meta['dataset_meta']['classes']) == \
        CityscapesDataset.METAINFO['classes']
    deploy_cfg = str(tmp_path / 'deploy.py')
    Config.fromstring(meta['deploy_config'], '.py').dump(deploy_cfg)

    def predict(config, weights):
        inferencer = MMSegInferencer(model=config, weights=weights,
                                     device='cpu')
        return inferencer(image, return_datasamples=True), inferencer.model

    expected, _ = predict(deploy_cfg, path)
    result, model = predict(DEMO, path)
    assert_fused_form(model)
    assert model.dataset_meta['classes'] == \
        CityscapesDataset.METAINFO['classes']
    assert torch.equal(result.pred_sem_seg.data, expected.pred_sem_seg.data)
    # The training checkpoint holds mmengine's log buffers, which torch's
    # weights-only loading in the libraries refuses: its weights go in a
    # plain file, as docs/en/user_guides/inference.md says.
    plain = str(tmp_path / 'iter_1_weights.pth')
    torch.save({'state_dict': safe_load(osp.join(work, 'iter_1.pth'))[
        'state_dict']}, plain)
    train_time, _ = predict(DEMO, plain)
    ref = train_time.seg_logits.data
    assert (result.seg_logits.data - ref).abs().max() <= \
        1e-4 * ref.abs().max()
