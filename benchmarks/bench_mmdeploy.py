"""mmdeploy 1.3.1 with mmrep's deploy configs against ``tools/export_onnx.py``.

Usage:
    python benchmarks/bench_mmdeploy.py [--runs 20] [--write]

For the demo segmentors (RepMLPNet and RepVGG UperNet, 128x256) and mmseg's
ResNet-18 UperNet on the same head, and for the COCO demo RetinaNet
(CycleMLP, 128x128), from a training checkpoint (random weights, random BN
statistics; the detector's class scores spread so that boxes pass the
threshold):

* mmdeploy's ``torch2onnx`` with ``configs/mmdeploy/*_onnxruntime_static.py``
  (mmrep's shim: whole-model fusion, exact pooling): pixel agreement of its
  labels with the train-time PyTorch model (segmentors), its
  BatchNormalization node count, and its onnxruntime latency against the
  graph ``tools/export_onnx.py`` writes of the same model (logits at the
  head's stride for a segmentor, raw head outputs for a detector: mmdeploy's
  graph also resizes and takes the argmax, or decodes boxes and runs NMS);
* mmdeploy's own rewrite of ``F.adaptive_avg_pool2d`` (``avg_pool2d`` with
  the kernel ``floor(input / bins)``), which the shim replaces: the share of
  pixels whose label it changes, computed in PyTorch with that rewrite, at
  the sizes of :data:`SIZES`.

Prints a markdown table; ``--write`` puts it into benchmarks/README.md.
"""
import argparse
import contextlib
import os.path as osp
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(HERE)
sys.path[:0] = [HERE] + [osp.join(REPO, 'tests', group)
                         for group in ('', 'deploy', 'models', 'e2e')]

import mmrep  # noqa: E402,F401
from mmrep.apis import build_model, load_config  # noqa: E402
from mmrep.apis.onnx_export import export  # noqa: E402
from mmrep.deploy.runtime import run_session, session  # noqa: E402
from mmrep.utils.testing import randomize_bn  # noqa: E402
from readme_section import machine_line, update_section  # noqa: E402
from test_mmdeploy import (DETECTOR, SEGMENTORS, convert,  # noqa: E402
                           node_types, preprocess, spread_scores,
                           write_checkpoints, write_image)

#: Where mmdeploy's pooling rewrite is measured: the demo size (last map
#: 4x8, smaller than 6 bins), one whose last map (6x12) every bin divides,
#: and CamVid's 360x480 (last map 12x15: bins 2 and 6 do not divide 15).
SIZES = ((128, 256), (192, 384), (360, 480))

R18 = ("model = dict(backbone=dict(_delete_=True, type='ResNetV1c', "
       "depth=18, num_stages=4, out_indices=(0, 1, 2, 3), "
       "norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False, "
       "style='pytorch', contract_dilation=True), "
       "decode_head=dict(in_channels=[64, 128, 256, 512]), "
       "auxiliary_head=dict(in_channels=256))")


@contextlib.contextmanager
def mmdeploy_pooling():
    """``F.adaptive_avg_pool2d`` as mmdeploy 1.3.1's default rewrite
    computes it (mmdeploy/pytorch/functions/adaptive_pool.py)."""
    original = F.adaptive_avg_pool2d

    def floor_kernel(x, output_size):
        out = (output_size, ) * 2 if isinstance(output_size, int) \
            else tuple(output_size)
        if out == (1, 1):
            return original(x, out)
        k = [int(s / o) for s, o in zip(x.shape[2:], out)]
        return F.avg_pool2d(x, k, k, 0, False, False)
    F.adaptive_avg_pool2d = floor_kernel
    try:
        yield
    finally:
        F.adaptive_avg_pool2d = original


def latency_ms(path, x, runs):
    sess = session(path)
    run_session(sess, x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run_session(sess, x)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def model_config(tmp, name):
    if name == 'resnet18':
        path = osp.join(tmp, 'upernet_r18.py')
        with open(path, 'w') as f:
            f.write(f"_base_ = [{osp.join(REPO, SEGMENTORS['repvgg'])!r}]"
                    f"\n{R18}\n")
        return path
    if name == 'retinanet':
        return osp.join(REPO, DETECTOR)
    return osp.join(REPO, SEGMENTORS[name])


def measure(name, tmp, runs):
    """One row: mmdeploy's graph against mmrep's, and the pooling rewrite."""
    from pathlib import Path
    folder = Path(tmp) / name
    folder.mkdir()
    config = model_config(tmp, name)
    cfg = load_config(config)
    torch.manual_seed(0)
    model = randomize_bn(build_model(cfg)).eval()
    detector = name == 'retinanet'
    if detector:
        model = spread_scores(model)
    checkpoint = write_checkpoints(model, cfg, folder)['train']
    image = write_image(folder / 'image.png', *((128, 128) if detector
                                                else (128, 256)))
    processor, graph = convert(
        'detection_onnxruntime_static.py' if detector else
        'segmentation_onnxruntime_static.py', config, checkpoint, image,
        folder / 'mmdeploy')
    samples, x = preprocess(processor, model, image)
    row = dict(model=name, size='x'.join(map(str, x.shape[2:])),
               bn=node_types(graph).count('BatchNormalization'))
    ours = str(folder / 'export_onnx.onnx')
    export(mmrep.reparameterize_model(model), x, ours)
    row['ours_bn'] = node_types(ours).count('BatchNormalization')
    row['mmdeploy_ms'] = latency_ms(graph, x, runs)
    row['ours_ms'] = latency_ms(ours, x, runs)
    if detector:
        return row
    labels = run_session(session(graph), x)[0].reshape(1, *x.shape[2:])
    with torch.no_grad():
        expected = model.predict(x, samples)[0].pred_sem_seg.data.numpy()
        row['agree'] = float((labels == expected).mean())
        for size in SIZES:
            big = F.interpolate(x, size=size, mode='bilinear')
            plain = model(big, mode='tensor').argmax(1)
            try:
                with mmdeploy_pooling():
                    rewritten = model(big, mode='tensor').argmax(1)
            except RuntimeError as e:  # a kernel of 0: map smaller than bins
                row[f'changed_{size[0]}'] = f'fails ({e})'
                continue
            row[f'changed_{size[0]}'] = \
                f'{float((plain != rewritten).float().mean()):.2%}'

    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=20)
    parser.add_argument('--write', action='store_true')
    args = parser.parse_args()
    torch.set_num_threads(2)
    lines = ['| model | input | mmdeploy: pixels as PyTorch | mmdeploy: BN '
             'nodes (export_onnx: BN nodes) | mmdeploy ms | export_onnx ms '
             '| mmdeploy pooling rewrite: labels changed at '
             + ' / '.join(f'{h}x{w}' for h, w in SIZES) + ' |', '|---|---|---|---|---|---|---|']
    with tempfile.TemporaryDirectory() as tmp:
        for name in ('repmlpnet', 'repvgg', 'resnet18', 'retinanet'):
            r = measure(name, tmp, args.runs)
            agree = f'{r["agree"]:.2%}' if 'agree' in r else 'boxes: see ' \
                'tests/deploy/test_mmdeploy.py'
            changed = (' / '.join(r[f'changed_{h}'] for h, _ in SIZES)
                       if 'changed_128' in r else 'n/a (no pooling bins)')
            line = (f'| {r["model"]} | {r["size"]} | {agree} | {r["bn"]} '
                    f'({r["ours_bn"]}) | {r["mmdeploy_ms"]:.1f} | '
                    f'{r["ours_ms"]:.1f} | {changed} |')
            print(line, flush=True)
            lines.append(line)
    text = '\n'.join([f'{machine_line()}; onnxruntime CPU, 2 intra-op '
                      f'threads, median of {args.runs} runs.', '', *lines])
    if args.write:
        update_section('mmdeploy', text)
    return 0


if __name__ == '__main__':
    np.seterr(all='ignore')
    sys.exit(main())
