"""Comparing state dicts by names and shapes, and the one classifier of
which form of a model weights fit (:func:`classify`).

Only names and shapes count here: the expected state dicts may live on any
device, ``meta`` included. Below every package that loads weights
(:mod:`mmrep.deploy` and :mod:`mmrep.checkpoints` both use it).
"""


def same_layout(state, expected):
    """Whether two state dicts have the same keys, each with the same shape.

    Args:
        state (dict[str, Tensor]): e.g. a checkpoint's weights.
        expected (dict[str, Tensor]): e.g. a model's state dict.

    Returns:
        bool: ``state`` loads strictly where ``expected`` came from.
    """
    return state.keys() == expected.keys() and all(
        state[k].shape == expected[k].shape for k in expected)


def classify(state, forms):
    """Which form of a model weights fit: the one test every caller uses
    (a whole-model checkpoint against the configured and fused model,
    :func:`~mmrep.checkpoints.forms.checkpoint_form`; weights a module is
    about to load, :func:`~mmrep.deploy.fused_loading.
    switch_to_fused_form`; converted
    weights against a backbone, :func:`~mmrep.checkpoints.load.
    backbone_form`).

    Args:
        state (dict[str, Tensor]): the weights.
        forms (dict[str, object]): form name -> the model's state dict in
            that form, or a function returning it, or a pair
            ``(expected, prepare)`` whose ``prepare(state)`` gives the
            weights in that form first. Tried in order; a function is
            called only when the forms before it do not fit.

    Returns:
        tuple[str, dict] | None: the first form whose keys and shapes the
        (prepared) weights have exactly, and those weights; None where no
        form fits.
    """
    for form, spec in forms.items():
        expected, prepare = spec if isinstance(spec, tuple) else (spec, None)
        weights = state if prepare is None else prepare(state)
        if same_layout(weights,
                       expected() if callable(expected) else expected):
            return form, weights
    return None


def count_found(state, expected):
    """How many of ``expected``'s tensors ``state`` has, name and shape."""
    return sum(k in state and state[k].shape == v.shape
               for k, v in expected.items())


def describe_mismatch(state, expected, limit=8):
    """Say which keys and shapes differ between two state dicts.

    Args:
        state (dict[str, Tensor]): the checkpoint's weights.
        expected (dict[str, Tensor]): the model's state dict.
        limit (int): how many keys of each kind to name. Default: 8.

    Returns:
        str: ``'missing keys (n): [...]; unexpected keys (n): [...];
        shape mismatches (n): [...]'``, the kinds that occur.
    """
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f'{k}: checkpoint {tuple(state[k].shape)} vs model '
              f'{tuple(expected[k].shape)}' for k in expected
              if k in state and state[k].shape != expected[k].shape]
    parts = []
    for title, items in (('missing keys', missing),
                         ('unexpected keys', unexpected),
                         ('shape mismatches', shapes)):
        if items:
            more = f' (+{len(items) - limit} more)' \
                if len(items) > limit else ''
            parts.append(f'{title} ({len(items)}): {items[:limit]}{more}')
    return '; '.join(parts)
