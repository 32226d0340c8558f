"""Resolution transfer: checkpoints built for another partition size or grid
load through ``mmrep.load_pretrained`` / ``init_cfg=Pretrained`` with their
resolution-bound weights resampled (mmrep.checkpoints.resample); any input size
runs, and slide inference at the training crop reproduces the direct
forward."""
import logging
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MMLogger

import mmrep
from mmrep.models.layers.resample import (hidden_mapping, resample_fc1_fc2,
                                   resample_grid, resize_matrix)
from mmrep.models.backbones import RepMLPNet, RepMLPResNet
from mmrep.models.backbones.repmlp_resnet import RepMLPUnit
from mmrep.utils.testing import randomize_bn
from conftest import load_via_init_cfg

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def smooth(channels, h, w):
    """A low-frequency signal (at most half a period across the grid in
    each direction, a different phase per channel) sampled at the pixel
    centres of an ``h x w`` grid over the unit square; float64."""
    u = (torch.arange(h, dtype=torch.float64) + 0.5) / h
    v = (torch.arange(w, dtype=torch.float64) + 0.5) / w
    U, V = torch.meshgrid(u, v, indexing='ij')
    return torch.stack([
        torch.sin(math.pi * (0.5 * U + 0.4 * V) + c)
        + 0.5 * torch.cos(math.pi * (0.3 * U - 0.5 * V) + 2 * c)
        for c in range(channels)])


class LogCapture(logging.Handler):

    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())

    def transfers(self):
        return [m for m in self.lines
                if m.startswith('resolution transfer: ')]


@pytest.fixture
def log():
    """The messages mmrep logs through mmengine's current logger."""
    logger = MMLogger.get_current_instance()
    handler = LogCapture()
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def net_arch():
    return dict(channels=(8, 16, 32, 32), num_blocks=(1, 1, 1, 1),
                sharesets=(2, 4, 8, 8), partition_sizes=(8, 8, 4, 2))


def res_arch(img_size, partition, **kw):
    arch = dict(num_blocks=(1, 2, 2, 1), block_type='bottleneck',
                img_size=img_size, partition=partition,
                conv_kernels=(1, 3), fc1_fc2_reduction=1, fc3_groups=4)
    arch.update(kw)
    return arch


def save_checkpoint(model, form, path):
    """Save ``model`` (train-time) as a train-time or fused checkpoint."""
    model = randomize_bn(model).eval()
    if form == 'fused':
        mmrep.reparameterize_model(model, inplace=True)
    torch.save({'state_dict': model.state_dict()}, path)
    return model


def check_transfers(log, keys, src_state, new_state):
    """The log has one ``old shape -> new shape`` line per resampled key
    and no other; every other tensor was loaded unchanged."""
    lines = log.transfers()
    assert len(lines) == len(keys)
    for key in keys:
        line = [m for m in lines if f' {key} ' in m]
        assert len(line) == 1, (key, lines)
        assert (f'{tuple(src_state[key].shape)} -> '
                f'{tuple(new_state[key].shape)}') in line[0]
    for key, value in src_state.items():
        if key not in keys:
            assert torch.equal(new_state[key], value), key


def max_row_abs_sum(weight):
    """``||W||_inf``: the largest absolute row sum, a Lipschitz constant of
    ``x -> W x`` in the max norm."""
    return weight.reshape(weight.size(0), -1).abs().sum(1).max().item()


def check_smooth_response(apply_old, apply_new, lipschitz, channels, old,
                          new, rel_tol):
    """The resampled layer on a smooth input equals the original layer on
    the same signal sampled at the original resolution, then resampled.

    ``W' = U W D`` (mmrep.checkpoints.resample), so ``W' x_new - U W x_old =
    U W (D x_new - x_old)``: since ``U``'s rows are non-negative and sum to
    one, the deviation is at most ``lipschitz * max|D x_new - x_old|``, the
    interpolation error of the smooth signal (checked as a bound), and it is
    also checked against a relative tolerance measured for these sizes.
    """
    x_old, x_new = smooth(channels, *old), smooth(channels, *new)
    with torch.no_grad():
        y_old = apply_old(x_old)
        y_new = apply_new(x_new)
    ref = resample_grid(y_old, old, new, (1, 2), 'output')
    err = (y_new - ref).abs().max().item()
    interp_err = (resample_grid(x_new, new, old, (1, 2), 'output')
                  - x_old).abs().max().item()
    assert err <= lipschitz * interp_err * (1 + 1e-6) + 1e-9, \
        (err, lipschitz, interp_err)
    rel = err / ref.abs().max().item()
    assert rel <= rel_tol, f'relative deviation {rel:.4f} > {rel_tol}'
    return rel


# --------------------------------------------------------------------------
# The resampling operators
# --------------------------------------------------------------------------
@pytest.mark.parametrize('src,dst', [(7, 8), (8, 7), (56, 64), (64, 16),
                                     (4, 6), (2, 1), (1, 3)])
def test_resize_matrix_is_bilinear_interpolation(src, dst):
    """The written-out weights are those of F.interpolate (bilinear,
    align_corners=False, anti-aliased when shrinking)."""
    m = resize_matrix(src, dst)
    eye = torch.eye(src, dtype=torch.float64).reshape(1, 1, src, src)
    ref = F.interpolate(eye, size=(dst, src), mode='bilinear',
                        align_corners=False, antialias=dst < src)[0, 0]
    assert torch.allclose(m, ref, atol=1e-12)
    assert torch.allclose(m.sum(1), torch.ones(dst, dtype=m.dtype))
    assert (m >= 0).all()


def test_hidden_units_are_copied_exactly_and_merged_back():
    """Growing the hidden width (5 -> 7, 5 -> 10) copies units and leaves
    the MLP unchanged; shrinking merges groups of units (averaged ``fc1``
    rows, summed ``fc2`` columns), which undoes an exact doubling."""
    torch.manual_seed(0)
    C, grid = 3, (2, 2)
    params = {'fc1.weight': torch.randn(5, C * 4, dtype=torch.float64),
              'fc1.bias': torch.randn(5, dtype=torch.float64),
              'fc2.weight': torch.randn(C * 4, 5, dtype=torch.float64),
              'fc2.bias': torch.randn(C * 4, dtype=torch.float64)}
    x = torch.randn(7, C * 4, dtype=torch.float64)

    def mlp(p):
        return F.linear(F.relu(F.linear(x, p['fc1.weight'], p['fc1.bias'])),
                        p['fc2.weight'], p['fc2.bias'])
    for hidden in (5, 7, 10):
        out = resample_fc1_fc2(params, C, grid, grid, hidden)
        assert out['fc1.weight'].shape == (hidden, C * 4)
        assert out['fc2.weight'].shape == (C * 4, hidden)
        assert hidden_mapping(5, hidden).shape == (hidden, 5)
        assert torch.allclose(mlp(out), mlp(params), atol=1e-12)
    back = resample_fc1_fc2(out, C, grid, grid, 5)
    for key, value in params.items():
        assert torch.allclose(back[key], value, atol=1e-12), key


# --------------------------------------------------------------------------
# Same sizes: nothing is resampled, outputs are identical
# --------------------------------------------------------------------------
@pytest.mark.parametrize('form', ['train', 'fused'])
@pytest.mark.parametrize('cls,kwargs', [
    (RepMLPNet, dict(arch=net_arch())),
    (RepMLPResNet, dict(arch=res_arch(128, 4)))], ids=['repmlpnet', 'res50'])
def test_same_resolution_loads_exactly(cls, kwargs, form, tmp_path, log):
    torch.manual_seed(0)
    path = tmp_path / 'ckpt.pth'
    src = save_checkpoint(cls(**kwargs), form, path)
    model = load_via_init_cfg(cls, path, deploy=form == 'fused', **kwargs)
    x = torch.randn(1, 3, 72, 88)
    with torch.no_grad():
        for a, b in zip(src(x), model(x)):
            assert torch.equal(a, b)
    assert log.transfers() == []


# --------------------------------------------------------------------------
# RepMLPNet: another partition size per stage
# --------------------------------------------------------------------------
def _block_fc3(block):
    """``x (S, h, w) -> fc3(x) (+ bias)``: the partition perceptron of a
    RepMLPNet block on one partition, one channel per share set."""
    S, h, w = block.num_sharesets, block.h, block.w
    weight = block.fc3.weight.detach().double().reshape(S, h * w, h * w)
    bias = block.fc3.bias.detach().double() if block.fc3.bias is not None \
        else torch.zeros(S * h * w, dtype=torch.float64)

    def apply(x):
        y = (weight @ x.reshape(S, h * w, 1)).reshape(S, h, w)
        return y + bias.reshape(S, h, w)
    return apply, max_row_abs_sum(weight.reshape(S * h * w, -1))


@pytest.mark.parametrize('form', ['train', 'fused'])
def test_repmlpnet_loads_other_partition_sizes(form, tmp_path, log):
    torch.manual_seed(0)
    path = tmp_path / 'ckpt.pth'
    old_parts, new_parts = (8, 8, 4, 2), (12, 6, 5, 2)
    src = save_checkpoint(RepMLPNet(net_arch()), form, path)
    new = RepMLPNet(net_arch(), partition_sizes=new_parts,
                    deploy=form == 'fused').eval()
    assert mmrep.load_pretrained(new, str(path)) == []

    # One line per resampled tensor: fc3.weight of stages 0-2, and the
    # fused fc3.bias; stage 3 keeps its partition; fc3_bn is per share set.
    keys = [f'stages.{i}.0.repmlp_block.fc3.weight' for i in range(3)]
    if form == 'fused':
        keys += [f'stages.{i}.0.repmlp_block.fc3.bias' for i in range(3)]
    src_state, new_state = src.state_dict(), new.state_dict()
    # Everything else, conv branches included, is loaded unchanged.
    check_transfers(log, keys, src_state, new_state)

    # Stage 0 (8x8 -> 12x12) and stage 1 (8x8 -> 6x6) on a smooth input.
    # The deviation is the bilinear interpolation error of the input carried
    # through fc3 (check_smooth_response). Measured, max deviation relative
    # to the max output, train / fused: 8->12 0.0069 / 0.0083 (the input is
    # anti-alias-filtered 12->8, a mild blur), 8->6 0.024 / 0.021 (6->8
    # interpolation; edge pixels are extrapolated as constant). Tolerances
    # are twice the larger value.
    for i, tol in enumerate((0.017, 0.048)):
        old, size = old_parts[i], new_parts[i]
        apply_old, lip = _block_fc3(src.stages[i][0].repmlp_block)
        apply_new, _ = _block_fc3(new.stages[i][0].repmlp_block)
        check_smooth_response(apply_old, apply_new, lip,
                              new.arch['sharesets'][i], (old, old),
                              (size, size), rel_tol=tol)

    # The resampled model runs at any input size.
    with torch.no_grad():
        outs = new(torch.randn(1, 3, 50, 70))
    assert [o.shape[-2:] for o in outs] == [(13, 18), (7, 9), (4, 5), (2, 3)]


@pytest.mark.parametrize('order', ['spatial', 'original'])
def test_repmlpnet_train_checkpoint_into_fused_model(order, tmp_path, log):
    """A train-time checkpoint of another partition size, loaded into a
    fused model, is resampled in train-time form and fused: the same as
    loading it into a train-time model and fusing that, in either partition
    order (the resampling is per partition; the order only says where each
    partition's result goes)."""
    torch.manual_seed(0)
    path = tmp_path / 'ckpt.pth'
    save_checkpoint(RepMLPNet(net_arch(), partition_order=order), 'train',
                    path)
    parts = (12, 6, 5, 2)
    kwargs = dict(arch=net_arch(), partition_sizes=parts,
                  partition_order=order)
    fused = load_via_init_cfg(RepMLPNet, path, deploy=True, **kwargs)
    train = load_via_init_cfg(RepMLPNet, path, **kwargs)
    x = torch.randn(1, 3, 100, 90)  # several partitions in stages 0-2
    with torch.no_grad():
        ref = train(x)
        mmrep.reparameterize_model(train, inplace=True)
        for i, (a, b) in enumerate(zip(fused(x), ref)):
            assert torch.allclose(a, b, atol=1e-4 * b.abs().max()), i
    expect = train.state_dict()
    for key, value in fused.state_dict().items():
        assert torch.equal(value, expect[key]), key
    assert len(log.transfers()) == 6  # 3 tensors, logged by each load


# --------------------------------------------------------------------------
# RepMLP-Res50: another image size (grid) and partition
# --------------------------------------------------------------------------
def _unit_fc3(unit):
    """``x (C, h, w) -> fc3(x) (O, h, w)`` on one partition (fused unit)."""
    C, O, h, w = unit.C, unit.O, unit.h, unit.w

    def apply(x):
        rows = x.reshape(1, C * h * w).to(unit.fc3.weight.dtype)
        return unit._partition_perceptron(rows).reshape(O, h, w).double()
    return apply, max_row_abs_sum(unit.fc3.weight.detach().double())


def _unit_fc1_fc2(unit):
    """``v (C, gh, gw) -> fc1_fc2(v)`` (fused unit: no BN in front)."""
    C, (gh, gw) = unit.C, unit.grid
    fc1, fc2 = unit.fc1_fc2.fc1, unit.fc1_fc2.fc2

    def apply(v):
        y = unit.fc1_fc2(v.reshape(1, -1).to(fc1.weight.dtype))
        return y.reshape(C, gh, gw).double()
    lip = (max_row_abs_sum(fc2.weight.detach().double())
           * max_row_abs_sum(fc1.weight.detach().double()))
    return apply, lip


@pytest.mark.parametrize('form', ['train', 'fused'])
def test_res50_loads_other_image_size_and_partition(form, tmp_path, log):
    torch.manual_seed(0)
    path = tmp_path / 'ckpt.pth'
    # Checkpoint: 128x128 images, 4x4 partitions: c3 grid 4x4, c4 grid 2x2.
    # Model: 192x384 images, 6x6 partitions: c3 grid 4x8, c4 grid 2x4,
    # hidden widths doubled (fc1_fc2_reduction 1).
    src = save_checkpoint(RepMLPResNet(res_arch(128, 4)), form, path)
    new_arch = res_arch((192, 384), 6)
    new = load_via_init_cfg(RepMLPResNet, path, arch=new_arch,
                            deploy=form == 'fused')
    src_state, new_state = src.state_dict(), new.state_dict()
    units = [n + '.' for n, m in new.named_modules()
             if isinstance(m, RepMLPUnit)]
    assert units == ['stage2.1.btnk_repmlp.', 'stage3.1.btnk_repmlp.']
    names = ['fc3.weight', 'fc1_fc2.fc1.weight', 'fc1_fc2.fc1.bias',
             'fc1_fc2.fc2.weight', 'fc1_fc2.fc2.bias']
    names += ['fc3.bias'] if form == 'fused' else [
        f'fc3_bn.{n}' for n in ('weight', 'bias', 'running_mean',
                                'running_var')]
    keys = [u + n for u in units for n in names]
    check_transfers(log, keys, src_state, new_state)

    if form == 'fused':
        # Smooth-input checks of every unit (check_smooth_response).
        # Measured, max deviation relative to the max output: fc3 4x4 -> 6x6
        # 0.046 (c3) and 0.046 (c4); fc1_fc2 grid 4x4 -> 4x8 0.041 (c3) and
        # 2x2 -> 2x4 0.081 (c4): on such coarse grids the 4- or 2-sample
        # interpolation of the input is the whole error (an absolute bound
        # by it is asserted too). Tolerances are twice the measured values.
        for u, grid_tol in zip(units, (0.082, 0.162)):
            old_unit = src.get_submodule(u[:-1])
            new_unit = new.get_submodule(u[:-1])
            apply_old, lip = _unit_fc3(old_unit)
            apply_new, _ = _unit_fc3(new_unit)
            check_smooth_response(apply_old, apply_new, lip, old_unit.C,
                                  (4, 4), (6, 6), rel_tol=0.092)
            apply_old, lip = _unit_fc1_fc2(old_unit)
            apply_new, _ = _unit_fc1_fc2(new_unit)
            check_smooth_response(apply_old, apply_new, lip, old_unit.C,
                                  old_unit.grid, new_unit.grid,
                                  rel_tol=grid_tol)

    with torch.no_grad():  # runs at the new size and at any other
        for size in ((96, 128), (50, 70)):
            outs = new(torch.randn(1, 3, *size))
            assert outs[-1].shape[-2:] == (-(-size[0] // 32),
                                            -(-size[1] // 32))


def test_res50_train_checkpoint_into_fused_dilated_model(tmp_path, log):
    """Train-time 128x128 weights into a fused dilated (D8) model built for
    other crops: resampled, then fused, like loading into a train-time
    model and fusing it."""
    torch.manual_seed(0)
    path = tmp_path / 'ckpt.pth'
    save_checkpoint(RepMLPResNet(res_arch(128, 4)), 'train', path)
    kw = dict(arch=res_arch((192, 384), 6, fc1_fc2_reduction=2),
              strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4))
    fused = load_via_init_cfg(RepMLPResNet, path, deploy=True, **kw)
    train = load_via_init_cfg(RepMLPResNet, path, **kw)
    mmrep.reparameterize_model(train, inplace=True)
    expect = train.state_dict()
    for key, value in fused.state_dict().items():
        assert torch.equal(value, expect[key]), key


# --------------------------------------------------------------------------
# Inference at the training crop size
# --------------------------------------------------------------------------
def _segmentor(test_cfg):
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    crop = (32, 64)
    model = MODELS.build(dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', size=crop),
        backbone=dict(type='mmrep.RepMLPResNet',
                      arch=res_arch(crop, 2, fc1_fc2_reduction=2),
                      strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4)),
        decode_head=dict(type='FCNHead', in_channels=2048, in_index=3,
                         channels=16, num_convs=1, num_classes=5,
                         norm_cfg=dict(type='BN'), align_corners=False),
        test_cfg=test_cfg))
    torch.manual_seed(0)
    for p in model.parameters():  # non-trivial global perceptrons
        p.data.normal_(0, 0.05)
    return randomize_bn(model).eval(), crop


def test_slide_at_crop_size_reproduces_the_direct_forward():
    """With slide inference at the training crop size, each window is a
    training-size input: an image of the crop size gives exactly the
    direct forward, and a wider image gives, window by window, exactly the
    direct forward of each crop (non-overlapping stride)."""
    from mmengine.config import ConfigDict
    model, crop = _segmentor(ConfigDict(mode='slide', crop_size=(32, 64),
                                        stride=(32, 64)))
    H, W = crop
    metas = [dict(img_shape=crop, ori_shape=crop, pad_shape=crop)]
    x = torch.randn(1, 3, H, W)
    with torch.no_grad():
        direct = model.encode_decode(x, metas)
        slide = model.inference(x, metas)
        assert torch.equal(slide, direct)
        wide = torch.randn(1, 3, H, 2 * W)
        wmetas = [dict(img_shape=(H, 2 * W), ori_shape=(H, 2 * W),
                       pad_shape=(H, 2 * W))]
        slide = model.inference(wide, wmetas)
        for j in range(2):
            crop_out = model.encode_decode(wide[..., j * W:(j + 1) * W],
                                           metas)
            assert torch.equal(slide[..., j * W:(j + 1) * W], crop_out)
        # Whole inference runs at any size too.
        model.test_cfg = ConfigDict(mode='whole')
        out = model.inference(torch.randn(1, 3, 50, 90),
                              [dict(img_shape=(50, 90), ori_shape=(50, 90),
                                    pad_shape=(50, 90))])
    assert out.shape == (1, 5, 50, 90)


# --------------------------------------------------------------------------
# The Cityscapes configs
# --------------------------------------------------------------------------
def test_cityscapes_res50_configs_parse_and_match_the_crop():
    from mmengine.config import Config
    d = osp.join(REPO, 'configs', 'cityscapes')
    cfg = Config.fromfile(osp.join(
        d, 'pspnet_repmlp-res50-g4-8_8xb2-80k_cityscapes-512x1024.py'))
    base = Config.fromfile(osp.join(
        d, 'pspnet_r50-d8_8xb2-80k_cityscapes-512x1024.py'))
    for c in (cfg, base):
        assert c.custom_imports.imports == ['mmrep', 'mmrep.deploy.autoswitch']
        assert c.custom_hooks == [dict(type='mmrep.ReparamCheckpointHook')]
        assert c.train_dataloader.batch_size == 2
        assert c.train_cfg.max_iters == 80000
        assert c.crop_size == (512, 1024)
    assert base.model.backbone.type == 'ResNetV1c'
    b = cfg.model.backbone
    assert b.type == 'mmrep.RepMLPResNet'
    assert tuple(b.strides) == (1, 2, 1, 1)
    assert tuple(b.dilations) == (1, 1, 2, 4)
    assert cfg.model.test_cfg.crop_size == cfg.crop_size
    kw = {k: v for k, v in b.items() if k not in ('type', 'init_cfg')}
    with torch.device('meta'):  # full size, without allocating it
        model = RepMLPResNet(**kw)
    H, W = cfg.crop_size
    for _, m in model.named_modules():
        if isinstance(m, RepMLPUnit):
            # Maps are at stride 8 (D8); dilated cells are d*h x d*w.
            cell_h, cell_w = m.h * m.dilation, m.w * m.dilation
            assert (H // 8 % cell_h, W // 8 % cell_w) == (0, 0)
            assert m.grid == (H // 8 // cell_h, W // 8 // cell_w)
