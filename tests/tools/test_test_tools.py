"""The standard test-time tools and flags: ``tools/test.py --out`` writes the
predictions in the format of the config's library (mmseg: PNG label maps,
mmdet / mmpretrain: a .pkl), ``--tta`` tests with the config's TTA model and
pipeline, ``tools/dist_test.sh`` runs two gloo processes, the slurm scripts
build the usual ``srun`` command line, ``tools/analyze_complexity.py``
counts parameters and FLOPs of both forms, every tool refuses abbreviated
options, ``tools/reparam.py`` replaces no file silently and writes its
fused weights and deploy config whole or not at all (also when killed),
``--amp`` is refused on a machine that cannot run it; tools/test.py on the
ONNX file of a one-stage detector predicts as its checkpoint, that of a
two-stage detector is refused."""
import glob
import json
import os
import os.path as osp
import pickle
import socket
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope
from PIL import Image
from tool_runner import DEMO, INSTALL_HELPERS, REPO, load_tool, run_tool

import mmrep  # noqa: F401
from mmrep.deploy import make_deploy_config
from mmrep.utils.testing import randomize_bn
from mmrep.utils import safe_load

# Trains, exports, quantizes, fuzzes or starts processes: `make test-fast`
# leaves it out (the `slow` marker, pytest.ini).
pytestmark = pytest.mark.slow

COCO_DEMO = osp.join(REPO, 'configs', 'coco',
                     'demo_retinanet_cyclemlp-tiny_1xb2-cpu_coco-synthetic.py')
REPVGG_A0 = osp.join(REPO, 'configs', 'imagenet', 'repvgg-a0_8xb32_in1k.py')
TOOL_NAMES = sorted(
    name for name in (osp.basename(p)[:-len('.py')]
                      for p in glob.glob(osp.join(REPO, 'tools', '*.py')))
    if name not in INSTALL_HELPERS)


def build(cfg):
    """The config's model, built in its scope (random weights)."""
    from mmengine.registry import MODELS
    init_default_scope(cfg.default_scope)
    return MODELS.build(cfg.model)


def save_random(config, path, seed=0):
    """Save random weights (random BN statistics) of a config's model."""
    torch.manual_seed(seed)
    model = randomize_bn(build(Config.fromfile(config)), seed=seed).eval()
    torch.save({'state_dict': model.state_dict()}, path)
    return model


def refusal(tool, argv):
    """Run a tool in this process; return its one-line ``SystemExit``."""
    with pytest.raises(SystemExit) as err:
        load_tool(tool).main(argv)
    msg = str(err.value.code)
    assert msg.startswith('error: ') and '\n' not in msg, msg
    return msg


@pytest.fixture(scope='module')
def city(tmp_path_factory):
    """Two validation images of the Cityscapes layout and random weights of
    the demo segmentor."""
    from mmrep.datasets import make_cityscapes_like
    folder = tmp_path_factory.mktemp('city')
    root = make_cityscapes_like(str(folder / 'data'), num_train=1,
                                num_val=2, seed=5)
    ckpt = str(folder / 'demo.pth')
    save_random(DEMO, ckpt)
    return dict(root=root, ckpt=ckpt)


def seg_options(root, name):
    return ['--cfg-options', f'test_dataloader.dataset.data_root={root}',
            f'experiment_name={name}']


def read_json(path):
    with open(path) as f:
        return json.load(f)


# --out -----------------------------------------------------------------

def test_out_writes_mmseg_label_maps_and_still_evaluates(city, tmp_path):
    out, mfile = tmp_path / 'preds', str(tmp_path / 'metrics.json')
    load_tool('test').main([DEMO, city['ckpt'], '--work-dir',
                            str(tmp_path / 'work'), '--out', str(out),
                            '--out-metrics', mfile,
                            *seg_options(city['root'], 'out_seg')])
    images = sorted(glob.glob(osp.join(city['root'], 'leftImg8bit', 'val',
                                       '*', '*.png')))
    assert len(images) == 2
    names = [osp.splitext(osp.basename(p))[0] + '.png' for p in images]
    assert sorted(os.listdir(out)) == sorted(names)
    for image, name in zip(images, names):
        pred = np.array(Image.open(out / name))
        assert pred.dtype == np.uint8
        assert pred.shape == np.array(Image.open(image)).shape[:2]
        assert pred.max() < 19  # Cityscapes train ids
    assert 0 <= read_json(mfile)['mIoU'] <= 100


def test_out_refuses_a_file_for_mmseg(city, tmp_path):
    taken = tmp_path / 'taken.txt'
    taken.write_text('x')
    work = tmp_path / 'work'
    msg = refusal('test', [DEMO, city['ckpt'], '--work-dir', str(work),
                           '--out', str(taken)])
    assert msg == (f'error: --out {taken} exists and is not a folder (mmseg '
                   f'writes a folder of PNG label maps, one per image (the '
                   f"test evaluator's output_dir))")
    assert not work.exists() and taken.read_text() == 'x'


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    from mmrep.datasets import make_coco_like
    folder = tmp_path_factory.mktemp('coco')
    root = make_coco_like(str(folder / 'data'), num_train=1, num_val=2,
                          size=(128, 128), seed=1)
    ckpt = str(folder / 'retinanet.pth')
    save_random(COCO_DEMO, ckpt)
    return dict(root=root, ckpt=ckpt)


def test_out_dumps_mmdet_predictions(coco, tmp_path):
    from test_coco_e2e import coco_options
    out = str(tmp_path / 'preds.pkl')
    options = coco_options(coco['root'], 1) + ['experiment_name=out_det']
    load_tool('test').main([COCO_DEMO, coco['ckpt'], '--work-dir',
                            str(tmp_path / 'work'), '--out', out, *options])
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 2
    for pred in preds:
        assert {'bboxes', 'scores', 'labels'} <= set(pred['pred_instances'])
        assert pred['pred_instances']['bboxes'].shape[-1] == 4
        assert 'gt_instances' not in pred  # DumpDetResults drops them
        assert pred['img_path'].startswith(coco['root'])


@pytest.mark.parametrize('name', ['preds.json', 'preds'])
def test_out_must_be_a_pickle_for_mmdet(coco, tmp_path, name):
    work, out = tmp_path / 'work', tmp_path / name
    msg = refusal('test', [COCO_DEMO, coco['ckpt'], '--work-dir', str(work),
                           '--out', str(out)])
    assert msg == (f'error: --out must name a .pkl or .pickle file for an '
                   f"mmdet config (a .pkl of the predictions (mmdet's "
                   f'DumpDetResults)), got {out}')
    assert not work.exists() and not out.exists()



def test_onnx_of_a_one_stage_detector_predicts_as_its_checkpoint(
        coco, tmp_path):
    """The exported RetinaNet's per-level outputs, regrouped and decoded by
    mmdet (``OnnxPredictor``), give the checkpoint's boxes, scores and
    labels, and tools/test.py gives the checkpoint's CocoMetric."""
    from test_coco_e2e import coco_options

    from mmrep.apis import build_model, load_config
    from mmrep.apis.onnx_eval import OnnxPredictor, build_test_dataloader
    options = coco_options(coco['root'], 1)
    path = str(tmp_path / 'retinanet.onnx')
    load_tool('export_onnx').main(
        [COCO_DEMO, coco['ckpt'], '--out', path, '--dynamic', *options])
    cfg = load_config(COCO_DEMO, {
        k: DictAction._parse_iterable(v)
        for k, v in (o.split('=', 1) for o in options[1:])})
    model = build_model(cfg)
    model.load_state_dict(safe_load(coco['ckpt'])['state_dict'])
    model.eval()
    predictor = OnnxPredictor(cfg, path)
    assert predictor.kind == 'detector'
    boxes = 0
    for data in build_test_dataloader(cfg):
        with torch.no_grad():
            want = model.test_step(data)
        got = predictor.test_step(data)
        for w, g in zip(want, got, strict=True):
            w, g = w.pred_instances, g.pred_instances
            assert len(w) > 0 and len(g) == len(w)
            # Each detection has its twin (label, score, box); the order of
            # detections whose scores tie within rounding may differ.
            twin = ((g.labels[:, None] == w.labels[None])
                    & ((g.scores[:, None] - w.scores[None]).abs() <= 1e-4)
                    & ((g.bboxes[:, None] - w.bboxes[None]).abs()
                       <= 1e-2).all(-1))
            assert twin.any(1).all() and twin.any(0).all()
            boxes += len(w)
    assert boxes > 0
    metrics = {}
    for name, weights in (('pth', coco['ckpt']), ('onnx', path)):
        out = str(tmp_path / f'{name}.json')
        load_tool('test').main([COCO_DEMO, weights, '--work-dir',
                                str(tmp_path / name), '--out-metrics', out,
                                *options])
        metrics[name] = read_json(out)
    assert 'coco/bbox_mAP' in metrics['onnx']
    for key, value in metrics['pth'].items():
        if key.startswith('coco/'):
            assert metrics['onnx'][key] == pytest.approx(value, abs=1e-3)


def test_onnx_of_a_two_stage_detector_is_refused(coco, tmp_path):
    from test_coco_e2e import coco_options
    mask_rcnn = osp.join(REPO, 'configs', 'coco',
                         'demo_mask-rcnn_cyclemlp-tiny_1xb2-cpu_coco-'
                         'synthetic.py')
    path = tmp_path / 'mask_rcnn.onnx'
    path.write_bytes(b'')
    out = tmp_path / 'metrics.json'
    msg = refusal('test', [mask_rcnn, str(path), '--out-metrics', str(out),
                           *coco_options(coco['root'], 1)])
    assert msg == ('error: the ONNX graph of a two-stage detector ends at '
                   'the RPN (its RoI heads need proposals); evaluate it '
                   'with the checkpoint instead')
    assert not out.exists()

def test_out_dumps_mmpretrain_predictions(tmp_path):
    from mmrep.datasets import make_imagenet_like
    root = make_imagenet_like(str(tmp_path / 'imagenet'), num_classes=3,
                              per_class_train=1, per_class_val=1, size=64)
    ckpt = str(tmp_path / 'a0.pth')
    save_random(REPVGG_A0, ckpt)
    out = str(tmp_path / 'preds.pkl')
    load_tool('test').main([
        REPVGG_A0, ckpt, '--work-dir', str(tmp_path / 'work'), '--out', out,
        '--cfg-options', f'test_dataloader.dataset.data_root={root}',
        'test_dataloader.batch_size=2', 'test_dataloader.num_workers=0',
        'experiment_name=out_cls'])
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 3
    assert sorted(int(p['gt_label'][0]) for p in preds) == [0, 1, 2]
    for pred in preds:
        assert pred['pred_score'].shape == (1000, )
        assert int(pred['pred_label'][0]) == int(pred['pred_score'].argmax())


# --tta -----------------------------------------------------------------

def test_tta_uses_the_config_tta_model_and_pipeline(city, tmp_path):
    """The demo config's TTA (mmseg's: six scales, two flips) runs and gives
    metrics; the dumped config shows the TTA model wrapping the
    segmentor and the TTA pipeline."""
    work = tmp_path / 'work'
    mfile = str(tmp_path / 'metrics.json')
    load_tool('test').main([DEMO, city['ckpt'], '--tta', '--work-dir',
                            str(work), '--out-metrics', mfile,
                            *seg_options(city['root'], 'tta_default')])
    metrics = read_json(mfile)
    assert {'aAcc', 'mIoU', 'mAcc'} <= set(metrics)
    assert 0 <= metrics['mIoU'] <= 100
    ran = Config.fromfile(str(work / osp.basename(DEMO)))
    assert ran.model.type == 'SegTTAModel'
    assert ran.model.module.backbone.type == 'mmrep.RepMLPNet'
    assert ran.test_dataloader.dataset.pipeline[1].type == 'TestTimeAug'
    assert len(ran.test_dataloader.dataset.pipeline[1].transforms[0]) == 6


def test_tta_of_one_view_gives_the_plain_metrics(city, tmp_path):
    """With a TTA pipeline of the one unchanged view, the TTA model must give
    the plain evaluation's metrics: the weights went into its module."""
    config = tmp_path / 'one_view.py'
    config.write_text(
        f'_base_ = [{DEMO!r}]\n'
        "tta_pipeline = [dict(type='LoadImageFromFile'), "
        "dict(type='TestTimeAug', transforms=[[dict(type='RandomFlip', "
        "prob=0.0)], [dict(type='LoadAnnotations')], "
        "[dict(type='PackSegInputs')]])]\n")
    metrics = {}
    for name, extra in (('plain', []), ('tta', ['--tta'])):
        mfile = str(tmp_path / f'{name}.json')
        load_tool('test').main([
            str(config), city['ckpt'], *extra, '--work-dir',
            str(tmp_path / name), '--out-metrics', mfile,
            *seg_options(city['root'], f'one_view_{name}')])
        metrics[name] = read_json(mfile)
    assert metrics['tta'] == pytest.approx(metrics['plain'], abs=1e-6)


@pytest.mark.parametrize('missing', ['tta_model', 'tta_pipeline'])
def test_tta_refused_without_the_config_entries(city, tmp_path, missing):
    work = tmp_path / 'work'
    msg = refusal('test', [DEMO, city['ckpt'], '--tta', '--work-dir',
                           str(work), '--cfg-options', f'{missing}=None'])
    assert msg == (f'error: --tta needs tta_model and tta_pipeline in the '
                   f'config; {DEMO} has no {missing}')
    assert not work.exists()


# dist_test.sh and slurm ----------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_dist_test_runs_two_gloo_processes(city, tmp_path):
    mfile = str(tmp_path / 'metrics.json')
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()),
               OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    env.pop('CUDA_VISIBLE_DEVICES', None)
    proc = subprocess.run(
        ['bash', osp.join(REPO, 'tools', 'dist_test.sh'), DEMO, city['ckpt'],
         '2', '--work-dir', str(tmp_path / 'work'), '--out-metrics', mfile,
         *seg_options(city['root'], 'dist_test')],
        cwd=REPO, env=env, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, timeout=300)
    log = proc.stdout
    assert proc.returncode == 0, log[-4000:]
    assert "dist_cfg: {'backend': 'gloo'}" in log
    assert 'Distributed training: True' in log
    # Two images, one per process.
    assert 'Iter(test) [1/1]' in log and 'Iter(test) [1/2]' not in log
    assert 0 <= read_json(mfile)['mIoU'] <= 100


def test_dist_test_usage():
    script = osp.join(REPO, 'tools', 'dist_test.sh')
    proc = subprocess.run(['bash', script, '--help'], capture_output=True,
                          text=True)
    assert proc.returncode == 0 and proc.stdout.startswith(
        'usage: tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS '
        '[tools/test.py arguments]')
    proc = subprocess.run(['bash', script, DEMO, 'x.pth'],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == \
        'error: CONFIG, CHECKPOINT and NUM_PROCS are required'
    proc = subprocess.run(['bash', script, DEMO, 'x.pth', 'two'],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.splitlines()[-1] == \
        "error: NUM_PROCS must be a positive integer, got 'two'"


@pytest.fixture
def fake_srun(tmp_path):
    """A ``srun`` first on PATH that writes its arguments, one per line, and
    the PYTHONPATH it was given to ``srun_argv.txt``."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    record = tmp_path / 'srun_argv.txt'
    srun = bin_dir / 'srun'
    srun.write_text('#!/usr/bin/env bash\n'
                    f'printf "%s\\n" "$@" > {record}\n'
                    f'echo "PYTHONPATH=$PYTHONPATH" >> {record}\n')
    srun.chmod(srun.stat().st_mode | stat.S_IXUSR)
    env = dict(os.environ, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')
    for key in ('GPUS', 'GPUS_PER_NODE', 'CPUS_PER_TASK', 'SRUN_ARGS',
                'PYTHON', 'PYTHONPATH'):
        env.pop(key, None)

    def run(script, *args, **extra_env):
        proc = subprocess.run(
            ['bash', osp.join(REPO, 'tools', script), *args], cwd=tmp_path,
            env=dict(env, **extra_env), capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return record.read_text().splitlines()
    return run


SRUN_DEFAULTS = ['--gres=gpu:8', '--ntasks=8', '--ntasks-per-node=8',
                 '--cpus-per-task=5', '--kill-on-bad-exit=1']


def test_slurm_train_command_line(fake_srun):
    argv = fake_srun('slurm_train.sh', 'gpu', 'job1', 'my config.py',
                     'work dir', '--amp', '--cfg-options', 'a=1')
    assert argv == [
        '-p', 'gpu', '--job-name=job1', *SRUN_DEFAULTS, 'python', '-u',
        osp.join(REPO, 'tools', 'train.py'), 'my config.py',
        '--launcher=slurm', '--work-dir', 'work dir', '--amp',
        '--cfg-options', 'a=1', f'PYTHONPATH={REPO}:']
    # No WORK_DIR: the options follow the config; the environment counts.
    argv = fake_srun('slurm_train.sh', 'p2', 'j', 'c.py', '--resume',
                     GPUS='16', GPUS_PER_NODE='4', CPUS_PER_TASK='2',
                     SRUN_ARGS='--quotatype=auto --time=10', PYTHON='py3')
    assert argv == [
        '-p', 'p2', '--job-name=j', '--gres=gpu:4', '--ntasks=16',
        '--ntasks-per-node=4', '--cpus-per-task=2', '--kill-on-bad-exit=1',
        '--quotatype=auto', '--time=10', 'py3', '-u',
        osp.join(REPO, 'tools', 'train.py'), 'c.py', '--launcher=slurm',
        '--resume', f'PYTHONPATH={REPO}:']


def test_slurm_test_command_line(fake_srun):
    argv = fake_srun('slurm_test.sh', 'gpu', 'eval', 'c.py', 'iter_8.pth',
                     '--out', 'preds', '--tta', GPUS='2', GPUS_PER_NODE='2')
    assert argv == [
        '-p', 'gpu', '--job-name=eval', '--gres=gpu:2', '--ntasks=2',
        '--ntasks-per-node=2', '--cpus-per-task=5', '--kill-on-bad-exit=1',
        'python', '-u', osp.join(REPO, 'tools', 'test.py'), 'c.py',
        'iter_8.pth', '--launcher=slurm', '--out', 'preds', '--tta',
        f'PYTHONPATH={REPO}:']


@pytest.mark.parametrize('script,needs', [
    ('slurm_train.sh', 'PARTITION, JOB_NAME and CONFIG'),
    ('slurm_test.sh', 'PARTITION, JOB_NAME, CONFIG and CHECKPOINT')])
def test_slurm_usage(script, needs):
    path = osp.join(REPO, 'tools', script)
    proc = subprocess.run(['bash', path, '--help'], capture_output=True,
                          text=True)
    assert proc.returncode == 0 and proc.stdout.startswith(
        f'usage: tools/{script} PARTITION JOB_NAME CONFIG')
    proc = subprocess.run(['bash', path, 'gpu', 'job'], capture_output=True,
                          text=True)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == f'error: {needs} are required'


# analyze_complexity ----------------------------------------------------

def count(model):
    return sum(p.numel() for p in model.parameters())


def test_complexity_of_a_segmentor_in_both_forms(tmp_path):
    out = tmp_path / 'cx.json'
    result = load_tool('analyze_complexity').main([
        DEMO, '--both', '--latency-iters', '2', '--out-json', str(out)])
    assert read_json(out) == json.loads(json.dumps(result))
    assert set(result) == {'config', 'checkpoint', 'input_shape',
                           'latency_iters', 'train', 'deploy'}
    assert result['input_shape'] == [1, 3, 128, 256]  # the crop_size
    cfg = Config.fromfile(DEMO)
    for form, config in (('train', cfg), ('deploy', make_deploy_config(cfg))):
        numbers = result[form]
        assert set(numbers) == {'params', 'flops', 'activations',
                                'latency_ms', 'unsupported_ops'}
        assert numbers['params'] == count(build(config))
        assert numbers['flops'] > 0 and numbers['latency_ms'] > 0
    assert result['deploy']['params'] < result['train']['params']
    assert result['deploy']['flops'] < result['train']['flops']


def test_complexity_of_repvgg_a0_matches_its_paper(capsys):
    """RepVGG-A0 at 224x224: 8.31 M parameters and 1.36 GFLOPs fused (the
    paper's Table 4), 9.11 M parameters train-time."""
    result = load_tool('analyze_complexity').main([REPVGG_A0, '--both'])
    cfg = Config.fromfile(REPVGG_A0)
    assert result['train']['params'] == count(build(cfg)) == 9108968
    assert result['deploy']['params'] == \
        count(build(make_deploy_config(cfg))) == 8309384
    assert round(result['deploy']['flops'] / 1e9, 2) == 1.36
    assert result['latency_iters'] == 0
    assert result['train']['latency_ms'] is None
    text = capsys.readouterr().out
    assert '| train | 9.1090 |' in text and '| deploy | 8.3094 |' in text


def test_complexity_default_form_and_fused_checkpoint(city, tmp_path):
    result = load_tool('analyze_complexity').main(
        [DEMO, '--shape', '64', '128', '--checkpoint', city['ckpt']])
    assert 'deploy' not in result and result['input_shape'] == [1, 3, 64,
                                                                 128]
    # Fused weights can only be measured in their form.
    fused = str(tmp_path / 'fused.pth')
    load_tool('reparam').main([DEMO, city['ckpt'], '--out', fused])
    result = load_tool('analyze_complexity').main(
        [DEMO, '--deploy', '--checkpoint', fused])
    assert set(result) >= {'deploy'} and 'train' not in result
    out = tmp_path / 'never.json'
    msg = refusal('analyze_complexity', [DEMO, '--both', '--checkpoint',
                                         fused, '--out-json', str(out)])
    assert msg == (f'error: {fused} holds fused (deploy) weights: only the '
                   f'fused form can be measured with them (--deploy)')
    assert not out.exists()


# abbreviations ---------------------------------------------------------

#: Per tool: a valid command line with one long option abbreviated, and the
#: full option it abbreviates.
ABBREVIATED = {
    'train': ([DEMO, '--work', 'w'], '--work', '--work-dir'),
    'test': ([DEMO, 'c.pth', '--out-m', 'm.json'], '--out-m',
             '--out-metrics'),
    'reparam': ([DEMO, 'c.pth', '--ver'], '--ver', '--verify'),
    'export_onnx': ([DEMO, 'c.pth', '--out', 'm.onnx', '--dyn'], '--dyn',
                    '--dynamic'),
    'demo': (['--it', '3'], '--it', '--iters'),
    'model_table': (['--no-sp'], '--no-sp', '--no-speed'),
    'convert_checkpoint': (['a.pth', 'b.pth', '--family', 'repvgg',
                            '--backbone'], '--backbone', '--backbone-only'),
    'analyze_complexity': ([DEMO, '--lat', '2'], '--lat',
                           '--latency-iters'),
    'quantize': ([DEMO, 'c.pth', '--out', 'q.onnx', '--per-ch'], '--per-ch',
                 '--per-channel'),
}


def test_every_tool_has_an_abbreviation_case():
    assert set(ABBREVIATED) == set(TOOL_NAMES)


@pytest.mark.parametrize('tool', TOOL_NAMES)
def test_tools_refuse_abbreviated_options(tool, capsys):
    argv, short, full = ABBREVIATED[tool]
    assert full.startswith(short) and full != short
    # The full spelling is accepted ...
    load_tool(tool).parse_args([full if a == short else a for a in argv])
    # ... the abbreviation is an argparse error (exit status 2).
    with pytest.raises(SystemExit) as err:
        load_tool(tool).parse_args(argv)
    assert err.value.code == 2
    assert f'unrecognized arguments: {short}' in capsys.readouterr().err


def test_abbreviation_exits_2_as_a_user_runs_it():
    proc = subprocess.run(
        [sys.executable, osp.join('tools', 'analyze_complexity.py'), DEMO,
         '--dep'], cwd=REPO, capture_output=True, text=True,
        env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1].endswith(
        'error: unrecognized arguments: --dep')


# reparam does not overwrite --------------------------------------------

def test_reparam_refuses_to_replace_the_hook_file(city, tmp_path):
    ckpt = tmp_path / 'iter_4.pth'
    ckpt.write_bytes(open(city['ckpt'], 'rb').read())
    hook_file = tmp_path / 'iter_4_deploy.pth'
    hook_file.write_bytes(b'written by ReparamCheckpointHook')
    msg = refusal('reparam', [DEMO, str(ckpt)])
    assert msg == (f'error: {hook_file} already exists (the default output '
                   f'is also the name ReparamCheckpointHook writes); give '
                   f'--overwrite to replace, or --out another file')
    assert hook_file.read_bytes() == b'written by ReparamCheckpointHook'
    assert not (tmp_path / 'iter_4_deploy_config.py').exists()


def test_reparam_overwrite(city, tmp_path, capsys):
    out = tmp_path / 'fused.pth'
    config_out = tmp_path / 'fused_config.py'
    assert load_tool('reparam').main([DEMO, city['ckpt'], '--out',
                                      str(out)]) == 0
    # Only the deploy config left over: still refused, named.
    out.unlink()
    msg = refusal('reparam', [DEMO, city['ckpt'], '--out', str(out)])
    assert msg.startswith(f'error: {config_out} already exists (')
    assert not out.exists()
    out.write_bytes(b'old')
    msg = refusal('reparam', [DEMO, city['ckpt'], '--out', str(out)])
    assert msg.startswith(f'error: {out} and {config_out} already exist (')
    capsys.readouterr()
    assert load_tool('reparam').main([DEMO, city['ckpt'], '--out', str(out),
                                      '--overwrite']) == 0
    text = capsys.readouterr().out
    assert f'--overwrite: replacing {out}\n' in text
    assert f'--overwrite: replacing {config_out}\n' in text
    assert 'state_dict' in safe_load(str(out))


def test_reparam_writes_weights_and_config_whole_or_not_at_all(
        city, tmp_path, monkeypatch):
    """Both files go to temporary files first, then the config is renamed
    into place and the weights last: a failure at the last rename leaves
    neither new file and no temporary file; a failed write keeps the files
    that --overwrite would replace."""
    out, config_out = tmp_path / 'fused.pth', tmp_path / 'fused_config.py'
    real_replace, renamed = os.replace, []

    def failing_replace(src, dst, **kwargs):
        if osp.dirname(os.fspath(dst)) == str(tmp_path):
            renamed.append(osp.basename(dst))
            if len(renamed) == 2:
                raise OSError('rename failed (simulated)')
        return real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, 'replace', failing_replace)
    with pytest.raises(OSError, match='simulated'):
        load_tool('reparam').main([DEMO, city['ckpt'], '--out', str(out)])
    assert renamed == ['fused_config.py', 'fused.pth']
    assert os.listdir(tmp_path) == []
    monkeypatch.setattr(os, 'replace', real_replace)

    out.write_bytes(b'old weights')
    config_out.write_text('old config')

    def failing_save(obj, f, *args, **kwargs):
        with open(f, 'wb') as fh:
            fh.write(b'partial')
        raise OSError('disk full (simulated)')

    monkeypatch.setattr(torch, 'save', failing_save)
    with pytest.raises(OSError, match='disk full'):
        load_tool('reparam').main([DEMO, city['ckpt'], '--out', str(out),
                                   '--overwrite'])
    assert sorted(os.listdir(tmp_path)) == ['fused.pth', 'fused_config.py']
    assert out.read_bytes() == b'old weights'
    assert config_out.read_text() == 'old config'


#: Runs tools/reparam.py with every opening of a ``*_config.py`` file for
#: writing paused (after the opening), so that it can be killed there.
PAUSED_CONFIG_WRITE = '''
import builtins, os, sys, time
sys.path.insert(0, 'tests')
from tool_runner import load_tool
real_open = builtins.open
def open_and_pause(file, mode='r', *args, **kwargs):
    f = real_open(file, mode, *args, **kwargs)
    if 'w' in mode and '_config.py' in os.path.basename(str(file)):
        print('writing the config', flush=True)
        time.sleep(600)
    return f
builtins.open = open_and_pause
load_tool('reparam').main(sys.argv[1:])
'''


def test_reparam_killed_while_writing_the_config(city, tmp_path):
    """SIGKILL while the deploy config is written: no fused weights beside
    a truncated config (the weights are renamed into place last); only
    temporary files are left."""
    folder = tmp_path / 'out'
    folder.mkdir()
    out = folder / 'fused.pth'
    with open(tmp_path / 'stderr.txt', 'w') as err:
        proc = subprocess.Popen(
            [sys.executable, '-c', PAUSED_CONFIG_WRITE, DEMO, city['ckpt'],
             '--out', str(out)], cwd=REPO, stdout=subprocess.PIPE,
            stderr=err, text=True)
        try:
            line = proc.stdout.readline().strip()
        finally:
            proc.kill()
            proc.wait()
    assert line == 'writing the config', \
        (tmp_path / 'stderr.txt').read_text()[-3000:]
    left = sorted(os.listdir(folder))
    assert not out.exists() and not (folder / 'fused_config.py').exists()
    assert left and all(n.startswith('.') and n.endswith('.tmp')
                        for n in left), left


# --amp without a device ------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason='a CUDA device')
def test_amp_refused_without_a_device(tmp_path):
    work = tmp_path / 'work'
    proc = subprocess.run(
        [sys.executable, osp.join('tools', 'train.py'), DEMO, '--amp',
         '--work-dir', str(work)], cwd=REPO, capture_output=True,
        text=True, env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "error: --amp needs a CUDA, NPU, MLU or MUSA device and this machine "
        "has none (mmengine's AmpOptimWrapper does not run on the CPU)"]
    assert not work.exists()
    # The same for a config that asks for it itself.
    msg = refusal('train', [DEMO, '--work-dir', str(work), '--cfg-options',
                            'optim_wrapper.type=AmpOptimWrapper'])
    assert msg == ("error: the config's optim_wrapper (AmpOptimWrapper) "
                   'needs a CUDA, NPU, MLU or MUSA device and this machine '
                   "has none (mmengine's AmpOptimWrapper does not run on the "
                   'CPU)')
    assert not work.exists()


def test_fused_file_of_a_model_without_an_mmrep_backbone_evaluates(
        city, tmp_path):
    """The hook's fused file of mmseg's ResNet-18 UperNet (necks and heads
    folded, UPerHead in its deploy form; no mmrep module) evaluates through
    tools/test.py with the train-time config, as its training checkpoint
    does. The ``meta['deploy_config']`` it carries is never executed: the
    same config is made from the one given."""
    from mmrep.deploy import reparameterize_model
    config = tmp_path / 'upernet_r18.py'
    config.write_text(
        f'_base_ = [{DEMO!r}]\n'
        "model = dict(backbone=dict(_delete_=True, type='ResNetV1c', "
        "depth=18, num_stages=4, out_indices=(0, 1, 2, 3), "
        "norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False, "
        "style='pytorch', contract_dilation=True), "
        "decode_head=dict(in_channels=[64, 128, 256, 512]), "
        "auxiliary_head=dict(in_channels=256))\n")
    cfg = Config.fromfile(str(config))
    torch.manual_seed(0)
    model = randomize_bn(build(cfg)).eval()
    train, fused = str(tmp_path / 'iter_1.pth'), str(tmp_path / 'fused.pth')
    torch.save({'state_dict': model.state_dict()}, train)
    torch.save({'meta': {'deploy_config': make_deploy_config(cfg).pretty_text},
                'state_dict': reparameterize_model(model).state_dict()},
               fused)
    metrics = {}
    for name, ckpt in (('train', train), ('fused', fused)):
        mfile = str(tmp_path / f'{name}.json')
        load_tool('test').main([
            str(config), ckpt, '--work-dir', str(tmp_path / name),
            '--out-metrics', mfile,
            *seg_options(city['root'], f'r18_{name}')])
        metrics[name] = read_json(mfile)
    assert metrics['fused'] == pytest.approx(metrics['train'], abs=1e-6)


def test_mmsegs_own_test_tool_evaluates_an_mmrep_config(city, tmp_path):
    """mmsegmentation's tools/test.py (as its package ships it, under
    mmseg/.mim/tools) on the demo config: the config's custom_imports load
    mmrep, and the mIoU is the one mmrep's tools/test.py reports."""
    import re

    import mmseg
    script = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools',
                      'test.py')
    mfile = str(tmp_path / 'mmrep.json')
    load_tool('test').main([DEMO, city['ckpt'], '--work-dir',
                            str(tmp_path / 'mmrep'), '--out-metrics', mfile,
                            *seg_options(city['root'], 'by_mmrep')])
    ours = read_json(mfile)['mIoU']
    proc = run_tool(script, DEMO, city['ckpt'], '--work-dir',
                    str(tmp_path / 'mmseg'),
                    *seg_options(city['root'], 'by_mmseg'))
    found = re.findall(r'mIoU: ([0-9.]+)', proc.stdout)
    assert found, proc.stdout[-2000:]
    assert float(found[-1]) == pytest.approx(ours, abs=0.01)
