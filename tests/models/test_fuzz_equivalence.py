"""Property tests: fused layers equal the train-time ones (eval mode, random
BN statistics) to 1e-4 relative, over random shapes and settings; Cycle FC
equals the original's deformable convolution with its fixed offsets.

Deterministic (``derandomize=True``) and small, so CI runs the same
examples every time in well under a minute and a half.
"""
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cyclemlp import deform_cycle_fc

from mmrep.deploy import reparameterize_model
from mmrep.models.backbones.repmlp_resnet import RepMLPUnit
from mmrep.models.backbones.repmlpnet import RepMLPBlock
from mmrep.models.backbones.repvgg import RepVGGBlock
from mmrep.models.layers import CycleFC

FUZZ = dict(deadline=None, derandomize=True, database=None,
            suppress_health_check=[HealthCheck.too_slow])


def randomize(module, seed):
    """Random BN statistics and affine parameters, and random weights."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.1)
            m.weight.data.copy_(torch.randn(n, generator=g))
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.5)
    return module.eval()


def assert_fused_equal(module, x):
    """``module`` before and after ``reparameterize()`` on ``x``."""
    with torch.no_grad():
        ref = module(x)
        reparameterize_model(module, inplace=True)
        assert module.deploy
        out = module(x)
    scale = ref.abs().max().clamp_min(1e-6)
    rel = ((ref - out).abs().max() / scale).item()
    assert rel <= 1e-4, f'relative difference {rel:.3g}'


kernel_sets = st.lists(st.sampled_from([1, 3, 5]), max_size=3,
                       unique=True).map(sorted)


@settings(max_examples=80, **FUZZ)
@given(sharesets=st.sampled_from([1, 2, 4]), per_set=st.integers(1, 3),
       h=st.integers(1, 5), w=st.integers(1, 5), kernels=kernel_sets,
       gp_reduce=st.sampled_from([1, 2]), H=st.integers(1, 11),
       W=st.integers(1, 11), order=st.sampled_from(['spatial', 'original']),
       seed=st.integers(0, 2**16))
def test_repmlp_block_fuses_exactly(sharesets, per_set, h, w, kernels,
                                    gp_reduce, H, W, order, seed):
    channels = sharesets * per_set * 2
    torch.manual_seed(seed)
    block = randomize(RepMLPBlock(channels, (h, w), sharesets, kernels,
                                  gp_reduce, partition_order=order), seed)
    assert_fused_equal(block, torch.randn(2, channels, H, W))


@settings(max_examples=50, **FUZZ)
@given(groups=st.sampled_from([1, 2]), c=st.integers(1, 3),
       o=st.integers(1, 3), h=st.integers(1, 4), w=st.integers(1, 4),
       grid=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       kernels=kernel_sets, reduction=st.sampled_from([1, 2]),
       dilation=st.sampled_from([1, 2]),
       size=st.tuples(st.integers(1, 14), st.integers(1, 14)),
       seed=st.integers(0, 2**16))
def test_repmlp_unit_fuses_exactly(groups, c, o, h, w, grid, kernels,
                                   reduction, dilation, size, seed):
    C, O = groups * c, groups * o
    torch.manual_seed(seed)
    unit = randomize(RepMLPUnit(C, O, grid[0] * h, grid[1] * w, h, w,
                                kernels, reduction, groups,
                                dilation=dilation), seed)
    assert_fused_equal(unit, torch.randn(2, C, *size))


@settings(max_examples=60, **FUZZ)
@given(groups=st.sampled_from([1, 2, 4]), cin=st.integers(1, 3),
       cout=st.integers(1, 3), stride=st.sampled_from([1, 2]),
       identity=st.booleans(),
       size=st.tuples(st.integers(1, 9), st.integers(1, 9)),
       seed=st.integers(0, 2**16))
def test_repvgg_block_fuses_exactly(groups, cin, cout, stride, identity,
                                    size, seed):
    if identity:  # the identity branch exists for equal shapes only
        cout, stride = cin, 1
    torch.manual_seed(seed)
    block = randomize(RepVGGBlock(groups * cin, groups * cout, stride,
                                  groups), seed)
    assert (block.rbr_identity is not None) == (cin == cout and stride == 1)
    assert_fused_equal(block, torch.randn(2, groups * cin, *size))


@settings(max_examples=40, **FUZZ)
@given(k=st.sampled_from([1, 3, 5, 7]), along_width=st.booleans(),
       cin=st.integers(1, 12), cout=st.integers(1, 6),
       size=st.tuples(st.integers(1, 9), st.integers(1, 9)),
       bias=st.booleans(), seed=st.integers(0, 2**16))
def test_cycle_fc_equals_deformable_conv(k, along_width, cin, cout, size,
                                         bias, seed):
    torch.manual_seed(seed)
    layer = CycleFC(cin, cout, (1, k) if along_width else (k, 1), bias=bias)
    x = torch.randn(2, cin, *size)
    with torch.no_grad():
        out = layer(x)
        ref = deform_cycle_fc(
            layer, x, bias=None if bias else torch.zeros(cout))
    scale = ref.abs().max().clamp_min(1e-6)
    assert ((out - ref).abs().max() / scale).item() <= 1e-4
