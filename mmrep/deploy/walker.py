"""The re-parameterization protocol.

A module that has a fused (deploy) form implements ``reparameterize()``,
which switches it to that form in place. :func:`reparameterize_model` walks
any model (a bare backbone, or a segmentor, detector or classifier holding
one) and calls it on every such module, outermost first; the deploy hook,
``tools/reparam.py`` and the tests all go through it.
"""
import copy

import torch


def reparameterize_model(model, inplace=False):
    """Fuse every re-parameterizable module of ``model``.

    Args:
        model (nn.Module): any model.
        inplace (bool): fuse ``model`` itself; otherwise a deep copy is
            fused and ``model`` is left untouched. Default: False.

    Returns:
        nn.Module: the fused model, in eval mode.
    """
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    with torch.no_grad():
        pending = [model]
        while pending:
            module = pending.pop()
            if callable(getattr(module, 'reparameterize', None)):
                # It fuses its own children; do not visit them again.
                module.reparameterize()
                if hasattr(module, 'deploy'):
                    module.deploy = True
                continue
            pending.extend(reversed(list(module.children())))
    return model


_TRAIN_ONLY_MARKERS = ('.bn.', 'fc3_bn.', '.repconv', 'rbr_dense.',
                       'rbr_1x1.', 'rbr_identity.')


def is_fused_state(state, train_state):
    """Whether ``state`` looks like the fused form of ``train_state``.

    True when ``state`` lacks train-time-only keys (BNs and conv branches)
    that ``train_state`` has.
    """
    def markers(keys):
        return sum(any(m in k for m in _TRAIN_ONLY_MARKERS) for k in keys)
    return markers(state) < markers(train_state)
