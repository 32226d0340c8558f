"""The tools refuse what they cannot do right, with one ``error:`` line and
nothing written: every tool given a missing input; checkpoints that fit
neither the train-time nor the fused model, models that do not build,
unreadable init checkpoints; ``--resume`` skips a checkpoint that a killed
run left truncated; the demo's schedule scales to any ``--iters``;
``package::path`` configs; ``dist_train.sh --help``."""
import glob
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope
from tool_runner import DEMO, INSTALL_HELPERS, REPO, load_tool

import mmrep  # noqa: F401
from mmrep.apis import (ConfigReadError, build_config, note_replacing,
                        preflight_train)
from mmrep.apis.demo import demo_config_options
from mmrep.deploy import make_deploy_config, reparameterize_model
from mmrep.models.backbones import RepVGG
from mmrep.utils.testing import randomize_bn

TINY_REPVGG = dict(num_blocks=(1, 1, 1, 1), width_multiplier=(0.25, ) * 4)


def build_demo(cfg):
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    return MODELS.build(cfg.model)


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """The demo segmentor's weights (random) as a training checkpoint and in
    fused form as ``ReparamCheckpointHook`` writes it, and a RepVGG one."""
    folder = tmp_path_factory.mktemp('checkpoints')
    cfg = Config.fromfile(DEMO)
    model = randomize_bn(build_demo(cfg)).eval()
    paths = {name: str(folder / f'{name}.pth')
             for name in ('train', 'fused', 'repvgg')}
    torch.save({'state_dict': model.state_dict(), 'meta': {'iter': 1}},
               paths['train'])
    meta = dict(source_checkpoint='train.pth',
                deploy_config=make_deploy_config(cfg).pretty_text)
    torch.save({'state_dict': reparameterize_model(model).state_dict(),
                'meta': meta}, paths['fused'])
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in
                               RepVGG(TINY_REPVGG).state_dict().items()}},
               paths['repvgg'])
    return paths


def missing_input(tool, tmp_path):
    """A command line of ``tool`` whose input is missing (or, for the tools
    that read none, an argument the tool cannot use).

    Args:
        tool (str): the tool's name (``tools/<tool>.py``).
        tmp_path (Path): an empty folder.

    Returns:
        tuple[list[str], list[Path]]: the arguments, and the paths the tool
        must not create.
    """
    config, ckpt = str(tmp_path / 'no_config.py'), str(tmp_path / 'no.pth')
    work, out = tmp_path / 'work', tmp_path / 'out.file'
    cases = {
        'train': ([DEMO, '--work-dir', str(work), '--cfg-options',
                   f'load_from={ckpt}'], [work]),
        'test': ([DEMO, ckpt, '--work-dir', str(work), '--out-metrics',
                  str(out)], [work, out]),
        'reparam': ([DEMO, ckpt, '--out', str(out)],
                    [out, tmp_path / 'out_config.py']),
        'export_onnx': ([config, ckpt, '--out', str(out)], [out]),
        'convert_checkpoint': ([ckpt, str(out), '--family', 'repvgg'],
                               [out]),
        'model_table': (['--families', 'no-such-family', '--out', str(out)],
                        [out]),
        'analyze_complexity': ([config, '--out-json', str(out)], [out]),
        'quantize': ([DEMO, ckpt, '--out', str(out), '--out-metrics',
                      str(tmp_path / 'metrics.json')],
                     [out, tmp_path / 'metrics.json']),
        'demo': (['--data-root', str(tmp_path / 'a_file'), '--work-dir',
                  str(work)], [work]),
    }
    assert tool in cases, f'tools/{tool}.py has no refusal case here'
    if tool == 'demo':
        (tmp_path / 'a_file').write_text('not a dataset folder')
    return cases[tool]


TOOL_NAMES = sorted(
    name for name in (osp.basename(p)[:-len('.py')]
                      for p in glob.glob(osp.join(REPO, 'tools', '*.py')))
    if name not in INSTALL_HELPERS)


@pytest.mark.slow  # a subprocess per tool
@pytest.mark.parametrize('tool', TOOL_NAMES)
def test_every_tool_refuses_a_missing_input_with_one_error_line(tool,
                                                                tmp_path):
    """As a user runs it: exactly one stderr line ``error: ...`` (library
    warnings silenced), exit status 1, nothing created."""
    argv, not_created = missing_input(tool, tmp_path)
    proc = subprocess.run(
        [sys.executable, osp.join('tools', f'{tool}.py'), *argv], cwd=REPO,
        capture_output=True, text=True,
        env=dict(os.environ, PYTHONWARNINGS='ignore'))
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith('error: '), lines
    for path in not_created:
        assert not path.exists(), path
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        (['a_file'] if tool == 'demo' else [])


def test_the_tool_list_is_every_python_tool():
    assert {'train', 'test', 'reparam', 'export_onnx', 'convert_checkpoint',
            'model_table', 'demo'} <= set(TOOL_NAMES)
    assert 'install' not in TOOL_NAMES and 'dist_train' not in TOOL_NAMES


def refusal(tool, argv):
    """Run a tool in this process; return its ``SystemExit`` message."""
    with pytest.raises(SystemExit) as err:
        load_tool(tool).main(argv)
    return str(err.value.code)


def test_test_tool_refuses_a_checkpoint_of_another_family(checkpoints,
                                                          tmp_path):
    work = tmp_path / 'work'
    path = checkpoints['repvgg']
    msg = refusal('test', [DEMO, path, '--work-dir', str(work)])
    assert msg.startswith(f'error: {path} does not fit the model as '
                          f'configured: missing keys (')
    assert "['backbone.conv_embedding.conv.weight', " in msg
    assert "unexpected keys (" in msg and \
        "['backbone.stage0.rbr_dense.conv.weight', " in msg
    assert '\n' not in msg and not work.exists()


def test_test_tool_names_shapes_of_a_fused_checkpoint_of_another_size(
        checkpoints, tmp_path):
    """A fused checkpoint (meta says so) that does not fit the fused model
    either is compared with that form, shapes named."""
    work = tmp_path / 'work'
    path = checkpoints['fused']
    msg = refusal('test', [DEMO, path, '--work-dir', str(work),
                           '--cfg-options', 'model.decode_head.channels=32'])
    assert msg.startswith(f'error: {path} does not fit the model in fused '
                          f'(deploy) form: shape mismatches (')
    assert 'decode_head.conv_seg.weight: checkpoint (19, 64, 1, 1) vs ' \
        'model (19, 32, 1, 1)' in msg
    assert not work.exists()


@pytest.mark.parametrize('how', ['load_from', 'resume'])
def test_train_tool_refuses_a_fused_checkpoint(checkpoints, tmp_path, how):
    work = tmp_path / 'work'
    path = checkpoints['fused']
    extra = ['--resume', path] if how == 'resume' else \
        ['--cfg-options', f'load_from={path}']
    msg = refusal('train', [DEMO, '--work-dir', str(work), *extra])
    assert msg == (f'error: {path} holds fused (deploy) weights, which '
                   f'training cannot start from; give the train-time '
                   f'checkpoint they were fused from')
    assert not work.exists()


def test_train_tool_refuses_a_checkpoint_of_another_family(checkpoints,
                                                           tmp_path):
    work = tmp_path / 'work'
    path = checkpoints['repvgg']
    msg = refusal('train', [DEMO, '--work-dir', str(work), '--cfg-options',
                            f'load_from={path}'])
    assert msg.startswith(f'error: {path} does not fit the model as '
                          f'configured: missing keys (')
    assert not work.exists()


def test_train_tool_refuses_an_unknown_arch_before_creating_anything(
        tmp_path):
    work = tmp_path / 'work'
    msg = refusal('train', [DEMO, '--work-dir', str(work), '--cfg-options',
                            'model.backbone.arch=T999'])
    assert msg.startswith(f'error: cannot build the model of {DEMO}: '
                          f"ValueError: unknown RepMLPNet arch 'T999'; "
                          f'presets: [')
    assert not work.exists()


def test_train_tool_refuses_an_unreadable_init_checkpoint(tmp_path):
    work = tmp_path / 'work'
    bad = tmp_path / 'imagenet.pth'
    bad.write_bytes(b'\x80\x02 not a checkpoint')
    config = tmp_path / 'pretrained.py'
    config.write_text(
        f'_base_ = [{DEMO!r}]\n'
        f"model = dict(backbone=dict(init_cfg=dict(_delete_=True, "
        f"type='Pretrained', checkpoint={str(bad)!r})))\n")
    msg = refusal('train', [str(config), '--work-dir', str(work)])
    assert msg.startswith(f'error: cannot read checkpoint {bad}: the file '
                          f'is truncated or corrupt')
    assert not work.exists()


def test_resume_skips_a_truncated_newest_checkpoint(checkpoints, tmp_path):
    """What a SIGKILL during mmengine's save leaves: the newest file cut
    short. ``--resume`` without a path takes the newest one that loads."""
    work = tmp_path / 'work'
    work.mkdir()
    data = open(checkpoints['train'], 'rb').read()
    good, cut = str(work / 'iter_1.pth'), str(work / 'iter_2.pth')
    with open(good, 'wb') as f:
        f.write(data)
    with open(cut, 'wb') as f:
        f.write(data[:len(data) // 3])
    os.utime(good, ns=(1, 1))  # older than the truncated one
    cfg = build_config(load_tool('train').parse_args(
        [DEMO, '--work-dir', str(work), '--resume']))
    notes = preflight_train(cfg, DEMO)
    assert cfg.resume is True and cfg.load_from == good
    assert notes == [
        f'--resume: resuming from {good}, the newest checkpoint of {work} '
        f'that loads; skipped: cannot read checkpoint {cut}: the file is '
        f'truncated or corrupt' + notes[0].split('truncated or corrupt')[1]]
    assert sorted(os.listdir(work)) == ['iter_1.pth', 'iter_2.pth']


def test_resume_starts_fresh_when_no_checkpoint_loads(checkpoints, tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    cut = str(work / 'iter_2.pth')
    with open(cut, 'wb') as f:
        f.write(open(checkpoints['train'], 'rb').read()[:1000])
    cfg = build_config(load_tool('train').parse_args(
        [DEMO, '--work-dir', str(work), '--resume']))
    notes = preflight_train(cfg, DEMO)
    assert cfg.resume is False and not cfg.load_from
    assert notes[0].startswith(
        f'--resume: no checkpoint of {work} loads, so training starts from '
        f'scratch; skipped: cannot read checkpoint {cut}: the file is '
        f'truncated or corrupt')


@pytest.mark.parametrize('iters', [1, 4, 30, 300])
def test_demo_schedule_builds_for_any_iters(iters):
    """``--iters N`` used to fail for N <= 30 (warm-up end 30 > N)."""
    from mmengine.registry import PARAM_SCHEDULERS
    cfg = Config.fromfile(DEMO)
    opts = demo_config_options('data/x', iters)
    cfg.merge_from_dict({k: DictAction._parse_iterable(v) for k, v in
                         (o.split('=', 1) for o in opts)})
    warmup, decay = cfg.param_scheduler
    assert warmup.end == max(1, min(30, iters // 10)) == decay.begin
    assert cfg.train_cfg.max_iters == iters
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1)
    for scheduler in cfg.param_scheduler:
        PARAM_SCHEDULERS.build(dict(scheduler, optimizer=optimizer))


def test_demo_refuses_zero_iters(capsys):
    with pytest.raises(SystemExit):
        load_tool('demo').parse_args(['--iters', '0'])
    assert 'argument --iters: must be at least 1, got 0' in \
        capsys.readouterr().err


def test_dist_train_prints_usage():
    script = osp.join(REPO, 'tools', 'dist_train.sh')
    proc = subprocess.run(['bash', script, '--help'], capture_output=True,
                          text=True)
    assert proc.returncode == 0 and proc.stdout.startswith(
        'usage: tools/dist_train.sh CONFIG NUM_PROCS [tools/train.py '
        'arguments]')
    proc = subprocess.run(['bash', script], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == \
        'error: CONFIG and NUM_PROCS are required'


def test_package_config_names():
    name = 'mmpretrain::repvgg/repvgg-A0_8xb32_in1k.py'
    cfg = build_config(load_tool('train').parse_args([name]))
    assert cfg.model.backbone.type == 'RepVGG'
    assert cfg.work_dir == osp.join('./work_dirs', 'repvgg-A0_8xb32_in1k')
    missing = 'mmpretrain::repvgg/no-such-config.py'
    with pytest.raises(ConfigReadError,
                       match=f'^cannot read config {missing}: '):
        build_config(load_tool('train').parse_args([missing]))
    assert refusal('train', [missing]).startswith(
        f'error: cannot read config {missing}: ')


def test_show_dir_needs_a_visualization_hook(checkpoints, tmp_path):
    work = tmp_path / 'work'
    msg = refusal('test', [
        DEMO, checkpoints['train'], '--work-dir', str(work), '--show-dir',
        str(tmp_path / 'show'), '--cfg-options',
        'default_hooks.visualization=None'])
    assert msg == ('error: --show-dir needs default_hooks.visualization of '
                   'type SegVisualizationHook, DetVisualizationHook or '
                   'VisualizationHook (mmpretrain) in the config; it has none')
    assert not work.exists() and not (tmp_path / 'show').exists()


def test_note_replacing_speaks_only_for_an_existing_file(tmp_path, capsys):
    path = tmp_path / 'out.md'
    assert note_replacing(path) is False
    assert capsys.readouterr().err == ''
    path.write_text('x')
    assert note_replacing(path) is True
    assert capsys.readouterr().err == f'note: replacing the existing {path}\n'
