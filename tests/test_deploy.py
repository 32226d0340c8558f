"""The deploy path: one walker, the on-save hook, tools/reparam.py, and
fused models that evaluate like the train-time ones."""
import glob
import json
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope

import mmrep
from mmrep.deploy import make_deploy_config, reparameterize_model
from mmrep.utils.testing import randomize_bn
from tool_runner import DEMO, REPO, run_tool

ALL_CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', '*', '*.py')))


def build(cfg):
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    from mmengine.registry import MODELS
    return MODELS.build(cfg.model)


def flat(out):
    if torch.is_tensor(out):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    return [t for o in out for t in flat(o)]


@pytest.mark.parametrize('config', ALL_CONFIGS, ids=osp.basename)
def test_every_config_fuses_losslessly(config):
    cfg = Config.fromfile(config)
    model = randomize_bn(build(cfg)).eval()
    fused = reparameterize_model(model)
    assert fused is not model
    assert not any(getattr(m, 'deploy', False) for m in model.modules())
    # Baseline configs kept for comparison (plain ResNet) have nothing to
    # fuse: the walker must then leave the model as it is.
    has_mmrep = any(type(m).__module__.startswith('mmrep.')
                    for m in model.modules())
    assert has_mmrep or 'r50-d8' in osp.basename(config)
    assert any(getattr(m, 'deploy', False)
               for m in fused.modules()) == has_mmrep
    # Reduced input sizes: the configs' own would be slow on 2 cores.
    size = (64, 64) if cfg.get('default_scope') == 'mmpretrain' else (64, 128)
    x = torch.randn(1, 3, *size)
    def run(m):  # a two-stage detector's tensor mode needs image metas
        return m.extract_feat(x) if hasattr(m, 'roi_head') else \
            m(x, mode='tensor')
    with torch.no_grad():
        ref, out = flat(run(model)), flat(run(fused))
    assert len(ref) == len(out) > 0
    for a, b in zip(ref, out):
        rel = (a - b).abs().max() / a.abs().max().clamp_min(1e-12)
        assert rel <= 1e-4, f'relative difference {rel:.3g}'
    # The deploy config builds the fused model, which takes these weights.
    if not has_mmrep:
        with pytest.raises(ValueError, match='no mmrep module'):
            make_deploy_config(cfg)
        return
    deployed = build(make_deploy_config(cfg))
    deployed.load_state_dict(fused.state_dict(), strict=True)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A 2-iteration demo training with the hook; checkpoints every
    iteration, the last 2 kept."""
    from mmrep.datasets import make_cityscapes_like
    tmp = tmp_path_factory.mktemp('deploy')
    data = make_cityscapes_like(str(tmp / 'data'), num_train=4, num_val=2)
    work = str(tmp / 'work')
    opts = ['--cfg-options', f'train_dataloader.dataset.data_root={data}',
            f'val_dataloader.dataset.data_root={data}',
            f'test_dataloader.dataset.data_root={data}',
            'train_dataloader.batch_size=2', 'train_cfg.max_iters=3',
            'train_cfg.val_interval=3', 'default_hooks.checkpoint.interval=1',
            'default_hooks.checkpoint.max_keep_ckpts=2']
    out = run_tool('tools/train.py', DEMO, '--work-dir', work, *opts).stdout
    return dict(work=work, opts=opts, log=out, data=data)


def test_hook_writes_fused_weights_beside_each_checkpoint(trained):
    work = trained['work']
    assert 'ReparamCheckpointHook: fused weights saved to' in trained['log']
    # max_keep_ckpts=2: iter_1 and its deploy file are gone.
    assert not osp.exists(osp.join(work, 'iter_1.pth'))
    assert not osp.exists(osp.join(work, 'iter_1_deploy.pth'))
    for it in (2, 3):
        path = osp.join(work, f'iter_{it}_deploy.pth')
        saved = torch.load(path, map_location='cpu', weights_only=True)
        meta = saved['meta']
        assert meta['source_checkpoint'] == f'iter_{it}.pth'
        assert meta['iter'] == it
        assert meta['mmrep_version'] == mmrep.__version__
        cfg = Config.fromstring(meta['deploy_config'], '.py')
        assert cfg.model.backbone.deploy is True
        model = build(cfg)
        model.load_state_dict(saved['state_dict'], strict=True)
        assert not any('repconv' in k for k in saved['state_dict'])
    assert not glob.glob(osp.join(work, '*.tmp'))


def test_failed_write_keeps_previous_file_and_training_goes_on(
        trained, tmp_path, monkeypatch):
    from mmengine.runner import Runner

    import mmrep.deploy.hook as hook_module
    cfg = Config.fromfile(DEMO)
    cfg.merge_from_dict(
        {k: DictAction._parse_iterable(v)
         for k, v in (o.split('=', 1) for o in trained['opts'][1:])},
        allow_list_keys=True)
    cfg.train_dataloader.batch_size = 2
    cfg.train_cfg.max_iters = 2
    cfg.train_cfg.val_interval = 100
    cfg.default_hooks.checkpoint.max_keep_ckpts = 5
    cfg.work_dir = str(tmp_path)
    calls = {'n': 0}
    real_save = torch.save

    def flaky_save(obj, f, *args, **kwargs):
        if 'state_dict' in obj and 'meta' in obj and \
                'deploy_config' in obj['meta']:
            calls['n'] += 1
            if calls['n'] == 2:  # the second deploy file fails midway
                with open(f, 'wb') as fh:
                    fh.write(b'partial')
                raise OSError('disk full (simulated)')
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(hook_module.torch, 'save', flaky_save)
    runner = Runner.from_cfg(cfg)
    first = osp.join(str(tmp_path), 'iter_1_deploy.pth')
    runner.train()  # does not raise
    assert runner.iter == 2
    assert osp.isfile(osp.join(str(tmp_path), 'iter_2.pth'))
    assert not osp.exists(osp.join(str(tmp_path), 'iter_2_deploy.pth'))
    monkeypatch.setattr(hook_module.torch, 'save', real_save)
    torch.load(first, map_location='cpu', weights_only=True)  # intact
    assert not glob.glob(osp.join(str(tmp_path), '.*.tmp'))
    log = open(glob.glob(osp.join(str(tmp_path), '*', '*.log'))[0]).read()
    assert 'could not write' in log and 'disk full (simulated)' in log


def test_reparam_tool_and_deploy_evaluation(trained, tmp_path):
    work = trained['work']
    ckpt = osp.join(work, 'iter_3.pth')
    out = str(tmp_path / 'fused.pth')
    proc = run_tool('tools/reparam.py', DEMO, ckpt, '--out', out, '--verify')
    assert 'max rel diff' in proc.stdout
    deploy_cfg = str(tmp_path / 'fused_config.py')
    assert osp.isfile(out) and osp.isfile(deploy_cfg)

    # An already fused checkpoint is recognised and left alone.
    before = os.stat(out).st_mtime_ns
    proc = run_tool('tools/reparam.py', DEMO, out, '--out', out)
    assert 'already fused' in proc.stdout
    assert os.stat(out).st_mtime_ns == before

    # A checkpoint that does not fit: keys named, nothing written.
    wrong = str(tmp_path / 'wrong.pth')
    torch.save({'state_dict': {'backbone.foo': torch.zeros(1)}}, wrong)
    target = str(tmp_path / 'never.pth')
    proc = run_tool('tools/reparam.py', DEMO, wrong, '--out', target,
                    ok=False)
    assert proc.returncode != 0 and 'backbone.foo' in proc.stdout
    assert not osp.exists(target)

    # Same metric from the fused model as from the train-time one.
    metrics = {}
    for name, config, weights in (('train', DEMO, ckpt),
                                  ('deploy', deploy_cfg, out)):
        mfile = str(tmp_path / f'{name}.json')
        run_tool('tools/test.py', config, weights, '--work-dir',
                 str(tmp_path / name), '--out-metrics', mfile,
                 *trained['opts'])
        with open(mfile) as f:
            metrics[name] = json.load(f)
    for key in ('mIoU', 'aAcc', 'mAcc'):
        assert abs(metrics['train'][key] - metrics['deploy'][key]) < 1e-2
