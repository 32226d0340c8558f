"""Checkpoint sources are declared in their family's file alone: a source
carries its label, its detection, its priority and whether it is a port,
and detection, conversion, messages and the loading report all follow the
declarations (:data:`~mmrep.models.backbones.family.CHECKPOINT_SOURCES`)."""
import dataclasses

import pytest
import torch

from mmrep.checkpoints import load as checkpoint
from mmrep.checkpoints import load_pretrained
from mmrep.checkpoints.ports import (detect_checkpoint_source, get_source,
                                     source_evidence, source_names)
from mmrep.models.backbones import RepVGG
from mmrep.models.backbones.family import (CHECKPOINT_FAMILIES,
                                           CHECKPOINT_SOURCES,
                                           CheckpointFamily, Source,
                                           has_key_prefix, register_family,
                                           split_classifier)

TINY = dict(num_blocks=(1, 1, 1, 1), width_multiplier=(0.25, 0.25, 0.25, 0.25))


@pytest.fixture
def registries():
    """Restore both registries, in their order, after the test."""
    families, sources = dict(CHECKPOINT_FAMILIES), dict(CHECKPOINT_SOURCES)
    yield
    CHECKPOINT_FAMILIES.clear()
    CHECKPOINT_FAMILIES.update(families)
    CHECKPOINT_SOURCES.clear()
    CHECKPOINT_SOURCES.update(sources)


def toy_to_mmrep(state):
    """A toy port's key map: its ``bodyN`` is the original's ``stageN``."""
    renamed = {k.replace('body', 'stage', 1): v for k, v in state.items()}
    return split_classifier(renamed)


def with_toy_source(priority):
    family = CHECKPOINT_FAMILIES['repvgg']
    toy = Source('toy', toy_to_mmrep, label='Toy zoo', priority=priority,
                 detect=lambda state: has_key_prefix(state, ('body0.', )),
                 port=True)
    del CHECKPOINT_FAMILIES['repvgg']
    register_family(dataclasses.replace(family,
                                        sources=family.sources + (toy, )))


def test_sources_listed_in_registration_order_original_first():
    names = source_names()
    assert names[0] == 'original'
    assert set(names) == {s.name for f in CHECKPOINT_FAMILIES.values()
                          for s in f.sources}
    assert get_source('original').label == 'original release'
    assert {n for n in names if get_source(n).port} == \
        {'timm', 'mindcv', 'paddle'}


def test_a_source_declared_in_its_family_alone_is_told_and_loaded(
        registries, monkeypatch):
    with_toy_source(priority=0)
    state = {k.replace('stage', 'body'): v
             for k, v in RepVGG(TINY).state_dict().items()}
    assert detect_checkpoint_source(state, state) == 'toy'
    assert 'toy' in source_names()
    assert source_evidence('toy') == \
        'the key names are those of a toy checkpoint'
    lines = []
    monkeypatch.setattr(checkpoint, 'print_log',
                        lambda msg, **kwargs: lines.append(msg))
    model = RepVGG(TINY)
    assert load_pretrained(model, state) == []
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key.replace('stage', 'body')],
                                   rtol=0, atol=0)
    n = len(state)
    assert lines[-1] == (f'RepVGG: loaded {n} of {n} backbone tensors from '
                         f'a state dict (Toy zoo); 0 kept their '
                         f'initialization')


@pytest.mark.parametrize('priority,told', [(5, 'toy'), (0, 'timm')])
def test_priority_orders_the_sources_told_by_names(registries, priority,
                                                   told):
    """Names two sources' detections accept go to the higher priority
    (timm's RepVGG is declared above mmpretrain's, whose ``stem.`` prefix
    it shares)."""
    state = {'stem.conv_kxk.conv.weight': torch.zeros(1)}
    assert detect_checkpoint_source(state, state) == 'timm'
    with_toy_source(priority)
    state['body0.rbr_dense.conv.weight'] = torch.zeros(1)
    assert detect_checkpoint_source(state, state) == told


def test_a_source_declared_twice_must_agree(registries):
    model = type('Toy', (), {})
    original = Source('original', split_classifier)
    clash = Source('mindcv', split_classifier, framework='mindspore',
                   label='MindSpore zoo', port=True)
    with pytest.raises(ValueError, match="declares source 'mindcv' as"):
        register_family(CheckpointFamily(
            name='toy', model=model, display='Toy-{}',
            sources=(original, clash), train_only_markers=()))
    assert 'toy' not in CHECKPOINT_FAMILIES
    assert get_source('mindcv').label == 'MindCV'


def test_every_source_but_the_original_is_told_by_something():
    with pytest.raises(ValueError, match='told by nothing'):
        Source('toy', split_classifier)
    with pytest.raises(ValueError, match='told by nothing'):
        Source('original', split_classifier, detect=lambda state: True)
