"""The CamVid benchmark's wall-clock budget (``benchmarks/bench_camvid.py``):
a training under :class:`BenchTimerHook` with ``budget_s`` stops when the
budget's training seconds are spent, whatever ``max_iters`` the speed probe
guessed, and the PolyLR decay ends at that iteration. A real mmengine
``Runner`` on a toy model whose every iteration takes 0.125 s of a fake
clock (binary-exact sums), so that the stop is exact."""
import json
import os.path as osp
import types

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner

import bench_camvid

STEP = 0.125
BUDGET = 2.5  # 20 iterations of STEP


class ClockedToy(BaseModel):
    """One weight; each forward moves the fake clock by :data:`STEP`."""

    def __init__(self, clock):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))
        self.clock = clock

    def forward(self, inputs, data_samples=None, mode='tensor'):
        self.clock.now += STEP
        out = self.weight * torch.stack(inputs).sum()
        return {'loss': out} if mode == 'loss' else out


class Loop:
    """The ``max_iters`` of mmengine's loops: a view of ``_max_iters``."""

    def __init__(self, max_iters):
        self._max_iters = max_iters

    @property
    def max_iters(self):
        return self._max_iters


class Clock:
    now = 0.

    def perf_counter(self):
        return self.now


def train(tmp_path, max_iters, name, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(bench_camvid, 'time',
                        types.SimpleNamespace(perf_counter=clock.perf_counter))
    bench_camvid.register_timer_hook()
    runner = Runner(
        model=ClockedToy(clock), work_dir=str(tmp_path), experiment_name=name,
        train_dataloader=dict(
            dataset=[dict(inputs=torch.ones(1))] * 4, batch_size=1,
            sampler=dict(type='InfiniteSampler', shuffle=False),
            collate_fn=dict(type='pseudo_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                 end=3),
            dict(type='PolyLR', eta_min=0.001, power=1.0, by_epoch=False,
                 begin=3, end=max_iters)],
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            timer=dict(type='BenchTimerHook', budget_s=BUDGET),
            checkpoint=dict(type='CheckpointHook', by_epoch=False,
                            interval=-1, save_last=True),
            logger=dict(type='LoggerHook', interval=100)),
        default_scope='mmengine')
    runner.train()
    return runner


# The probe's guess too high, too low, and right.
@pytest.mark.parametrize('max_iters', [1000, 5, 20])
def test_training_stops_at_the_budget(tmp_path, monkeypatch, max_iters):
    runner = train(tmp_path, max_iters, f'budget{max_iters}', monkeypatch)
    iters = round(BUDGET / STEP)
    assert runner.iter == iters
    with open(osp.join(tmp_path, bench_camvid.TIMING)) as f:
        timing = json.load(f)
    assert timing['iters'] == iters and timing['train_seconds'] == BUDGET
    warmup, poly = runner.param_schedulers
    assert (warmup.end, poly.end) == (3, iters)
    # PolyLR reached its eta_min at the new end, not at the guessed one.
    assert runner.optim_wrapper.get_lr()['lr'] == [pytest.approx(0.001)]
    # The checkpoint hook saw the budget's iteration as the last.
    assert osp.isfile(osp.join(tmp_path, f'iter_{iters}.pth'))


def test_fit_budget_moves_only_the_schedulers_ending_at_max_iters():
    sched = [types.SimpleNamespace(begin=0, end=3, total_iters=2),
             types.SimpleNamespace(begin=3, end=50, total_iters=46),
             types.SimpleNamespace(begin=0, end=60)]
    loop = Loop(50)
    runner = types.SimpleNamespace(train_loop=loop, param_schedulers=sched,
                                   iter=9)
    bench_camvid.fit_budget(runner, 30.5, 2.0)  # 10 done + 15 that fit
    assert loop._max_iters == 25
    assert [(s.begin, s.end) for s in sched] == [(0, 3), (3, 25), (0, 60)]
    assert sched[1].total_iters == 21 and sched[0].total_iters == 2
    bench_camvid.fit_budget(runner, -1.0, 2.0)  # spent: this one is the last
    assert loop._max_iters == 10 and sched[1].end == 10
