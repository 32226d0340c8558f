"""Distributed training on the CPU: tools/dist_train.sh runs two gloo
processes (SyncBN converted to BN), the deploy hook writes once per
checkpoint from rank 0 only, and a single process resumes the checkpoint."""
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
import torch
from mmrep.utils import safe_load
from tool_runner import DEMO, REPO, run_tool

# Trains, exports, quantizes, fuzzes or starts processes: `make test-fast`
# leaves it out (the `slow` marker, pytest.ini).
pytestmark = pytest.mark.slow


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def options(root, iters, *extra):
    return ['--cfg-options', f'train_dataloader.dataset.data_root={root}',
            f'val_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}',
            'train_dataloader.batch_size=2', f'train_cfg.max_iters={iters}',
            f'train_cfg.val_interval={iters}',
            'default_hooks.checkpoint.interval=1',
            'default_hooks.logger.interval=1', *extra]


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    from mmrep.datasets import make_cityscapes_like
    return make_cityscapes_like(str(tmp_path_factory.mktemp('city')),
                                num_train=4, num_val=2, seed=3)


def test_two_gloo_processes_train_then_one_resumes(data, tmp_path):
    work = str(tmp_path / 'work')
    writes = str(tmp_path / 'writes.txt')
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()),
               OMP_NUM_THREADS='1', MMREP_WRITE_LOG=writes,
               PYTHONPATH=os.pathsep.join(
                   [osp.join(REPO, 'tests'), os.environ.get('PYTHONPATH',
                                                            '')]))
    env.pop('CUDA_VISIBLE_DEVICES', None)
    # The demo config, also importing the probe (custom_imports are
    # imported when the config file is read).
    config = str(tmp_path / 'demo_probe.py')
    with open(config, 'w') as f:
        f.write(f'_base_ = [{DEMO!r}]\ncustom_imports = dict(imports=['
                f"'mmrep', 'mmrep.deploy.autoswitch', 'deploy_write_probe'], "
                f'allow_failed_imports=False)\n')
    proc = subprocess.run(
        ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), config, '2',
         '--work-dir', work, *options(data, 2)],
        cwd=REPO, env=env, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, timeout=300)
    log = proc.stdout
    assert proc.returncode == 0, log[-4000:]
    assert "dist_cfg: {'backend': 'gloo'}" in log
    assert 'Distributed training: True' in log
    # The backbone's norm_cfg and both heads'.
    assert 'converted 3 SyncBN setting(s) to BN' in log
    assert 'Iter(train) [2/2]' in log
    # The demo keeps one checkpoint (and its deploy file) at a time.
    assert osp.isfile(osp.join(work, 'iter_2.pth'))
    assert sorted(f for f in os.listdir(work) if f.endswith('.pth')) == \
        ['iter_2.pth', 'iter_2_deploy.pth']
    # Both processes ran; one write per checkpoint, all by rank 0.
    lines = open(writes).read().splitlines()
    assert sorted(x for x in lines if x.startswith('import')) == \
        ['import 0', 'import 1']
    assert [x for x in lines if x.startswith('write')] == [
        f'write 0 {osp.join(work, "iter_1_deploy.pth")}',
        f'write 0 {osp.join(work, "iter_2_deploy.pth")}']
    saved = safe_load(osp.join(work, 'iter_2_deploy.pth'))
    assert saved['meta']['iter'] == 2
    assert not any(k.startswith('module.') for k in saved['state_dict'])

    # The distributed checkpoint resumes in a single process.
    out = run_tool('tools/train.py', DEMO, '--work-dir', work, '--resume',
                   osp.join(work, 'iter_2.pth'), *options(data, 3)).stdout
    assert 'iter: 2' in out and 'resumed epoch' in out
    assert 'Iter(train) [3/3]' in out and 'Iter(train) [1/3]' not in out
    state = safe_load(osp.join(work, 'iter_3.pth'))
    assert state['meta']['iter'] == 3
