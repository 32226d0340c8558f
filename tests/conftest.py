"""Shared test helpers.

The conformance fixtures (outputs of the original implementations on random
weights) live in the directory named by ``MMREP_FIXTURES``, by default
``../shared/fixtures`` next to the repository.
"""
import glob
import os
import os.path as osp

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
FIXTURES = os.environ.get('MMREP_FIXTURES',
                          osp.join(REPO, '..', 'shared', 'fixtures'))


def fixture_files(pattern):
    """Sorted fixture files matching ``pattern`` (e.g. ``repvgg_small_s*.pt``).

    Fails (does not skip) when none is found: the conformance tests are the
    ground truth and must run.
    """
    files = sorted(glob.glob(osp.join(FIXTURES, pattern)))
    assert files, f'no fixture matches {pattern} in {FIXTURES} (MMREP_FIXTURES)'
    return files


def load_fixture(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def fixture_params(pattern):
    """``pytest.mark.parametrize`` over the fixture files of a pattern."""
    files = sorted(glob.glob(osp.join(FIXTURES, pattern)))
    if not files:
        files = [osp.join(FIXTURES, pattern)]  # reported as missing
    return pytest.mark.parametrize('fixture_path', files, ids=osp.basename)


def assert_close(actual, expected, atol=1e-4, what=''):
    """Max-abs-difference check with a readable message."""
    assert actual.shape == expected.shape, \
        f'{what}: shape {tuple(actual.shape)} vs {tuple(expected.shape)}'
    diff = (actual.float() - expected.float()).abs().max().item()
    assert diff <= atol, f'{what}: max abs diff {diff:.3g} > {atol}'
