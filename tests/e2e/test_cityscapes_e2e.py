"""Segmentation end to end: every Cityscapes config builds and runs, and a
short training through tools/train.py saves, evaluates and resumes."""
import glob
import json
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmrep  # noqa: F401
from mmrep.utils import safe_load
import tool_runner
from conftest import train_one_iteration
from tool_runner import DEMO, REPO

# Trains, exports, quantizes, fuzzes or starts processes: `make test-fast`
# leaves it out (the `slow` marker, pytest.ini).
pytestmark = pytest.mark.slow

CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'cityscapes', '*.py')))


@pytest.mark.parametrize('config', CONFIGS, ids=osp.basename)
def test_config_builds_and_runs_forward(config):
    from mmseg.registry import MODELS
    cfg = Config.fromfile(config)
    assert cfg.custom_imports == dict(
        imports=['mmrep', 'mmrep.deploy.autoswitch'],
        allow_failed_imports=False)
    # Every config uses an mmrep backbone but the ResNet-50 baseline kept
    # beside the RepMLP-Res50 one for comparison.
    assert cfg.model.backbone.type.startswith('mmrep.') or \
        'r50-d8' in osp.basename(config)
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model).eval()
    # A reduced size (the configs' crops are 512x1024): a quarter-size crop
    # of the same aspect.
    h, w = cfg.crop_size if max(cfg.crop_size) <= 256 else (128, 256)
    with torch.no_grad():
        out = model(torch.randn(1, 3, h, w), mode='tensor')
    # Logits at the stride of the finest backbone stage the head reads.
    in_index = cfg.model.decode_head.in_index
    first = min(in_index if isinstance(in_index, (list, tuple))
                else [in_index])
    strides = cfg.model.backbone.get('strides', (1, 2, 2, 2))  # D8: (1,2,1,1)
    stride = 4 * math.prod(strides[1:first + 1])
    assert out.shape == (1, 19, h // stride, w // stride)
    assert torch.isfinite(out).all()


NEW_VARIANTS = [
    osp.join(REPO, 'configs', 'cityscapes',
             f'upernet_repmlpnet-{v}_8xb2-80k_cityscapes-512x1024.py')
    for v in ('d256', 'l256')]


@pytest.mark.parametrize('config', NEW_VARIANTS, ids=osp.basename)
def test_variant_config_trains_one_iteration(config, demo_data):
    cfg = Config.fromfile(config)
    assert cfg.model.backbone.norm_cfg == dict(type='SyncBN',
                                               requires_grad=True)
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                dict(type='RandomCrop', crop_size=(64, 128)),
                dict(type='PackSegInputs')]
    log, change = train_one_iteration(config, demo_data, pipeline,
                                      crop_size=(64, 128))
    assert math.isfinite(log['loss']) and log['loss'] > 0
    assert change > 0


def run_tool(*args):
    """Run a tool as a user would; return its combined output."""
    return tool_runner.run_tool(*args).stdout


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
    from mmrep.datasets import make_cityscapes_like
    root = str(tmp_path_factory.mktemp('cityscapes'))
    return make_cityscapes_like(root, num_train=8, num_val=2, seed=1)


def data_options(root, iters):
    return ['--cfg-options', f'train_dataloader.dataset.data_root={root}',
            f'val_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}',
            'train_dataloader.batch_size=2',
            f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
            'default_hooks.checkpoint.interval=1',
            'default_hooks.checkpoint.max_keep_ckpts=3',
            'default_hooks.logger.interval=1']


def test_train_evaluate_and_resume(demo_data, tmp_path):
    work = str(tmp_path / 'work')
    out = run_tool('tools/train.py', DEMO, '--work-dir', work,
                   *data_options(demo_data, 2))
    assert 'Iter(train) [2/2]' in out
    assert 'mIoU' in out  # validation at the end of training
    ckpt = osp.join(work, 'iter_2.pth')
    state = safe_load(ckpt)
    assert {'meta', 'state_dict', 'optimizer', 'message_hub'} <= set(state)
    assert state['meta']['iter'] == 2
    assert any(k.startswith('backbone.stages.') for k in state['state_dict'])

    # Evaluation through tools/test.py with mmseg's IoUMetric.
    metrics_file = str(tmp_path / 'metrics.json')
    run_tool('tools/test.py', DEMO, ckpt, '--work-dir', work,
             '--out-metrics', metrics_file, *data_options(demo_data, 2))
    with open(metrics_file) as f:
        metrics = json.load(f)
    assert {'mIoU', 'mAcc', 'aAcc'} <= set(metrics)
    assert 0 <= metrics['mIoU'] <= 100

    # Resume: continues at iteration 3, not from scratch.
    out = run_tool('tools/train.py', DEMO, '--work-dir', work, '--resume',
                   ckpt, *data_options(demo_data, 4))
    assert 'resumed epoch: 0, iter: 2' in out
    assert 'Iter(train) [3/4]' in out and 'Iter(train) [1/4]' not in out
    state = safe_load(osp.join(work, 'iter_4.pth'))
    assert state['meta']['iter'] == 4


@pytest.fixture(scope='module')
def one_iteration(demo_data, tmp_path_factory):
    """A genuine mmengine checkpoint: the demo after one iteration."""
    work = str(tmp_path_factory.mktemp('one_iteration'))
    run_tool('tools/train.py', DEMO, '--work-dir', work,
             *data_options(demo_data, 1))
    return osp.join(work, 'iter_1.pth')


def test_resume_objects_load_for_one_load_only(one_iteration):
    """mmengine's resume objects (HistoryBuffer, numpy arrays and scalars)
    load through safe_load as the real objects, and deep-copy as mmengine's
    resume does; torch's allow-list is left as it was."""
    import copy
    import pickle

    import numpy as np
    from mmengine.logging import HistoryBuffer

    from mmrep.utils import safe_load
    before = set(torch.serialization.get_safe_globals())
    state = safe_load(one_iteration)
    scalars = state['message_hub']['log_scalars']
    assert scalars and all(isinstance(v, HistoryBuffer)
                           for v in scalars.values())
    loss = scalars['train/loss']
    assert isinstance(loss._log_history, np.ndarray) and \
        loss._log_history.shape == (1, ) and np.isfinite(loss.current())
    copy.deepcopy(state)
    assert set(torch.serialization.get_safe_globals()) == before
    with pytest.raises(pickle.UnpicklingError):
        torch.load(one_iteration, map_location='cpu', weights_only=True)


def _with_meta_config(source, path, text):
    from mmrep.utils import safe_load
    state = safe_load(source)
    state['meta']['config'] = text
    torch.save(state, path)
    return path


def test_resume_never_executes_the_checkpoint(one_iteration, demo_data,
                                              tmp_path):
    """mmengine's Runner.resume executes meta['config']; a genuine config
    text with one extra line is refused before anything is created, and
    the same file given straight to the runner's loader is refused too."""
    from mmengine.config import Config

    from mmrep.apis import build_runner
    from mmrep.utils import UnsafeCheckpointError
    marker = tmp_path / 'pwned'
    text = Config.fromfile(DEMO).pretty_text + \
        f"\n_ = __import__('os').system('touch {marker}')\n"
    path = _with_meta_config(one_iteration, str(tmp_path / 'evil.pth'), text)
    work = tmp_path / 'work'
    proc = tool_runner.run_tool('tools/train.py', DEMO, '--work-dir',
                                str(work), '--resume', path,
                                *data_options(demo_data, 2), ok=False)
    lines = [line for line in proc.stdout.splitlines()
             if line.startswith('error:')]  # warnings of imports aside
    assert proc.returncode == 1 and len(lines) == 1, proc.stdout[-3000:]
    assert lines[0] == proc.stdout.strip().splitlines()[-1]
    assert lines[0].startswith(f'error: refused to resume from {path}: its '
                               f"meta['config'] is not a config of plain "
                               f'literals (line ')
    assert not marker.exists() and not work.exists()
    # The runner's own loading (what mmengine's resume calls).
    cfg = Config.fromfile(DEMO)
    cfg.work_dir = str(tmp_path / 'runner')
    runner = build_runner(cfg)
    with pytest.raises(UnsafeCheckpointError, match='refused to resume'):
        runner.load_checkpoint(path)
    assert not marker.exists()
    # The control: what mmengine's resume does with the text runs it.
    Config.fromstring(text, '.py')
    assert marker.exists()


def test_resume_with_a_literal_config(one_iteration, demo_data, tmp_path):
    """A meta['config'] of plain literals resumes, and what mmengine reads
    of it is only the gpu_ids it holds."""
    from mmengine.config import Config

    from mmrep.apis import build_runner
    path = _with_meta_config(
        one_iteration, str(tmp_path / 'literal.pth'),
        '"""an old runner\'s config"""\nmodel = dict(type=\'X\', '
        'sizes=(1, -2), d={1: [None, True]})\ngpu_ids = [0]\n')
    cfg = Config.fromfile(DEMO)
    cfg.work_dir = str(tmp_path / 'runner')
    checkpoint = build_runner(cfg).load_checkpoint(path)
    assert checkpoint['meta']['config'] == 'gpu_ids = [0]'
    out = run_tool('tools/train.py', DEMO, '--work-dir',
                   str(tmp_path / 'work'), '--resume', path,
                   *data_options(demo_data, 2))
    assert 'resumed epoch: 0, iter: 1' in out
    assert 'Iter(train) [2/2]' in out


def test_training_loss_falls(demo_data, tmp_path):
    work = str(tmp_path / 'work')
    run_tool('tools/train.py', DEMO, '--work-dir', work,
             *data_options(demo_data, 30),
             'default_hooks.checkpoint.interval=30')
    scalars = glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))
    assert scalars
    with open(scalars[0]) as f:
        losses = [json.loads(line)['loss'] for line in f
                  if '"loss"' in line]
    assert len(losses) == 30
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * first, (first, last)
