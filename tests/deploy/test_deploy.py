"""The deploy path: one walker (mmrep modules and the conv + BN pairs of
necks and heads), the on-save hook, tools/reparam.py, and fused models that
evaluate like the train-time ones."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope

import mmrep
from mmrep.deploy import make_deploy_config, reparameterize_model
from mmrep.deploy.heads import DeployUPerHead, conv3x3_of_resized
from mmrep.utils.testing import randomize_bn
from mmrep.utils import safe_load
from conftest import DEPTH_FIELDS, model_configs, shallow_backbone
from tool_runner import DEMO, REPO, run_tool

# Trains, exports, quantizes, fuzzes or starts processes: `make test-fast`
# leaves it out (the `slow` marker, pytest.ini).
pytestmark = pytest.mark.slow

ALL_CONFIGS = model_configs()
#: One Cityscapes or ADE20K config per backbone family, built at its full
#: depth by test_every_config_fuses_losslessly; it builds every other
#: config with at most TEST_DEPTH blocks per backbone stage (widths,
#: partitions, groups, necks and heads as configured: shallow_backbone).
FULL_DEPTH = frozenset({
    'upernet_repmlpnet-t224_8xb2-80k_cityscapes-512x1024.py',
    'upernet_repvgg-b1g2_8xb2-160k_ade20k-512x512.py',
    'fpn_cyclemlp-b1_8xb4-40k_ade20k-512x512.py',
    'pspnet_repmlp-res50-g4-8_8xb2-80k_cityscapes-512x1024.py',
})
TEST_DEPTH = 2


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


def norms_outside_backbone(model):
    """Names of the BatchNorm / SyncBatchNorm modules outside
    ``model.backbone``."""
    return [name for name, m in model.named_modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
            and not name.startswith('backbone.')]


def load_at_test_depth(config):
    """The config, its backbone cut to TEST_DEPTH blocks per stage unless
    the config is one of FULL_DEPTH."""
    cfg = Config.fromfile(config)
    if osp.basename(config) not in FULL_DEPTH:
        shallow_backbone(cfg, TEST_DEPTH)
    return cfg


def test_full_depth_configs_are_one_per_family():
    """Each FULL_DEPTH name is a config (Cityscapes or ADE20K), and their
    backbones are the families, one each."""
    names = {osp.basename(c): c for c in ALL_CONFIGS}
    for name in sorted(FULL_DEPTH):
        assert name in names, f'{name} is not in configs/'
        assert osp.basename(osp.dirname(names[name])) in ('cityscapes',
                                                          'ade20k'), name
    families = sorted(Config.fromfile(names[n]).model.backbone.type
                      for n in FULL_DEPTH)
    assert families == sorted(f'mmrep.{f}' for f in DEPTH_FIELDS)


def test_shallow_backbone_caps_each_stage_and_keeps_the_groups():
    """RepVGG-B1g2 (4, 6, 16, 1 blocks, even blocks grouped) at 2 blocks
    per stage: 2, 2, 2, 1 blocks, each kept block grouped as it was; the
    baselines' plain ResNet is left as it is."""
    from mmrep.models.backbones import RepVGG
    config = [c for c in ALL_CONFIGS if osp.basename(c) ==
              'upernet_repvgg-b1g2_8xb2-160k_ade20k-512x512.py'][0]
    full = RepVGG.parse_arch(Config.fromfile(config).model.backbone.arch)
    arch = shallow_backbone(Config.fromfile(config), 2).model.backbone.arch
    assert tuple(full['num_blocks']) == (4, 6, 16, 1)
    assert tuple(arch['num_blocks']) == (2, 2, 2, 1)
    starts = [0, 4, 10, 26]  # the first block of each stage, full depth
    old = [starts[i] + j + 1 for i, n in enumerate((2, 2, 2, 1))
           for j in range(n)]
    assert dict(arch['group_layer_map']) == {
        new: full['group_layer_map'][was]
        for new, was in enumerate(old, 1)
        if was in full['group_layer_map']}
    assert set(arch['group_layer_map'].values()) == {2}
    baseline = [c for c in ALL_CONFIGS if 'r50-d8' in osp.basename(c)][0]
    assert shallow_backbone(Config.fromfile(baseline), 2).model.backbone == \
        Config.fromfile(baseline).model.backbone


#: The configs of mmseg's own backbones, kept for comparison.
BASELINES = ('pspnet_r50-d8_', 'demo_upernet_r18-v1c_')


@pytest.mark.parametrize('config', ALL_CONFIGS, ids=osp.basename)
def test_every_config_fuses_losslessly(config):
    cfg = load_at_test_depth(config)
    # (mmseg's EncoderDecoder writes `pretrained` into the dict it builds)
    model = randomize_bn(build(load_at_test_depth(config))).eval()
    heads_had_norms = bool(norms_outside_backbone(model))
    fused = reparameterize_model(model)
    assert fused is not model
    assert not any(getattr(m, 'deploy', False) for m in model.modules())
    # The live model keeps its norms; the fused one has none outside the
    # backbone (Cityscapes heads: SyncBN ConvModules, all folded).
    assert bool(norms_outside_backbone(model)) == heads_had_norms
    assert norms_outside_backbone(fused) == []
    if 'cityscapes' in config:
        assert heads_had_norms
    # Baseline configs kept for comparison (plain ResNet): only their heads
    # are folded, the backbone is left as it is.
    has_mmrep = any(type(m).__module__.startswith('mmrep.')
                    for m in model.modules())
    assert has_mmrep or osp.basename(config).startswith(BASELINES)
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
    deployed = build(make_deploy_config(cfg))
    deployed.load_state_dict(fused.state_dict(), strict=True)
    assert norms_outside_backbone(deployed) == []
    # mmseg's UPerHead in its deploy form, in the fused model and the
    # deploy config's alike.
    head = cfg.model.get('decode_head')
    if head is not None:
        uper = head['type'] in ('UPerHead', 'mmseg.UPerHead')
        assert (type(fused.decode_head) is DeployUPerHead) == uper
        assert type(deployed.decode_head) is type(fused.decode_head)


@pytest.mark.parametrize('align_corners', [False, True])
def test_deploy_uperhead_equals_mmseg_uperhead(align_corners):
    """The deploy head gives mmseg's outputs; with ``align_corners=True``,
    which its form does not cover, it runs as mmseg's."""
    from mmseg.models.decode_heads import UPerHead
    torch.manual_seed(0)
    head = UPerHead(in_channels=[4, 6, 8, 8], channels=8, num_classes=3,
                    in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3),
                    align_corners=align_corners).eval()
    inputs = [torch.randn(2, c, 23 // 2**i + 1, 37 // 2**i + 1)
              for i, c in enumerate([4, 6, 8, 8])]
    with torch.no_grad():
        ref = head(inputs)
        fused = reparameterize_model(head)
        assert type(fused) is DeployUPerHead
        assert fused._decomposable() == (not align_corners)
        out = fused(inputs)
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()


@pytest.mark.parametrize('size', [(9, 13), (10, 14), (17, 29), (5, 7),
                                  (3, 4), (1, 1)])
def test_conv_of_a_resized_map_at_its_own_resolution(size):
    """UPerHead's deploy form: a 3x3 convolution of a bilinearly resized map
    (up, down, by non-integer factors, to one pixel), computed at the map's
    resolution, equals the convolution of the resized map."""
    torch.manual_seed(0)
    x, weight = torch.randn(2, 8, 5, 7), torch.randn(4, 8, 3, 3)
    ref = torch.nn.functional.conv2d(torch.nn.functional.interpolate(
        x, size=size, mode='bilinear', align_corners=False), weight,
        padding=1)
    out = conv3x3_of_resized(x, weight, size)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_only_bn_right_after_a_conv_is_folded():
    from mmcv.cnn import ConvModule
    model = torch.nn.Module()
    model.neck = torch.nn.Sequential(
        ConvModule(3, 4, 3, padding=1, norm_cfg=dict(type='BN')),
        ConvModule(4, 4, 1, norm_cfg=dict(type='BN'),
                   order=('norm', 'conv', 'act')),  # BN before the conv
        ConvModule(4, 4, 1, norm_cfg=dict(type='GN', num_groups=2)))
    model.backbone = ConvModule(3, 3, 1, norm_cfg=dict(type='BN'))
    randomize_bn(model).eval()
    model.neck.append(ConvModule(  # batch statistics: no running ones
        4, 4, 1, norm_cfg=dict(type='BN', track_running_stats=False)))
    model.eval()
    x = torch.randn(2, 3, 9, 11)
    fused = reparameterize_model(model)
    first = fused.neck[0]
    assert not first.with_norm and first.conv.bias is not None
    assert not hasattr(first, 'bn')
    assert set(first.state_dict()) == set(ConvModule(
        3, 4, 3, padding=1, norm_cfg=None).state_dict())
    for kept in (fused.neck[1], fused.neck[2], fused.neck[3],
                 fused.backbone):
        assert kept.with_norm and kept.norm is not None
    with torch.no_grad():
        ref, out = model.neck(x), fused.neck(x)
    assert (ref - out).abs().max() <= 1e-5 * ref.abs().max()
    assert model.neck[0].with_norm  # the live model is not touched


def killed_write(path):
    """Start writing ``path`` through ``atomic_write`` in another process
    and SIGKILL that process midway.

    Returns:
        list[str]: the files the killed write left beside ``path``.
    """
    code = ('import sys, time\n'
            'from mmrep.utils.fileio import atomic_write\n'
            'def write(tmp):\n'
            '    open(tmp, "wb").write(b"partial")\n'
            '    print("writing", flush=True)\n'
            '    time.sleep(600)\n'
            'atomic_write(sys.argv[1], write)\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO, os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.Popen([sys.executable, '-c', code, path], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == 'writing'
    proc.kill()
    proc.wait()
    folder = osp.dirname(path)
    return sorted(osp.join(folder, f) for f in os.listdir(folder))


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A 3-iteration demo training with the hook; checkpoints every
    iteration, the last 2 kept. Its work dir already holds the temporary
    file of a deploy-file write killed by SIGKILL, and another hidden
    ``.tmp`` file that is not the hook's."""
    from mmrep.datasets import make_cityscapes_like
    tmp = tmp_path_factory.mktemp('deploy')
    data = make_cityscapes_like(str(tmp / 'data'), num_train=4, num_val=2)
    work = str(tmp / 'work')
    os.makedirs(work)
    stale = killed_write(osp.join(work, 'iter_7_deploy.pth'))
    assert len(stale) == 1 and osp.basename(stale[0]).startswith(
        '.iter_7_deploy.pth.') and stale[0].endswith('.tmp')
    other = osp.join(work, '.notes.tmp')
    open(other, 'w').close()
    opts = ['--cfg-options', f'train_dataloader.dataset.data_root={data}',
            f'val_dataloader.dataset.data_root={data}',
            f'test_dataloader.dataset.data_root={data}',
            'train_dataloader.batch_size=2', 'train_cfg.max_iters=3',
            'train_cfg.val_interval=3', 'default_hooks.checkpoint.interval=1',
            'default_hooks.checkpoint.max_keep_ckpts=2']
    out = run_tool('tools/train.py', DEMO, '--work-dir', work, *opts).stdout
    return dict(work=work, opts=opts, log=out, data=data, stale=stale[0],
                other=other)


def test_hook_removes_temporaries_of_a_killed_write(trained):
    assert f'ReparamCheckpointHook: removed {trained["stale"]}, left by an ' \
        f'interrupted write' in trained['log']
    assert not osp.exists(trained['stale'])
    assert osp.exists(trained['other'])  # not the hook's


def test_deploy_files_get_the_mode_of_a_plain_write(trained, tmp_path):
    """Not the temporary file's 0600: mmengine's checkpoints' mode."""
    from mmrep.utils import atomic_save
    work = trained['work']
    for it in (2, 3):
        mode = os.stat(osp.join(work, f'iter_{it}_deploy.pth')).st_mode
        assert mode == os.stat(osp.join(work, f'iter_{it}.pth')).st_mode
    umask = os.umask(0o027)
    try:
        atomic_save({'x': torch.zeros(1)}, str(tmp_path / 'new.pth'))
        assert os.stat(tmp_path / 'new.pth').st_mode & 0o777 == 0o640
        os.chmod(tmp_path / 'new.pth', 0o604)  # a rewrite keeps the mode
        atomic_save({'x': torch.ones(1)}, str(tmp_path / 'new.pth'))
        assert os.stat(tmp_path / 'new.pth').st_mode & 0o777 == 0o604
    finally:
        os.umask(umask)


def test_hook_writes_fused_weights_beside_each_checkpoint(trained):
    work = trained['work']
    assert 'ReparamCheckpointHook: fused weights saved to' in trained['log']
    # max_keep_ckpts=2: iter_1 and its deploy file are gone.
    assert not osp.exists(osp.join(work, 'iter_1.pth'))
    assert not osp.exists(osp.join(work, 'iter_1_deploy.pth'))
    for it in (2, 3):
        path = osp.join(work, f'iter_{it}_deploy.pth')
        saved = safe_load(path)
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

    import mmrep.utils.fileio as fileio  # the hook writes through it
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

    monkeypatch.setattr(fileio.torch, 'save', flaky_save)
    runner = Runner.from_cfg(cfg)
    first = osp.join(str(tmp_path), 'iter_1_deploy.pth')
    runner.train()  # does not raise
    assert runner.iter == 2
    assert osp.isfile(osp.join(str(tmp_path), 'iter_2.pth'))
    assert not osp.exists(osp.join(str(tmp_path), 'iter_2_deploy.pth'))
    monkeypatch.setattr(fileio.torch, 'save', real_save)
    safe_load(first)  # intact
    assert not glob.glob(osp.join(str(tmp_path), '.*.tmp'))
    log = open(glob.glob(osp.join(str(tmp_path), '*', '*.log'))[0]).read()
    assert 'could not write' in log and 'disk full (simulated)' in log


def evaluate(config, weights, trained, folder, *extra):
    """``tools/test.py`` on the trained run's data.

    Returns:
        tuple[dict, str]: the metrics and the tool's output.
    """
    mfile = osp.join(folder, 'metrics.json')
    proc = run_tool('tools/test.py', config, weights, '--work-dir', folder,
                    '--out-metrics', mfile, *extra, *trained['opts'])
    with open(mfile) as f:
        return json.load(f), proc.stdout


def assert_same_metrics(a, b):
    """The same metrics, every value to 1e-4."""
    assert a.keys() == b.keys() and a, (a, b)
    for key, value in b.items():
        if isinstance(value, float):
            assert abs(a[key] - value) <= 1e-4, (key, a[key], value)


@pytest.fixture(scope='module')
def train_metrics(trained, tmp_path_factory):
    """The train-time checkpoint's metrics, predictions drawn with
    ``--show-dir``."""
    folder = tmp_path_factory.mktemp('train_eval')
    show = str(folder / 'show')
    metrics, log = evaluate(DEMO, osp.join(trained['work'], 'iter_3.pth'),
                            trained, str(folder / 'work'), '--show-dir', show)
    return dict(metrics=metrics, log=log, show=show)


def test_show_dir_draws_predictions(trained, train_metrics):
    """Every test image, in mmseg's layout (the visualizer's
    LocalVisBackend under DIR)."""
    images = glob.glob(osp.join(trained['data'], 'leftImg8bit', 'val', '*',
                                '*.png'))
    drawn = glob.glob(osp.join(train_metrics['show'], 'vis_data',
                               'vis_image', '*.png'))
    assert len(drawn) == len(images) > 0, os.listdir(train_metrics['show'])


def test_test_tool_evaluates_the_hooks_fused_file(trained, train_metrics,
                                                  tmp_path):
    """Given the training config, the hook's ``iter_3_deploy.pth`` is
    evaluated with the fused model, and scores as the checkpoint does."""
    fused = osp.join(trained['work'], 'iter_3_deploy.pth')
    metrics, log = evaluate(DEMO, fused, trained, str(tmp_path))
    assert f'{fused} holds fused (deploy) weights: evaluating {DEMO} with ' \
        f'its mmrep modules in deploy form' in log
    assert f'evaluating {osp.join(trained["work"], "iter_3.pth")} with ' \
        f'the model as configured' in train_metrics['log']
    assert_same_metrics(metrics, train_metrics['metrics'])


def test_reparam_tool_and_deploy_evaluation(trained, train_metrics,
                                            tmp_path):
    work = trained['work']
    ckpt = osp.join(work, 'iter_3.pth')
    out = str(tmp_path / 'fused.pth')
    proc = run_tool('tools/reparam.py', DEMO, ckpt, '--out', out, '--verify')
    assert 'max rel diff' in proc.stdout
    deploy_cfg = str(tmp_path / 'fused_config.py')
    assert osp.isfile(out) and osp.isfile(deploy_cfg)
    fused = safe_load(out)
    assert not any('.bn.' in k for k in fused['state_dict'])
    assert 'decode_head.fpn_bottleneck.conv.bias' in fused['state_dict']
    deploy_head = Config.fromfile(deploy_cfg).model.decode_head
    assert deploy_head.norm_cfg is None
    assert deploy_head.type == 'mmrep.DeployUPerHead'

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
    metrics, _ = evaluate(deploy_cfg, out, trained, str(tmp_path / 'deploy'))
    assert_same_metrics(metrics, train_metrics['metrics'])


def same_metrics(tmp_path, train, deploy, opts):
    """Evaluate ``(config, checkpoint)`` pairs through tools/test.py; the
    deploy weights must load without a key mismatch and give the train-time
    metrics to 1e-4.

    Returns:
        dict: the train-time metrics.
    """
    metrics = {}
    for name, (config, weights) in (('train', train), ('deploy', deploy)):
        mfile = str(tmp_path / f'{name}.json')
        log = run_tool('tools/test.py', config, weights, '--work-dir',
                       str(tmp_path / name), '--out-metrics', mfile,
                       *opts).stdout
        assert 'do not match exactly' not in log, log[-3000:]
        with open(mfile) as f:
            metrics[name] = json.load(f)
    assert_same_metrics(metrics['deploy'], metrics['train'])
    return metrics['train']


def test_coco_demo_detector_deploys_with_the_same_metric(tmp_path):
    """The COCO demo RetinaNet with BN in its head (random statistics):
    tools/reparam.py folds them, and tools/test.py gives the same
    CocoMetric from the deploy config and weights."""
    from test_coco_e2e import DEMO as COCO_DEMO
    from test_coco_e2e import coco_options

    from mmrep.datasets import make_coco_like
    data = make_coco_like(str(tmp_path / 'coco'), num_train=2, num_val=2,
                          size=(128, 128), seed=1)
    opts = coco_options(data, 1)
    cfg = Config.fromfile(COCO_DEMO)
    cfg.model.bbox_head.norm_cfg = dict(type='BN')
    config = str(tmp_path / 'bn_head.py')
    cfg.dump(config)
    model = randomize_bn(build(cfg), seed=1)
    ckpt = str(tmp_path / 'model.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    out = str(tmp_path / 'fused.pth')
    run_tool('tools/reparam.py', config, ckpt, '--out', out, '--verify')
    fused = safe_load(out)
    assert not any('.bn.' in k for k in fused['state_dict'])
    assert 'bbox_head.cls_convs.0.conv.bias' in fused['state_dict']
    metrics = same_metrics(tmp_path, (config, ckpt),
                           (str(tmp_path / 'fused_config.py'), out), opts)
    assert 'coco/bbox_mAP' in metrics
