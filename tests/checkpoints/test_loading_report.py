"""The loading report: one line per pretrained load with how many of the
backbone's tensors came from the checkpoint, and an error when fewer than
half of them are in it."""
import pytest
import torch
from conftest import load_via_init_cfg

import mmrep
from mmrep.checkpoints import CheckpointMismatchError
from mmrep.checkpoints import load as checkpoint
from mmrep.models.backbones import CycleMLP, RepVGG

TINY = dict(num_blocks=(1, 1, 1, 1), width_multiplier=(0.25, 0.25, 0.25, 0.25))
SMALL_CYCLE = dict(channels=(8, 8, 16, 16), num_blocks=(1, 1, 1, 1),
                   mlp_ratios=(1, 1, 1, 1))


@pytest.fixture
def log_lines(monkeypatch):
    lines = []
    monkeypatch.setattr(checkpoint, 'print_log',
                        lambda msg, **kwargs: lines.append(msg))
    return lines


def test_every_tensor_loaded_is_reported(tmp_path, log_lines):
    path = str(tmp_path / 'weights.pth')
    torch.save(RepVGG(TINY).state_dict(), path)
    n = len(RepVGG(TINY).state_dict())
    load_via_init_cfg(RepVGG, path, TINY)
    assert log_lines == [f'RepVGG: loaded {n} of {n} backbone tensors from '
                         f'{path}; 0 kept their initialization']
    # Fused on load: the fused model's tensor count.
    log_lines.clear()
    load_via_init_cfg(RepVGG, path, TINY, deploy=True)
    m = len(RepVGG(TINY, deploy=True).state_dict())
    assert log_lines[-1] == (f'RepVGG: loaded {m} of {m} backbone tensors '
                             f'from {path}; 0 kept their initialization')


def test_tensors_that_keep_their_initialization_are_counted(log_lines):
    classifier = CycleMLP(SMALL_CYCLE, out_indices=(3, ), final_norm=True)
    dense = CycleMLP(SMALL_CYCLE)
    n = len(dense.state_dict())
    mmrep.load_pretrained(dense, classifier.state_dict())
    # norm0, norm2, norm4, norm6: weight and bias each.
    assert log_lines[-1].startswith(
        f'CycleMLP: loaded {n - 8} of {n} backbone tensors from a state '
        f'dict; 8 kept their initialization: [')


def test_fewer_than_half_loaded_is_an_error_naming_missing_keys():
    model = RepVGG(TINY)
    state = model.state_dict()
    n = len(state)
    prefixed = {'encoder.' + k: v for k, v in state.items()}
    with pytest.raises(CheckpointMismatchError) as err:
        mmrep.load_pretrained(model, prefixed)
    msg = str(err.value)
    assert msg.startswith(f'RepVGG: the pretrained weights did not load: '
                          f'only 0 of {n} backbone tensors are in the '
                          f'checkpoint')
    assert "missing keys ({}): ['stage0.rbr_dense.conv.weight'".format(n) \
        in msg
    # Half or more: still refused (loading is strict), naming the keys.
    half = dict(list(state.items())[:n // 2 + 1])
    with pytest.raises(CheckpointMismatchError) as err:
        mmrep.load_pretrained(model, half)
    assert 'did not load' not in str(err.value)
    assert 'missing keys' in str(err.value)
