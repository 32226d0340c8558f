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


def cycle_block_step_by_step(block, x):
    """A ``CycleBlock`` computed one operation at a time, as the original
    (and mmrep before its fused form) does: both Cycle FCs on the NCHW view,
    the channel FC, the mean of their sum, the softmax mixing, the
    projection and the residuals as separate passes. Stochastic depth is
    left out (the reference of an eval-mode or ``drop_path=0`` block).

    Args:
        block (CycleBlock): the block whose weights are used.
        x (Tensor): channels-last ``(N, H, W, C)`` input.

    Returns:
        Tensor: the block's output, same shape.
    """
    def mixer(t):
        attn, nchw = block.attn, t.permute(0, 3, 1, 2)
        h = attn.sfc_h(nchw).permute(0, 2, 3, 1)
        w = attn.sfc_w(nchw).permute(0, 2, 3, 1)
        c = attn.mlp_c(t)
        a = attn.reweight((h + w + c).mean(dim=(1, 2)))
        a = a.reshape(t.shape[0], -1, 3).permute(2, 0, 1).softmax(dim=0)
        a = a[:, :, None, None, :]
        return attn.proj(h * a[0] + w * a[1] + c * a[2])

    x = x + mixer(block.norm1(x)) / block.skip_lam
    return x + block.mlp(block.norm2(x)) / block.skip_lam
