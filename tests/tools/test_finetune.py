"""Fine-tuning from ``load_from``: the demo segmentor and the COCO demo
detector, trained briefly, start a run with another number of classes from
their checkpoint through ``tools/train.py``. Every tensor that fits loads,
the new-class head tensors keep their initialization and the loading line
names them with the reason; fused weights and a file of which fewer than
half of the backbone's tensors fit are refused in one line, before
anything is created."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope
from test_coco_e2e import DEMO as COCO_DEMO
from test_coco_e2e import coco_options
from tool_runner import DEMO, load_tool, main_or_error

import mmrep  # noqa: F401
from mmrep.apis import build_runner, preflight_train
from mmrep.checkpoints import describe_mismatch
from mmrep.utils import safe_load

SEG_HEADS = ['decode_head.conv_seg.weight', 'decode_head.conv_seg.bias',
             'auxiliary_head.conv_seg.weight',
             'auxiliary_head.conv_seg.bias']
DET_HEADS = ['bbox_head.retina_cls.weight', 'bbox_head.retina_cls.bias']
TWENTY = ['model.decode_head.num_classes=20',
          'model.auxiliary_head.num_classes=20']


# Tiny models: one thread is as fast, and far faster on a busy machine.
# Trains, exports, quantizes, fuzzes or starts processes: `make test-fast`
# leaves it out (the `slow` marker, pytest.ini).
pytestmark = [pytest.mark.slow,
              pytest.mark.usefixtures('one_torch_thread')]


def seg_options(root, iters, name):
    return ['--cfg-options', f'train_dataloader.dataset.data_root={root}',
            f'val_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}',
            'train_dataloader.batch_size=2', f'train_cfg.max_iters={iters}',
            f'train_cfg.val_interval={iters}',
            f'default_hooks.checkpoint.interval={iters}',
            'default_hooks.logger.interval=1', f'experiment_name={name}']


def train(config, work, options):
    """``tools/train.py`` in this process; returns its log."""
    assert load_tool('train').main([config, '--work-dir', work,
                                    *options]) is None
    log, = glob.glob(osp.join(work, '*', '*.log'))
    with open(log) as f:
        return f.read()


def weights(path):
    return safe_load(path)['state_dict']


@pytest.fixture(scope='module')
def seg_run(tmp_path_factory):
    """The demo segmentor trained for 2 iterations (19 classes); its
    ``iter_2.pth`` and the deploy hook's ``iter_2_deploy.pth``."""
    from mmrep.datasets import make_cityscapes_like
    tmp = tmp_path_factory.mktemp('seg')
    data = make_cityscapes_like(str(tmp / 'data'), num_train=4, num_val=1)
    work = str(tmp / 'work')
    train(DEMO, work, seg_options(data, 2, 'finetune_seg_source'))
    return dict(data=data, ckpt=osp.join(work, 'iter_2.pth'),
                fused=osp.join(work, 'iter_2_deploy.pth'))


def renamed(options, name):
    """``options`` with another ``experiment_name``: mmengine keys its
    logger and visualizer on it."""
    return [o for o in options if not o.startswith('experiment_name=')] + \
        [f'experiment_name={name}']


def config_with(config, options):
    """``config`` with ``--cfg-options`` items applied, as the tools do."""
    cfg = Config.fromfile(config)
    cfg.merge_from_dict({k: DictAction._parse_iterable(v) for k, v in (
        o.split('=', 1) for o in options if o != '--cfg-options')})
    return cfg


def expected_report(cfg, path, heads):
    """The loading line for ``path`` into ``cfg``'s model, whose ``heads``
    do not fit."""
    init_default_scope(cfg.default_scope)
    from mmengine.registry import MODELS
    model = MODELS.build(cfg.model)
    expected = model.state_dict()
    state = weights(path)
    n = len(expected)
    return (f'{type(model).__name__}: loaded {n - len(heads)} of {n} tensors'
            f' from {path}; {len(heads)} kept their initialization: '
            f'{heads[:4]} ({describe_mismatch(state, expected, limit=4)})')


def check_loading(cfg, work, path, heads):
    """Build the run's runner in this process and load ``load_from`` as
    its training does (after ``init_weights``): every tensor but ``heads``
    equals the checkpoint's, ``heads`` keep their initialization."""
    cfg.work_dir = work
    notes = preflight_train(cfg, 'the config')
    assert notes == [f'load_from {path} does not fit the model exactly: '
                     f'fine-tuning from the {len(weights(path)) - len(heads)}'
                     f' of its tensors that fit (mmrep.LoadFittingWeightsHook;'
                     f' the others keep their initialization)']
    assert dict(type='mmrep.LoadFittingWeightsHook') in cfg.custom_hooks
    runner = build_runner(cfg)
    runner.model.init_weights()
    before = {k: v.clone() for k, v in runner.model.state_dict().items()}
    runner.load_checkpoint(path)
    after, saved = runner.model.state_dict(), weights(path)
    assert set(after) - set(heads) == set(saved) - set(heads)
    for key, value in after.items():
        if key in heads:
            assert value.shape != saved[key].shape
            assert torch.equal(value, before[key]), key
        else:
            assert torch.equal(value, saved[key]), key
    backbone = [k for k in after if k.startswith('backbone.')]
    assert backbone and not set(backbone) & set(heads)


def test_segmentor_fine_tunes_with_another_class_count(seg_run, tmp_path):
    ckpt = seg_run['ckpt']
    options = seg_options(seg_run['data'], 1, 'finetune_seg') + [
        f'load_from={ckpt}', *TWENTY]
    work = str(tmp_path / 'work')
    log = train(DEMO, work, options)
    assert expected_report(config_with(DEMO, options), ckpt,
                           SEG_HEADS) in log
    assert "'decode_head.conv_seg.weight: checkpoint (19, 64, 1, 1) vs " \
        "model (20, 64, 1, 1)'" in log
    assert 'do not match exactly' not in log  # nothing left to mmengine
    tuned = weights(osp.join(work, 'iter_1.pth'))
    assert tuned['decode_head.conv_seg.weight'].shape == (20, 64, 1, 1)
    assert tuned['auxiliary_head.conv_seg.bias'].shape == (20, )

    cfg = config_with(DEMO, renamed(options, 'finetune_seg_load'))
    check_loading(cfg, str(tmp_path / 'load'), ckpt, SEG_HEADS)


def test_detector_fine_tunes_with_another_class_count(tmp_path):
    from mmrep.datasets import make_coco_like
    data = make_coco_like(str(tmp_path / 'coco'), num_train=2, num_val=1,
                          size=(64, 64), seed=2)
    source = str(tmp_path / 'source')
    train(COCO_DEMO, source, coco_options(data, 1) + [
        'train_cfg.val_begin=2', 'experiment_name=finetune_det_source'])
    ckpt = osp.join(source, 'iter_1.pth')
    # No validation: the generated set has 3 of the 5 classes.
    options = coco_options(data, 1) + [
        f'load_from={ckpt}', 'model.bbox_head.num_classes=5',
        'train_cfg.val_begin=2', 'experiment_name=finetune_det']
    work = str(tmp_path / 'work')
    log = train(COCO_DEMO, work, options)
    assert expected_report(config_with(COCO_DEMO, options), ckpt,
                           DET_HEADS) in log
    assert "'bbox_head.retina_cls.weight: checkpoint (27, 32, 3, 3) vs " \
        "model (45, 32, 3, 3)'" in log
    tuned = weights(osp.join(work, 'iter_1.pth'))
    assert tuned['bbox_head.retina_cls.weight'].shape == (45, 32, 3, 3)

    cfg = config_with(COCO_DEMO, renamed(options, 'finetune_det_load'))
    check_loading(cfg, str(tmp_path / 'load'), ckpt, DET_HEADS)


@pytest.mark.parametrize('classes', [19, 20])
def test_fused_weights_are_refused(seg_run, tmp_path, classes):
    path, work = seg_run['fused'], tmp_path / 'work'
    extra = TWENTY if classes == 20 else []
    msg = main_or_error('train', [
        DEMO, '--work-dir', str(work),
        *seg_options(seg_run['data'], 1, 'refused'), f'load_from={path}',
        *extra])
    assert msg == (f'error: {path} holds fused (deploy) weights, which '
                   f'training cannot start from; give the train-time '
                   f'checkpoint they were fused from')
    assert not work.exists()


def test_a_mostly_foreign_file_is_refused(seg_run, tmp_path):
    """Fewer than half of the backbone's tensors fit: refused, naming the
    keys; just half of them: fine-tuned from."""
    saved = weights(seg_run['ckpt'])
    backbone = [k for k in saved if k.startswith('backbone.')]
    heads = {k: v for k, v in saved.items() if k not in backbone}
    kept = len(backbone) // 2 - 1
    state = {**heads, **{k: saved[k] for k in backbone[:kept]},
             **{'encoder.' + k[len('backbone.'):]: saved[k]
                for k in backbone[kept:]}}
    path, work = str(tmp_path / 'foreign.pth'), tmp_path / 'work'
    torch.save({'state_dict': state}, path)
    options = seg_options(seg_run['data'], 1, 'foreign')
    msg = main_or_error('train', [DEMO, '--work-dir', str(work), *options,
                                  f'load_from={path}'])
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    expected = MODELS.build(Config.fromfile(DEMO).model).state_dict()
    assert msg == (f'error: {path} does not fit the model as configured: '
                   f'{describe_mismatch(state, expected, limit=3)}; only '
                   f'{kept} of {len(backbone)} backbone tensors are in the '
                   f'checkpoint (fewer than half: a checkpoint of another '
                   f'model, or keys under another prefix?)')
    assert msg.startswith(f'error: {path} does not fit the model as '
                          f'configured: missing keys ({len(backbone) - kept})'
                          f": ['backbone.")
    assert not work.exists()

    half = len(backbone) - len(backbone) // 2  # half or more: fine-tuned
    state = {**heads, **{k: saved[k] for k in backbone[:half]}}
    torch.save({'state_dict': state}, path)
    cfg = config_with(DEMO, options[1:] + [f'load_from={path}'])
    assert preflight_train(cfg, DEMO)
    assert dict(type='mmrep.LoadFittingWeightsHook') in cfg.custom_hooks
