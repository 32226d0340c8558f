"""Helpers for equivalence checks (tests and benchmarks)."""
import torch
import torch.nn as nn


def randomize_bn(model, seed=0):
    """Give every BatchNorm random statistics and affine parameters (those
    it has).

    Freshly built BatchNorms are identities in eval mode, which would let a
    wrong fusion pass unnoticed; random ones make every fused term count.

    Args:
        model (nn.Module): the model, changed in place.
        seed (int): seed of the generator. Default: 0.

    Returns:
        nn.Module: ``model``.
    """
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            if m.track_running_stats:
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model
