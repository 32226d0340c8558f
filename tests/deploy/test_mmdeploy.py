"""mmdeploy 1.3.1's conversion API with mmrep's deploy configs
(configs/mmdeploy/, which opt into :mod:`mmrep.apis.mmdeploy_compat`).

``mmdeploy.apis.torch2onnx`` converts the demo segmentor (RepMLPNet UperNet,
and the RepVGG one for a graph without BatchNormalization) and the COCO demo
detector (CycleMLP RetinaNet, and the same detector on a RepVGG backbone,
which has a fused form) from a training run's checkpoint (HistoryBuffers
and numpy values in it, as mmengine writes them) and from the fused file,
at a fixed and at a free input size; onnxruntime's output is compared with
the train-time PyTorch model's prediction on the same preprocessed input:
every pixel's label, every detection's label, box and score. The demo's
last map (4x8 at 128x256) is not divided by UPerHead's pooling bins 3 and
6, where mmdeploy's own rewrite of adaptive pooling changes results; the
shim's exact pooling keeps every pixel.

Each task runs four of its eight (backbone, checkpoint, deploy config)
conversions, chosen so that every pair of choices is converted once
(:data:`CASES`, checked by ``test_the_cases_cover_every_pair``): each
backbone from the training checkpoint and from the fused file, each with
the static and the dynamic config, and each checkpoint with both configs.

Skipped where mmdeploy is not installed (``tools/install.sh`` installs it
from requirements/mmdeploy.txt, without its pins).
"""
import os.path as osp

import numpy as np
import pytest
import torch
import untrusted_corpus as uc
from conftest import REPO

import mmrep
from mmrep.apis import build_model, load_config
from mmrep.deploy import make_deploy_config
from mmrep.utils.config_check import ModelConfigError
from mmrep.utils.testing import randomize_bn

pytestmark = pytest.mark.slow
pytest.importorskip('mmdeploy', reason='mmdeploy is not installed '
                    '(pip install --no-deps -r requirements/mmdeploy.txt)')

DEPLOY = osp.join(REPO, 'configs', 'mmdeploy')
SEGMENTORS = {
    'repmlpnet': 'configs/cityscapes/demo_upernet_repmlpnet-tiny_1xb8-cpu_'
                 'cityscapes-synthetic.py',
    'repvgg': 'configs/cityscapes/demo_upernet_repvgg-tiny_1xb8-cpu_'
              'cityscapes-synthetic.py'}
DETECTOR = 'configs/coco/demo_retinanet_cyclemlp-tiny_1xb2-cpu_coco-' \
           'synthetic.py'
#: The conversions of each task, (backbone, checkpoint, deploy config): a
#: covering of every pair of the 2 x 2 x 2 choices.
CASES = [('train', 'static'), ('fused', 'dynamic'), ('train', 'dynamic'),
         ('fused', 'static')]
SEGMENTOR_CASES = [(b, k, d) for b, (k, d) in
                   zip(['repmlpnet', 'repmlpnet', 'repvgg', 'repvgg'], CASES)]
DETECTOR_CASES = [(b, k, d) for b, (k, d) in
                  zip(['cyclemlp', 'cyclemlp', 'repvgg', 'repvgg'], CASES)]


def write_image(path, h, w, seed=0):
    import cv2
    image = np.random.RandomState(seed).randint(0, 256, (h, w, 3), np.uint8)
    cv2.imwrite(str(path), image)
    return str(path)


def write_checkpoints(model, cfg, folder):
    """A training checkpoint (mmengine's resume objects in it) and, where
    the model has a fused form, the fused file the deploy hook writes
    (``meta['deploy_config']``).

    Returns:
        dict[str, str]: ``{'train': path[, 'fused': path]}``.
    """
    train = uc.mmengine_resume_checkpoint()
    train.pop('optimizer')
    train['state_dict'] = model.state_dict()
    contents = {'train': train}
    try:
        deploy_text = make_deploy_config(cfg).pretty_text
    except ModelConfigError:
        pass  # nothing to fuse: the hook writes no fused file
    else:
        contents['fused'] = {
            'meta': {'deploy_config': deploy_text},
            'state_dict': mmrep.reparameterize_model(model).state_dict()}
    paths = {}
    for kind, content in contents.items():
        paths[kind] = str(folder / f'{kind}.pth')
        torch.save(content, paths[kind])
    return paths


def convert(deploy, model_cfg, checkpoint, image, work_dir):
    """mmdeploy's torch2onnx; returns the task processor, the deploy config
    and the .onnx file."""
    from mmdeploy.apis import torch2onnx
    from mmdeploy.apis.utils import build_task_processor
    from mmdeploy.utils import load_config as load_deploy
    deploy_cfg = osp.join(DEPLOY, deploy)
    torch2onnx(image, str(work_dir), 'end2end.onnx', deploy_cfg, model_cfg,
               checkpoint, device='cpu')
    deploy_cfg, model_cfg = load_deploy(deploy_cfg, model_cfg)
    processor = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    return processor, str(work_dir / 'end2end.onnx')


def preprocess(processor, model, image):
    data, inputs = processor.create_input(
        image, None, data_preprocessor=model.data_preprocessor)
    return data['data_samples'], inputs


def run_onnx(path, inputs):
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    return session.run(None, {'input': inputs.numpy()})


def node_types(path):
    import onnx
    return [n.op_type for n in onnx.load(path).graph.node]


@pytest.mark.parametrize('cases', [SEGMENTOR_CASES, DETECTOR_CASES],
                         ids=['segmentor', 'detector'])
def test_the_cases_cover_every_pair(cases):
    """Every backbone with both checkpoints and both deploy configs, and
    every checkpoint with both deploy configs."""
    backbones = {b for b, _, _ in cases}
    assert len(backbones) == 2 and len(cases) == len(set(cases))
    for i, j in ((0, 1), (0, 2), (1, 2)):
        pairs = {(c[i], c[j]) for c in cases}
        firsts = backbones if i == 0 else {'train', 'fused'}
        seconds = {'train', 'fused'} if j == 1 else {'static', 'dynamic'}
        assert pairs == {(a, b) for a in firsts for b in seconds}, (i, j)


@pytest.mark.parametrize('backbone, kind, deploy', SEGMENTOR_CASES)
def test_mmdeploy_segmentor_labels_every_pixel_as_pytorch(backbone, kind,
                                                         deploy, tmp_path):
    config = osp.join(REPO, SEGMENTORS[backbone])
    cfg = load_config(config)
    torch.manual_seed(0)
    model = randomize_bn(build_model(cfg)).eval()
    checkpoint = write_checkpoints(model, cfg, tmp_path)[kind]
    image = write_image(tmp_path / 'street.png', 128, 256)
    deploy = f'segmentation_onnxruntime_{deploy}.py'
    work = tmp_path / deploy[:-3]
    processor, onnx_file = convert(deploy, config, checkpoint, image, work)
    sizes = [image]
    if 'dynamic' in deploy:
        sizes.append(write_image(tmp_path / 'other.png', 96, 200, 1))
    for path in sizes:
        samples, inputs = preprocess(processor, model, path)
        with torch.no_grad():
            expected = model.predict(inputs, samples)[0]
        labels = run_onnx(onnx_file, inputs)[0]
        expected = expected.pred_sem_seg.data.numpy()
        agree = (labels.reshape(expected.shape) == expected).mean()
        assert agree == 1.0, f'{deploy} {path}: {agree:.4%} of pixels'
    types = node_types(onnx_file)
    if backbone == 'repvgg':
        assert 'BatchNormalization' not in types  # fused, heads folded
    assert 'AveragePool' not in types  # pooling by matrices


def detector_config(tmp_path, backbone):
    """The COCO demo detector, or the same on a tiny RepVGG backbone; every
    (anchor, class) score over the threshold goes to NMS in both PyTorch and
    the graph (``nms_pre`` above the anchor count: mmdet ranks pairs,
    mmdeploy anchors)."""
    path = tmp_path / f'retinanet_{backbone}.py'
    lines = [f"_base_ = ['{osp.join(REPO, DETECTOR)}']",
             'model = dict(test_cfg=dict(nms_pre=100000))']
    if backbone == 'repvgg':
        lines[1:] = ["model = dict(backbone=dict(_delete_=True, "
                     "type='mmrep.RepVGG', arch=dict(num_blocks=(1, 2, 1, "
                     "1), width_multiplier=(0.25, 0.25, 0.25, 0.25)), "
                     "out_indices=(1, 2, 3)), neck=dict(in_channels=[32, "
                     "64, 128]), test_cfg=dict(nms_pre=100000))"]
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def spread_scores(model):
    """Class scores spread over (0, 1) and boxes near their anchors: random
    initial weights give every anchor the prior's 0.01 (nothing passes the
    0.05 threshold) and box deltas that clamp to the image border."""
    with torch.no_grad():
        model.bbox_head.retina_cls.bias.normal_(
            -3, 1.5, generator=torch.Generator().manual_seed(0))
        model.bbox_head.retina_reg.weight.mul_(0.01)
    return model


def same_detections(dets, labels, expected, what):
    """Every graph detection is a PyTorch one: same label, IoU above 0.999,
    score within 1e-5; and as many."""
    from mmdet.structures.bbox import bbox_overlaps
    boxes, scores = torch.from_numpy(dets[:, :4]), dets[:, 4]
    kept = scores > 0
    assert int(kept.sum()) == len(expected.scores), what
    assert len(expected.scores) > 10, f'{what}: too few detections to compare'
    iou = bbox_overlaps(boxes[torch.from_numpy(kept)], expected.bboxes)
    for i in range(int(kept.sum())):
        twins = ((iou[i] > 0.999) & (expected.labels == int(labels[i])) &
                 ((expected.scores - float(scores[i])).abs() < 1e-5))
        assert twins.any(), f'{what}: detection {i} ({dets[i]}, label ' \
            f'{labels[i]}) has no PyTorch twin'


@pytest.mark.parametrize('backbone, kind, deploy', DETECTOR_CASES)
def test_mmdeploy_detector_finds_pytorchs_boxes(backbone, kind, deploy,
                                                tmp_path):
    config = detector_config(tmp_path, backbone)
    cfg = load_config(config)
    torch.manual_seed(0)
    model = spread_scores(randomize_bn(build_model(cfg))).eval()
    checkpoints = write_checkpoints(model, cfg, tmp_path)
    assert set(checkpoints) == {'train', 'fused'}
    checkpoint = checkpoints[kind]
    # square: resized to 128x128, no padding, so mmdeploy's clamp to the
    # input size is mmdet's clamp to the image size
    image = write_image(tmp_path / 'scene.png', 128, 128)
    deploy = f'detection_onnxruntime_{deploy}.py'
    work = tmp_path / f'{kind}-{deploy[:-3]}'
    processor, onnx_file = convert(deploy, config, checkpoint, image, work)
    samples, inputs = preprocess(processor, model, image)
    with torch.no_grad():
        expected = model.predict(inputs, samples,
                                 rescale=False)[0].pred_instances
    dets, labels = run_onnx(onnx_file, inputs)
    same_detections(dets[0], labels[0], expected,
                    f'{backbone} {kind} {deploy}')
    assert 'BatchNormalization' not in node_types(onnx_file)
