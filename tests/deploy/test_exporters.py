"""Every family exports through both of torch's ONNX exporters, train-time
and fused, and onnxruntime computes what PyTorch computes.

The TorchScript exporter (``dynamo=False``) is the one mmdeploy and
``tools/export_onnx.py`` use; the ``torch.export`` one (``dynamo=True``,
torch's default since 2.9) needs onnxscript. Each family runs at its tiny
arch (tests/models/test_backbone_contract.py) with random BN statistics, exported
on a batch of 2 at 64x96 (``torch.export`` fixes any axis of size 0 or 1
of the example, so every axis of the example, batch and the last stage's
map included, is at least 2); a free-size file is also checked at 77x101,
off every stride and partition multiple, at batch 3.

Here: the TorchScript exporter for every family, form and shape; the
``torch.export`` one for every family's fused form at a free size (tens of
seconds per export). ``benchmarks/check_exporters.py`` runs all 32 cases
(:func:`check_export`) and writes the table into benchmarks/README.md.
"""
import time

import pytest
import torch
import torch.nn as nn
from test_backbone_contract import FAMILIES, build

import mmrep
from mmrep.apis.onnx_export import export, max_difference, run_onnx
from mmrep.utils.testing import randomize_bn

pytestmark = pytest.mark.slow

EXPORT_SHAPE = (2, 64, 96)  # batch, height, width
OTHER_SHAPE = (3, 77, 101)
#: torch.export's ONNX translation starts at opset 18.
OPSET = {False: 17, True: 18}


class StageOutputs(nn.Module):
    """A backbone with the ``mode`` argument of OpenMMLab models, so that
    mmrep's exporter takes it as it takes a segmentor."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, x, mode='tensor'):
        return tuple(self.backbone(x))


def inputs(shape, seed=0):
    batch, h, w = shape
    return torch.randn(batch, 3, h, w,
                       generator=torch.Generator().manual_seed(seed))


def check_export(name, form, dynamo, dynamic, path):
    """Export one case and compare onnxruntime with PyTorch.

    Args:
        name (str): the family (a key of ``FAMILIES``).
        form (str): ``'train'`` or ``'fused'``.
        dynamo (bool): which of torch's exporters.
        dynamic (bool): free batch, height and width.
        path (str): the .onnx file to write.

    Returns:
        tuple[float, float]: the largest difference relative to the largest
        output magnitude (at least 1), over the sizes checked, and the
        export's seconds.
    """
    model = randomize_bn(build(FAMILIES[name])).eval()
    if form == 'fused':
        model = mmrep.reparameterize_model(model)
    wrapped = StageOutputs(model).eval()
    start = time.perf_counter()
    export(wrapped, inputs(EXPORT_SHAPE), path, opset=OPSET[dynamo],
           dynamic=dynamic, dynamo=dynamo)
    seconds = time.perf_counter() - start
    worst = 0.
    for shape in [EXPORT_SHAPE] + ([OTHER_SHAPE] if dynamic else []):
        x = inputs(shape, seed=1)
        with torch.no_grad():
            expected = list(wrapped(x))
        diff, scale = max_difference(expected, run_onnx(path, x))
        worst = max(worst, diff / scale)
    return worst, seconds


@pytest.mark.parametrize('dynamic', [False, True], ids=['static', 'dynamic'])
@pytest.mark.parametrize('form', ['train', 'fused'])
@pytest.mark.parametrize('name', sorted(FAMILIES))
def test_torchscript_exporter(name, form, dynamic, tmp_path):
    diff, _ = check_export(name, form, False, dynamic,
                           str(tmp_path / 'model.onnx'))
    assert diff <= 1e-4, f'{name} {form}: relative difference {diff:.3g}'


@pytest.mark.parametrize('name', sorted(FAMILIES))
def test_dynamo_exporter_at_any_size(name, tmp_path):
    pytest.importorskip('onnxscript')
    diff, _ = check_export(name, 'fused', True, True,
                           str(tmp_path / 'model.onnx'))
    assert diff <= 1e-4, f'{name} fused: relative difference {diff:.3g}'
