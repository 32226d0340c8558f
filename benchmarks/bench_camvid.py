"""CamVid benchmark: every family trained from scratch on real data, under
the same wall-clock budget, then tested, fused and quantized.

Models (``configs/camvid``; all UperNet, 192x256 crops, batch 8, CPU):
RepMLPNet, RepVGG, QARepVGG, CycleMLP, RepMLP-Res50 (mmrep backbones) and
mmseg's own ResNetV1c-18 as the baseline, same head, same crop, same
schedule shape, no pretrained weights.

For each model and seed (each step a fresh process of the project's tools,
so that no two models share a process):

1. speed probe: ``tools/train.py`` for ``--probe-iters`` iterations; the
   mean seconds per iteration after the first two (and the first two's
   extra time, spent once) give the first estimate of ``max_iters``: the
   iterations (data loading, forward, backward, update and the hooks
   around them) that fill ``--minutes``. It places the warm-up and the
   validations.
2. training: ``tools/train.py`` with ``--cfg-options``: that
   ``max_iters``, the ``param_scheduler`` begins and ends rescaled from
   the config's ``max_iters`` to it (LinearLR warm-up + PolyLR keep their
   proportions), ``randomness.seed``, ``--val-points`` evaluations of the
   val split, and the config's ``IterTimerHook`` replaced by
   :class:`BenchTimerHook`: it records the training seconds at each
   evaluation (the learning curve, and the images per second of
   training), sets the torch threads, and stops the training when
   ``--minutes`` of training seconds are spent, moving ``max_iters`` and
   the PolyLR end after each iteration (:func:`fit_budget`), so that every
   model trains for the same wall time whatever the probe measured.
   Validation, checkpoint saving and testing are not counted in the budget
   (the training seconds actually spent are reported: column
   ``train min``). Run the benchmark on an otherwise idle machine: what
   else runs takes iterations from the models.
3. test split: ``tools/test.py --out DIR --out-metrics FILE`` on the final
   checkpoint (mmseg's ``IoUMetric``); the per-class IoU is recomputed
   from the written label maps with ``IoUMetric``'s own functions and
   checked against its mIoU.
4. INT8: ``tools/quantize.py`` (:func:`mmrep.apis.quantize.quantize_config`)
   on the fused weights that the checkpoint hook wrote
   (``*_deploy.pth``), quantizing the operators of ``--int8-op-types``
   (default :data:`INT8_OP_TYPES`), with ``--auto-keep-float K`` (the K
   nodes INT8 hurts most stay float32; default 3: with 0, RepVGG and
   QARepVGG lost 4 to 7 test mIoU through their first convolutions):
   latency of the fused eager model, the float32
   ONNX graph and the INT8 (QDQ) graph at batch 1 and the size of the test
   frames that the mIoU is measured on (the test pipeline's ``Resize``
   scale; ``--latency-shape H W`` sets another), ``--threads`` threads,
   median of interleaved rounds; test mIoU of the float32 ONNX and INT8
   graphs, and the drop.

Each model and seed gets one JSON in ``--work-dir``
(``<model>_seed<seed>.json``; runs, logs, checkpoints and label maps under
``<work-dir>/runs``). From all the JSONs there the script writes the
tables (mean +- std over seeds), the per-class IoU table, the learning
curves (``benchmarks/camvid_curves.png``: val mIoU against training wall
time, one line per model, thin lines per seed) and a grid of test images
with ground truth and each model's prediction
(``benchmarks/camvid_predictions.png``, from the test label maps of each
model's first seed), into ``benchmarks/README.md`` and ``README.md``
between ``<!-- camvid-bench:start -->`` and ``<!-- camvid-bench:end -->``
(``benchmarks/README.md`` gets the section and its heading when missing;
``README.md`` is left alone, with a warning, when it has no markers).
With ``--no-readme`` nothing outside the work dir is written: the tables
are printed and the pictures go into the work dir. A later run with
``--only`` replaces the JSONs of the models it runs and reports every
model of the work dir.

Cost beyond the budget, per model and seed (2-core machine, one thread,
shared): about 40 s of probe, 40 s per val evaluation (101 images),
2 min of test (233 images), 4-10 min of INT8 (the sensitivity pass of
``--auto-keep-float``, 2-6 min of it, then evaluating the float32 and
INT8 ONNX graphs on the test split); ``--no-int8`` skips the last, and a
later ``--int8-only`` run does it for the runs of the work dir (e.g.
train every seed with ``--no-int8``, then quantize one seed's models).

Usage::

    python benchmarks/bench_camvid.py --data data/camvid --minutes 20
        --threads 2 --seeds 0 1 2 [--work-dir work_dirs/bench_camvid]
        [--only NAME ...] [--from-results] [--no-readme]
        [--val-points 6] [--probe-iters 8] [--auto-keep-float 3]
        [--int8-op-types OP ...] [--calib-batches 8] [--latency-runs 5]
        [--latency-shape H W]
        [--no-int8 | --int8-only] [--config NAME=CONFIG ...]

``--from-results`` rebuilds the tables and pictures from the JSONs of the
work dir without training (``--data`` is then not needed).
``--config NAME=CONFIG`` runs a model from another config (same data
layout rules: every ``data_prefix`` of its dataloaders must exist under
``--data``). A training that fails is reported and the next one runs; the
exit status is then 1.
"""
import argparse
import json
import math
import os
import os.path as osp
import shutil
import statistics
import subprocess
import sys
import time
import warnings

from mmengine.hooks import IterTimerHook

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BENCH = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, BENCH)

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

CONFIG_DIR = osp.join('configs', 'camvid')
#: name -> config (relative to the repository), in table order.
MODELS = {
    'RepMLPNet': 'demo_upernet_repmlpnet-tiny_1xb8-cpu_camvid-192x256.py',
    'RepVGG': 'demo_upernet_repvgg-tiny_1xb8-cpu_camvid-192x256.py',
    'QARepVGG': 'demo_upernet_qarepvgg-tiny_1xb8-cpu_camvid-192x256.py',
    'CycleMLP': 'demo_upernet_cyclemlp-tiny_1xb8-cpu_camvid-192x256.py',
    'RepMLP-Res50':
    'demo_upernet_repmlp-res50-tiny_1xb8-cpu_camvid-192x256.py',
    'ResNetV1c-18': 'demo_upernet_r18-v1c_1xb8-cpu_camvid-192x256.py',
}
MODELS = {name: osp.join(CONFIG_DIR, cfg) for name, cfg in MODELS.items()}
#: What the tables read from every run's JSON.
RUN_KEYS = {'model', 'seed', 'config', 'checkpoint', 'crop', 'splits',
            'batch_size', 'threads', 'minutes', 'probe', 'machine',
            'int8_flags', 'iters', 'train_seconds', 'train_img_per_s',
            'curve', 'val', 'test', 'test_class_iou', 'classes', 'palette',
            'examples', 'pred_dir', 'params'}
#: The model the others are compared with (mmseg's own backbone).
BASELINE = 'ResNetV1c-18'

SECTION = 'camvid-bench'
HEADING = '## CamVid: every family trained from scratch'
README_TOP = osp.join(ROOT, 'README.md')
README_BENCH = osp.join(BENCH, 'README.md')
CURVES = 'camvid_curves.png'
PREDICTIONS = 'camvid_predictions.png'
TIMING = 'bench_timing.json'
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
#: Test images in the prediction grid.
GRID_ROWS = 4
#: ONNX operators the INT8 step quantizes: tools/quantize.py's default
#: (Conv, MatMul, Gemm) and the head's Concat and Resize and the residual
#: Add, which then stay INT8 between the convolutions instead of going
#: through a dequantize / quantize pair each.
INT8_OP_TYPES = ('Conv', 'MatMul', 'Gemm', 'Concat', 'Resize', 'Add')
#: The paragraph above the section's markers when it is added.
USAGE = (
    '`python benchmarks/bench_camvid.py --data data/camvid --minutes M '
    '--threads T --seeds 0 1 2 [--only NAME ...] [--from-results] '
    '[--no-readme] [--no-int8 | --int8-only] [--auto-keep-float K] '
    '[--int8-op-types OP ...] [--runtimes RT ...]` trains each model of '
    '`configs/camvid/demo_upernet_*` from scratch for the same wall-clock '
    'budget (training stops when it is spent), tests it, fuses and quantizes '
    'it, and writes the tables below, the learning curves and the '
    'prediction grid (the script\'s docstring says how each number is '
    'taken). `--no-int8` trains and tests only; a later `--int8-only` '
    'quantizes the runs already in the work dir.')


class BenchTimerHook(IterTimerHook):
    """``IterTimerHook`` that also records the training wall time.

    The training seconds are the time of the training iterations (data
    loading, forward, backward, optimizer step and the hooks around them);
    validation and what follows it (metrics, logging) are not counted. At
    each validation the hook appends ``iter``, ``train_seconds`` and the
    metrics to its curve, and writes ``iter_seconds``, ``train_seconds``,
    ``iters`` and ``curve`` into ``<work_dir>/bench_timing.json``.

    With ``budget_s``, the training stops once those training seconds are
    spent: after each iteration the hook moves the loop's ``max_iters``
    (and the end of each parameter scheduler that ends there, e.g. PolyLR,
    which then decays to its ``eta_min`` at the new end) to the iterations
    that the mean time of the last :attr:`RECENT` iterations still fits
    into the budget. The config's ``max_iters`` is then only the first
    estimate (it places the warm-up and the validations). The training
    ends with the last iteration predicted to fit (short of the budget by
    less than one iteration, or past it by that iteration's deviation
    from the mean), and the checkpoint and validation hooks see it as the
    last.

    Args:
        threads (int, optional): torch intra-op threads, set before the
            run. Default: None (left as they are).
        out (str): the JSON's file name in the work dir.
            Default: ``'bench_timing.json'``.
        budget_s (float, optional): training seconds after which the
            training stops. Default: None (the config's ``max_iters``).
    """

    #: iterations whose mean time predicts the next ones
    RECENT = 20

    def __init__(self, threads=None, out=TIMING, budget_s=None):
        super().__init__()
        self.threads, self.out, self.budget_s = threads, out, budget_s
        self.train_seconds, self.iter_seconds, self.curve = 0., [], []
        self._mark = None

    def before_run(self, runner):
        if self.threads:
            import torch
            torch.set_num_threads(int(self.threads))

    def before_train_epoch(self, runner):
        super().before_train_epoch(runner)
        self._mark = time.perf_counter()

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        super().after_train_iter(runner, batch_idx, data_batch, outputs)
        now = time.perf_counter()
        self.iter_seconds.append(now - self._mark)
        self.train_seconds += now - self._mark
        # The first two iterations (allocations, caches) predict nothing.
        steady = self.iter_seconds[2:][-self.RECENT:]
        if self.budget_s and (steady or self.train_seconds >= self.budget_s):
            fit_budget(runner, self.budget_s - self.train_seconds,
                       statistics.mean(steady or self.iter_seconds))
        self._mark = now

    def after_val_epoch(self, runner, metrics=None):
        super().after_val_epoch(runner, metrics)
        point = dict(iter=runner.iter, train_seconds=self.train_seconds)
        for key, value in (metrics or {}).items():
            try:
                point[key] = float(value)
            except (TypeError, ValueError):
                pass
        self.curve.append(point)
        self._write(runner)

    def after_val(self, runner):
        super().after_val(runner)
        self._mark = time.perf_counter()

    def after_train(self, runner):
        super().after_train(runner)
        self._write(runner)

    def _write(self, runner):
        with open(osp.join(runner.work_dir, self.out), 'w') as f:
            json.dump(dict(iters=runner.iter, threads=self.threads,
                           train_seconds=self.train_seconds,
                           iter_seconds=self.iter_seconds,
                           curve=self.curve), f, indent=1)


def fit_budget(runner, seconds_left, sec_per_iter):
    """Move the training loop's ``max_iters`` to the iterations that fit
    into ``seconds_left`` after the current one, and with it the ``end``
    (and PolyLR's ``total_iters``) of each parameter scheduler that ended
    at the old ``max_iters``.

    Args:
        runner (Runner): the runner, in ``after_train_iter``.
        seconds_left (float): training seconds left in the budget.
        sec_per_iter (float): the expected seconds of one iteration.
    """
    loop = runner.train_loop
    new = runner.iter + 1 + max(0, int(seconds_left / sec_per_iter))
    old = loop.max_iters
    if new == old:
        return
    schedulers = runner.param_schedulers or []
    if isinstance(schedulers, dict):
        schedulers = [s for group in schedulers.values() for s in group]
    for scheduler in schedulers:
        if scheduler.end == old:
            scheduler.end = new
            if hasattr(scheduler, 'total_iters'):
                scheduler.total_iters = new - scheduler.begin - 1
    loop._max_iters = new


def register_timer_hook():
    """Register :class:`BenchTimerHook` in mmengine's hook registry (which
    mmseg's searches too); the training worker calls it first."""
    from mmengine.registry import HOOKS
    HOOKS.register_module(name='BenchTimerHook', module=BenchTimerHook,
                          force=True)


#: ``python -c`` program of a training: register the timer hook, then run
#: tools/train.py with the arguments that follow.
_TRAIN_WORKER = (
    'import runpy, sys\n'
    f'sys.path.insert(0, {BENCH!r})\n'
    'import bench_camvid\n'
    'bench_camvid.register_timer_hook()\n'
    f'sys.argv = [{osp.join(ROOT, "tools", "train.py")!r}] + sys.argv[1:]\n'
    'runpy.run_path(sys.argv[0], run_name="__main__")\n')


class StepError(RuntimeError):
    """A tool run by the benchmark failed; the message ends with its log's
    last lines."""


def fail(message):
    """Refuse the input: one ``error:`` line, exit status 1.

    Args:
        message (str): what is wrong.

    Raises:
        SystemExit: always.
    """
    raise SystemExit(f'error: {message}')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    parser.add_argument('--data', help='the CamVid folder (img_dir/ and '
                        'ann_dir/ with train, val and test)')
    parser.add_argument('--minutes', type=float, default=20.,
                        help='training wall-clock budget per model and '
                        'seed, in minutes (validation excluded)')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--work-dir',
                        default=osp.join(ROOT, 'work_dirs', 'bench_camvid'))
    parser.add_argument('--only', nargs='+', metavar='NAME',
                        help=f'models to run, of {", ".join(MODELS)}')
    parser.add_argument('--from-results', action='store_true',
                        help='rebuild tables and pictures from the JSONs of '
                        'the work dir, without training')
    parser.add_argument('--no-readme', action='store_true',
                        help='print the tables; pictures into the work dir; '
                        'leave README.md and benchmarks/ alone')
    parser.add_argument('--val-points', type=int, default=6,
                        help='val evaluations during training (the '
                        'learning curve)')
    parser.add_argument('--probe-iters', type=int, default=8,
                        help='iterations of the speed probe (the first two '
                        'are not timed)')
    parser.add_argument('--auto-keep-float', type=int, default=3,
                        metavar='K', help='nodes INT8 hurts most kept '
                        'float32 (tools/quantize.py --auto-keep-float)')
    parser.add_argument('--int8-op-types', nargs='+', metavar='OP',
                        default=list(INT8_OP_TYPES),
                        help='ONNX operators quantized (tools/quantize.py '
                        '--op-types)')
    parser.add_argument('--runtimes', nargs='+', metavar='RUNTIME',
                        choices=['onnxruntime', 'openvino'],
                        help='ONNX runtimes timed for INT8; the fastest '
                        'whose outputs stay near the others\' runs the INT8 '
                        'test (tools/quantize.py --runtimes; default: '
                        'onnxruntime, and openvino when it is installed)')
    parser.add_argument('--calib-batches', type=int, default=8)
    parser.add_argument('--latency-runs', type=int, default=5)
    parser.add_argument('--latency-shape', type=int, nargs=2,
                        metavar=('H', 'W'),
                        help='input of the timed forms (default: the test '
                        'frames\' size, the test pipeline\'s Resize scale)')
    parser.add_argument('--no-int8', action='store_true',
                        help='skip the fused / ONNX / INT8 step')
    parser.add_argument('--int8-only', action='store_true',
                        help='run only the INT8 step, on the runs of the '
                        'work dir (--seeds, --only) already trained and '
                        'tested, and update their JSONs')
    parser.add_argument('--config', nargs='+', default=[],
                        metavar='NAME=CONFIG',
                        help='run model NAME from CONFIG instead')
    return parser.parse_args(argv)


def check_args(args):
    """Refuse bad arguments before anything runs.

    Args:
        args (argparse.Namespace): the parsed arguments; ``args.models``
            (name -> config path) is set.

    Raises:
        SystemExit: one ``error:`` line naming the problem.
    """
    models = dict(MODELS)
    for item in args.config:
        name, sep, path = item.partition('=')
        if not sep or name not in MODELS:
            fail(f'--config {item}: expected NAME=CONFIG with NAME one of '
                 f'{", ".join(MODELS)}')
        models[name] = path
    for name in args.only or ():
        if name not in MODELS:
            fail(f'--only {name}: unknown model; the models are '
                 f'{", ".join(MODELS)}')
    args.models = {n: c for n, c in models.items()
                   if not args.only or n in args.only}
    if args.from_results:
        if not osp.isdir(args.work_dir):
            fail(f'--work-dir {args.work_dir}: no such folder (nothing to '
                 f'rebuild from)')
        return
    if args.minutes <= 0 or args.threads < 1 or args.val_points < 1 \
            or args.probe_iters < 3 or args.auto_keep_float < 0 \
            or args.calib_batches < 1 or args.latency_runs < 1 \
            or min(args.latency_shape or [1]) < 1:
        fail('--minutes, --threads, --val-points, --calib-batches, '
             '--latency-runs and --latency-shape must be positive, '
             '--probe-iters at least 3, --auto-keep-float at least 0')
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        fail(f'--seeds {args.seeds}: distinct non-negative integers')
    if args.no_int8 and args.int8_only:
        fail('--no-int8 and --int8-only: choose one')
    if not args.data:
        fail('--data DIR is needed (or --from-results)')
    if not osp.isdir(args.data):
        fail(f'--data {args.data}: no such folder')
    args.data = osp.abspath(args.data)
    args.work_dir = osp.abspath(args.work_dir)
    args.cfgs = {}
    for name, path in args.models.items():
        full = osp.abspath(path) if osp.isfile(path) else \
            osp.join(ROOT, path)
        if not osp.isfile(full):
            fail(f'{name}: config {path} not found')
        args.models[name] = full
        args.cfgs[name] = read(full)
        check_data(args.cfgs[name], args.data, name)
        if not args.no_int8 and not args.latency_shape:
            frame_size(args.cfgs[name])  # refused now, not after training


def read(config, options=()):
    """Read a config with ``key=value`` overrides.

    Args:
        config (str): the config file.
        options (list[str]): ``--cfg-options`` items.

    Returns:
        Config: the config (model without ``init_cfg``).
    """
    from mmengine.config import DictAction
    from mmrep.apis import load_config
    parsed = {k: DictAction._parse_iterable(v)
              for k, v in (o.split('=', 1) for o in options)}
    return load_config(config, parsed)


def dataset_keys(cfg, loader):
    """The dotted key of a dataloader's dataset, through dataset wrappers.

    Args:
        cfg (Config): the config.
        loader (str): e.g. ``'test_dataloader'``.

    Returns:
        tuple[str, dict]: ``'train_dataloader.dataset[.dataset]'`` and that
        dataset's config.
    """
    key, dataset = f'{loader}.dataset', cfg[loader]['dataset']
    while 'data_prefix' not in dataset and isinstance(
            dataset.get('dataset'), dict):
        key, dataset = key + '.dataset', dataset['dataset']
    return key, dataset


def check_data(cfg, data, name):
    """Refuse a data folder that lacks what a config's loaders read.

    Args:
        cfg (Config): the config.
        data (str): the data folder.
        name (str): the model, for the message.

    Raises:
        SystemExit: one ``error:`` line naming the missing folder.
    """
    for loader in LOADERS:
        if not cfg.get(loader):
            fail(f'{name}: the config has no {loader}')
        prefix = dataset_keys(cfg, loader)[1].get('data_prefix') or {}
        for folder in prefix.values():
            if not osp.isdir(osp.join(data, folder)):
                fail(f'--data {data}: no {folder}/ ({name}\'s {loader} '
                     f'reads it)')


def data_options(cfg, data):
    """``--cfg-options`` pointing every dataloader at ``data``.

    Args:
        cfg (Config): the config.
        data (str): the data folder.

    Returns:
        list[str]: ``key=value`` items.
    """
    return [f'data_root={data}'] + [
        f'{dataset_keys(cfg, loader)[0]}.data_root={data}'
        for loader in LOADERS]


def schedule_options(cfg, iters):
    """``--cfg-options`` moving the ``param_scheduler`` begins and ends
    from the config's ``max_iters`` to ``iters``, in proportion; ends at or
    past the config's ``max_iters`` become ``iters``.

    Args:
        cfg (Config): the config.
        iters (int): the new ``max_iters``.

    Returns:
        list[str]: ``key=value`` items.
    """
    total = cfg.train_cfg.max_iters
    schedulers = cfg.get('param_scheduler') or []
    keys = ['param_scheduler']
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    else:
        keys = [f'param_scheduler.{i}' for i in range(len(schedulers))]

    def scale(value):
        return iters if value >= total else round(value * iters / total)
    options = []
    for key, sched in zip(keys, schedulers):
        begin = scale(sched.get('begin', 0))
        end = max(begin + 1, scale(sched.get('end', total)))
        options += [f'{key}.begin={begin}', f'{key}.end={end}']
    return options


def crop_size(cfg):
    """The training crop ``(H, W)``: the config's ``crop_size``, else its
    data preprocessor's ``size``."""
    size = cfg.get('crop_size') or cfg.model.data_preprocessor.get('size')
    return tuple(int(s) for s in size)


def frame_size(cfg):
    """The ``(H, W)`` the test images are scored at: the ``scale`` of the
    test pipeline's ``Resize`` (``(W, H)`` in mmcv's order).

    Args:
        cfg (mmengine.Config): a CamVid config.

    Returns:
        tuple[int, int]: the frame size.

    Raises:
        SystemExit: when the test pipeline has no ``Resize`` with a
            ``scale`` (then ``--latency-shape`` is needed).
    """
    for t in cfg.test_dataloader.dataset.pipeline:
        scale = t.get('scale')
        if t['type'] in ('Resize', 'mmseg.Resize') and isinstance(
                scale, (tuple, list)) and len(scale) == 2:
            w, h = scale
            return int(h), int(w)
    fail('the test pipeline has no Resize with a (W, H) scale: give '
         '--latency-shape H W')


def tool_env(threads):
    """The environment of the tools: ``threads`` OpenMP / MKL threads and
    the repository on the path."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (ROOT, env.get('PYTHONPATH')) if p)
    return env


def run_tool(argv, log_path, threads):
    """Run ``python *argv`` in the repository, its output into a log.

    Args:
        argv (list[str]): the program and its arguments.
        log_path (str): the log file (created with its folder).
        threads (int): OpenMP / MKL threads of the process.

    Returns:
        float: the seconds it ran.

    Raises:
        StepError: it failed; the message ends with the log's last lines.
    """
    os.makedirs(osp.dirname(log_path), exist_ok=True)
    start = time.perf_counter()
    with open(log_path, 'w') as log:
        proc = subprocess.run([sys.executable, *argv], cwd=ROOT,
                              stdout=log, stderr=subprocess.STDOUT,
                              env=tool_env(threads))
    if proc.returncode:
        with open(log_path, errors='replace') as f:
            tail = ''.join(f.readlines()[-15:])
        raise StepError(f'{osp.basename(argv[0])} exited with '
                        f'{proc.returncode} (log: {log_path}):\n{tail}')
    return time.perf_counter() - start


def train(config, work_dir, options, threads):
    """``tools/train.py CONFIG --work-dir DIR --cfg-options ...`` in a fresh
    process with :class:`BenchTimerHook` registered.

    Args:
        config (str): the config.
        work_dir (str): its work dir.
        options (list[str]): ``--cfg-options`` items.
        threads (int): torch threads.

    Returns:
        tuple[dict, float]: the hook's JSON and the process's seconds.
    """
    seconds = run_tool(['-c', _TRAIN_WORKER, config, '--work-dir', work_dir,
                        '--cfg-options', *options],
                       osp.join(work_dir, 'train.log'), threads)
    return load_json(osp.join(work_dir, TIMING)), seconds


def load_json(path):
    with open(path) as f:
        return json.load(f)


def read_run(path):
    """One run's JSON, or None when the file is not one (unreadable, not
    JSON, or lacking a key of :data:`RUN_KEYS`)."""
    try:
        run = load_json(path)
    except (OSError, ValueError):
        return None
    return run if isinstance(run, dict) and RUN_KEYS <= run.keys() else None


def save_json(path, obj):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=1)
        f.write('\n')
    os.replace(tmp, path)


def last_checkpoint(work_dir):
    """The checkpoint mmengine saved last in ``work_dir``."""
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        path = f.read().strip()
    return path if osp.isabs(path) else osp.join(work_dir, path)


def split_sizes(cfg):
    """Images per split.

    Args:
        cfg (Config): the config, pointed at the data.

    Returns:
        dict[str, int]: ``train``, ``val``, ``test`` -> images.
    """
    import copy
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    sizes = {}
    for loader in LOADERS:
        dataset = copy.deepcopy(cfg[loader]['dataset'])
        dataset['pipeline'] = []
        sizes[loader.split('_')[0]] = len(DATASETS.build(dataset))
    return sizes


def class_iou(cfg, pred_dir, examples_dir):
    """Per-class IoU on the test split from ``tools/test.py --out``'s label
    maps, computed with ``IoUMetric``'s own functions; also writes the
    ground truth of the grid's images.

    Args:
        cfg (Config): the config, pointed at the data.
        pred_dir (str): the label maps (``<image stem>.png``).
        examples_dir (str): where the grid's ground truths go
            (``<stem>_gt.png``, as loaded by the config's
            ``LoadAnnotations``).

    Returns:
        dict: ``classes``, ``palette``, ``iou`` (class -> IoU in %, None
        where the class is in neither prediction nor ground truth),
        ``mIoU``, ``images`` and ``examples`` (the grid's images: ``name``,
        ``img_path``, ``gt``).
    """
    import copy

    import numpy as np
    import torch
    from mmengine.registry import init_default_scope
    from mmseg.evaluation.metrics import IoUMetric
    from mmseg.registry import DATASETS
    from PIL import Image
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    dataset = copy.deepcopy(dataset_keys(cfg, 'test_dataloader')[1])
    dataset['pipeline'] = [t for t in dataset['pipeline']
                           if t['type'].split('.')[-1] == 'LoadAnnotations']
    dataset = DATASETS.build(dataset)
    classes = list(dataset.metainfo['classes'])
    n = len(dataset)
    chosen = {round((k + 0.5) * n / GRID_ROWS) for k in range(GRID_ROWS)}
    totals, examples = None, []
    os.makedirs(examples_dir, exist_ok=True)
    for i in range(n):
        sample = dataset[i]
        gt = sample['gt_seg_map']
        stem = osp.splitext(osp.basename(sample['img_path']))[0]
        pred = np.asarray(Image.open(osp.join(pred_dir, stem + '.png')))
        if sample.get('reduce_zero_label'):
            pred = pred.astype(np.int64) - 1
        areas = IoUMetric.intersect_and_union(
            torch.from_numpy(pred.astype(np.int64)),
            torch.from_numpy(gt.astype(np.int64)), len(classes),
            getattr(dataset, 'ignore_index', 255))
        totals = areas if totals is None else [
            a + b for a, b in zip(totals, areas)]
        if i in chosen:
            gt_path = osp.join(examples_dir, stem + '_gt.png')
            Image.fromarray(gt.astype(np.uint8)).save(gt_path)
            examples.append(dict(name=stem, img_path=sample['img_path'],
                                 gt=gt_path))
    iou = IoUMetric.total_area_to_metrics(*totals, ['mIoU'])['IoU']
    iou = [None if math.isnan(v) else round(100 * float(v), 2) for v in iou]
    present = [v for v in iou if v is not None]
    return dict(classes=classes,
                palette=[list(map(int, c)) for c in
                         dataset.metainfo.get('palette') or []],
                iou=dict(zip(classes, iou)),
                mIoU=round(statistics.mean(present), 2) if present else None,
                images=n, examples=examples)


def count_params(cfg, checkpoint):
    """Parameters of the train-time and the fused model.

    Args:
        cfg (Config): the config.
        checkpoint (str): its train-time checkpoint.

    Returns:
        dict: ``train`` and ``fused`` -> parameters.
    """
    from mmrep.apis import load_fused
    loaded = load_fused(cfg, checkpoint, keep_unfused=True)
    return {form: sum(p.numel() for p in model.parameters())
            for form, model in (('train', loaded.model),
                                ('fused', loaded.fused))}


def run_one(name, seed, args, log):
    """Probe, train, test and quantize one model with one seed.

    Args:
        name (str): a key of :data:`MODELS`.
        seed (int): the seed.
        args (argparse.Namespace): the checked arguments.
        log (callable): progress messages.

    Returns:
        dict: what its JSON holds.

    Raises:
        StepError: the probe, training or test failed.
    """
    import torch
    from readme_section import machine_line

    from bench_quant import cpu_int8_flags
    config, cfg = args.models[name], args.cfgs[name]
    run_dir = osp.join(args.work_dir, 'runs', name, f'seed{seed}')
    if osp.isdir(run_dir):
        shutil.rmtree(run_dir)
    data = data_options(cfg, args.data)
    common = data + [f'randomness.seed={seed}',
                     'default_hooks.timer.type=BenchTimerHook',
                     f'default_hooks.timer.threads={args.threads}']
    budget = 60 * args.minutes
    seconds = {}

    p = args.probe_iters
    probe, seconds['probe'] = train(
        config, osp.join(run_dir, 'probe'), common + [
            f'train_cfg.max_iters={p}', f'train_cfg.val_begin={p + 1}',
            f'default_hooks.checkpoint.interval={p + 1}',
            'default_hooks.checkpoint.save_last=False'], args.threads)
    shutil.rmtree(osp.join(run_dir, 'probe'))
    first, rest = probe['iter_seconds'][:2], probe['iter_seconds'][2:]
    per_iter = statistics.mean(rest)
    # The first iterations' extra time (allocations, caches) is spent once.
    warmup = max(0., sum(first) - len(first) * per_iter)
    # At least 3: the hook moves max_iters from the third iteration on.
    iters = max(3, int((budget - warmup) / per_iter))
    interval = math.ceil(iters / args.val_points)
    log(f'{name} seed {seed}: probe {per_iter:.2f} s/iter -> {iters} '
        f'iterations, val every {interval}')

    options = common + [
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={interval}',
        'train_cfg.val_begin=1', f'default_hooks.timer.budget_s={budget}',
        # The hook ends the training at the budget; save_last saves then.
        'default_hooks.checkpoint.interval=-1',
        'default_hooks.checkpoint.save_last=True',
        f'default_hooks.logger.interval={max(1, min(50, iters // 20))}',
    ] + schedule_options(cfg, iters)
    timing, seconds['train_process'] = train(
        config, osp.join(run_dir, 'train'), options, args.threads)
    ckpt = last_checkpoint(osp.join(run_dir, 'train'))
    batch = cfg.train_dataloader.batch_size
    final = timing['curve'][-1] if timing['curve'] else {}
    log(f'{name} seed {seed}: trained {timing["iters"]} iterations in '
        f'{timing["train_seconds"]:.0f} s (+ validation: '
        f'{seconds["train_process"]:.0f} s in all), val mIoU '
        f'{final.get("mIoU", float("nan")):.2f}')

    data_cfg = read(config, data)
    pred_dir = osp.join(run_dir, 'test_pred')
    metrics_path = osp.join(run_dir, 'test_metrics.json')
    seconds['test'] = run_tool(
        [osp.join(ROOT, 'tools', 'test.py'), config, ckpt, '--work-dir',
         osp.join(run_dir, 'test'), '--out', pred_dir, '--out-metrics',
         metrics_path, '--cfg-options', *data],
        osp.join(run_dir, 'test.log'), args.threads)
    test = load_json(metrics_path)
    per_class = class_iou(data_cfg, pred_dir,
                          osp.join(args.work_dir, 'examples'))
    if per_class['mIoU'] is not None and \
            abs(per_class['mIoU'] - test['mIoU']) > 0.02:
        log(f'warning: {name} seed {seed}: per-class mean '
            f'{per_class["mIoU"]} differs from IoUMetric\'s mIoU '
            f'{test["mIoU"]}')
    log(f'{name} seed {seed}: test mIoU {test["mIoU"]:.2f} '
        f'({seconds["test"]:.0f} s)')

    result = dict(
        model=name, config=osp.relpath(config, ROOT), seed=seed,
        data=args.data, splits=split_sizes(data_cfg),
        crop=list(crop_size(cfg)), batch_size=batch,
        threads=args.threads, minutes=args.minutes, budget_s=budget,
        probe=dict(iters=p, sec_per_iter=round(per_iter, 4),
                   first_iters_extra_s=round(warmup, 3)),
        max_iters=iters, val_interval=interval, iters=timing['iters'],
        stop='budget',
        train_seconds=round(timing['train_seconds'], 2),
        train_img_per_s=round(batch * timing['iters']
                              / timing['train_seconds'], 3),
        curve=timing['curve'], val=final,
        test=test, test_class_iou=per_class['iou'],
        classes=per_class['classes'], palette=per_class['palette'],
        examples=per_class['examples'],
        pred_dir=osp.relpath(pred_dir, args.work_dir),
        checkpoint=osp.relpath(ckpt, args.work_dir),
        params=count_params(data_cfg, ckpt),
        machine=machine_line(), int8_flags=cpu_int8_flags(),
        torch_threads=torch.get_num_threads())

    if not args.no_int8:
        result['int8'] = quantize(name, seed, config, ckpt, data, cfg,
                                  run_dir, args, seconds, log)
    result['seconds'] = {k: round(v, 1) for k, v in seconds.items()}
    return result


def quantize(name, seed, config, ckpt, data, cfg, run_dir, args, seconds,
             log):
    """``tools/quantize.py`` on the fused weights of ``ckpt``.

    Returns:
        dict: the parts of its JSON the tables use (or ``error``, the
        failure, when it failed).
    """
    from mmrep.deploy.config import deploy_path
    weights = deploy_path(ckpt) if osp.isfile(deploy_path(ckpt)) else ckpt
    out = osp.join(run_dir, 'int8.onnx')
    h, w = args.latency_shape or frame_size(cfg)
    try:
        seconds['int8'] = run_tool(
            [osp.join(ROOT, 'tools', 'quantize.py'), config, weights,
             '--out', out, '--auto-keep-float', str(args.auto_keep_float),
             '--calib-batches', str(args.calib_batches), '--op-types',
             *args.int8_op_types, '--threads',
             str(args.threads), '--latency-shape', str(h), str(w),
             '--latency-runs', str(args.latency_runs),
             *(['--runtimes', *args.runtimes] if args.runtimes else []),
             '--cfg-options', *data],
            osp.join(run_dir, 'quantize.log'), args.threads)
    except StepError as e:
        log(f'warning: {name} seed {seed}: INT8 step failed: {e}')
        return dict(error=str(e).splitlines()[0])
    q = load_json(osp.splitext(out)[0] + '.json')
    m = q['metric']
    result = dict(
        weights=osp.basename(weights), metric=m,
        auto_keep_float=args.auto_keep_float,
        op_types=list(args.int8_op_types),
        float32=q['float32'][m], int8=q['int8'][m], drop=q['drop'],
        fused_ms=q['float32']['latency_ms_by_runtime'].get('fused eager'),
        float32_ms_by_form=q['float32']['latency_ms_by_runtime'],
        int8_ms=q['int8']['latency_ms'], runtime=q['runtime'],
        int8_ms_by_runtime=q['int8']['latency_ms_by_runtime'],
        speedup=q['speedup'],
        speedup_over=q['speedup_over'], kept_float=q['kept_float'],
        latency=q['latency'], calibration=q['calibration'])
    log(f'{name} seed {seed}: fused {result["fused_ms"]} ms, INT8 '
        f'{result["int8_ms"]} ms on {result["runtime"]} '
        f'({result["speedup"]}x), test {m} '
        f'{result["float32"]} -> {result["int8"]} '
        f'({seconds["int8"]:.0f} s)')
    return result


def int8_only(args, log):
    """The INT8 step alone, on the runs of the work dir that ``--seeds``
    and ``--only`` select; each run's JSON gets the new ``int8`` entry.

    Args:
        args (argparse.Namespace): the checked arguments.
        log (callable): progress messages.

    Returns:
        int: the exit status (1 when a selected run has no JSON, a JSON
        that is not a run of this benchmark, another config, or an INT8
        step that failed).
    """
    status = 0
    for seed in args.seeds:
        for name, config in args.models.items():
            path = osp.join(args.work_dir, f'{name}_seed{seed}.json')
            if not osp.isfile(path):
                log(f'error: {name} seed {seed}: no {osp.basename(path)} '
                    f'in the work dir (train it first)')
                status = 1
                continue
            result = read_run(path)
            if result is None:
                log(f'error: {name} seed {seed}: {path} is not a run of '
                    f'this benchmark')
                status = 1
                continue
            trained_from, ckpt = result['config'], result['checkpoint']
            if trained_from != osp.relpath(config, ROOT):
                log(f'error: {name} seed {seed}: trained from '
                    f'{trained_from}, not {osp.relpath(config, ROOT)} '
                    f'(give the same --config)')
                status = 1
                continue
            seconds = result.setdefault('seconds', {})
            result['int8'] = quantize(
                name, seed, config, osp.join(args.work_dir, ckpt),
                data_options(args.cfgs[name], args.data), args.cfgs[name],
                osp.join(args.work_dir, 'runs', name, f'seed{seed}'), args,
                seconds, log)
            if 'error' in result['int8']:
                status = 1
            result['seconds'] = {k: round(v, 1) for k, v in seconds.items()}
            save_json(path, result)
    return status


def load_results(work_dir, names=None):
    """The JSONs of the work dir, by model in table order.

    Args:
        work_dir (str): the work dir.
        names (list[str], optional): keep these models only.

    Returns:
        dict[str, list[dict]]: model -> its runs, by seed; a JSON that is
        not one of this benchmark's runs is left out, with a warning line.
    """
    runs = {}
    for entry in sorted(os.listdir(work_dir)):
        if entry.endswith('.json') and '_seed' in entry:
            r = read_run(osp.join(work_dir, entry))
            if r is None:
                print(f'warning: {osp.join(work_dir, entry)} is not a run '
                      f'of this benchmark; left out', file=sys.stderr)
                continue
            if not names or r['model'] in names:
                runs.setdefault(r['model'], []).append(r)
    order = list(MODELS) + sorted(set(runs) - set(MODELS))
    return {n: sorted(runs[n], key=lambda r: r['seed'])
            for n in order if n in runs}


def _stat(values, digits=2):
    """``mean`` or ``mean ± std`` (sample std) of the values present."""
    values = [v for v in values if v is not None]
    if not values:
        return '-'
    mean = statistics.mean(values)
    if len(values) == 1:
        return f'{mean:.{digits}f}'
    return f'{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}'


def _quantized(runs):
    """The runs whose INT8 step ran and succeeded."""
    return [r for r in runs if r.get('int8') and 'error' not in r['int8']]


def _int8(runs, key):
    return [r['int8'].get(key) for r in _quantized(runs)]


def _budget_rule(results):
    """How the runs kept to the budget: stopped at it (``stop`` in their
    JSON), or the older runs' ``max_iters`` from the speed probe."""
    runs = [r for rs in results.values() for r in rs]
    probe = runs[0]['probe']['iters']
    stopped = sum(r.get('stop') == 'budget' for r in runs)
    rule = ('training stops when the budget is spent (with the last '
            'iteration predicted to fit), the PolyLR decay moved to end '
            'there; '
            f'a speed probe of {probe} iterations places the warm-up and the '
            'validations')
    older = (f'a speed probe of {probe} iterations sets `max_iters` so that '
             'the training iterations fill the budget, the LinearLR warm-up '
             '+ PolyLR schedule rescaled to it')
    if stopped == len(runs):
        return rule
    if not stopped:
        return older
    return f'{rule} ({stopped} of {len(runs)} runs; in the others {older})'


def _int8_runtimes(int8):
    """Where the INT8 graphs ran: the runtimes timed (older runs timed
    onnxruntime only) and the rule that chose one."""
    timed = sorted({k for q in int8
                    for k in q.get('int8_ms_by_runtime', {'onnxruntime': 0})})
    if timed == ['onnxruntime']:
        return 'in onnxruntime (CPU EP)'
    return (f'in the fastest of {", ".join(timed)} (CPU) whose outputs stay '
            f'near the others\' (per model below), which also runs its '
            f'INT8 test')


def _latency_size(int8):
    """The timed input sizes of the INT8 entries, ``HxW`` (several joined
    by `` / `` when runs differ)."""
    sizes = sorted({tuple(q['latency']['shape'][2:]) for q in int8})
    return ' / '.join(f'{h}x{w}' for h, w in sizes)


def _threads(results):
    """``'2 threads'`` (or ``'1 thread'``, ``'1 / 2 threads'``)."""
    values = sorted({r['threads'] for runs in results.values()
                     for r in runs})
    return ' / '.join(map(str, values)) + (
        ' thread' if values == [1] else ' threads')


def _settings(results, key):
    values = sorted({r[key] for runs in results.values() for r in runs},
                    key=str)
    return ', '.join(map(str, values))


def ranking(results):
    """Ranking by test mIoU in each seed, and the neighbours (by mean)
    that the seeds do not separate.

    Returns:
        tuple[list[str], bool | None, list[str]]: one line per seed; whether
        the seeds rank the models alike (None when a seed lacks a model);
        ``'A / B'`` for each pair of neighbours whose mean test mIoU differ
        by less than the larger of their standard deviations over seeds.
    """
    by_seed = {}
    for name, runs in results.items():
        for r in runs:
            by_seed.setdefault(r['seed'], {})[name] = r['test']['mIoU']
    lines, orders = [], []
    for seed in sorted(by_seed):
        scores = by_seed[seed]
        order = sorted(scores, key=lambda n: -scores[n])
        orders.append(tuple(order) if len(scores) == len(results) else None)
        lines.append(f'seed {seed}: ' + ' > '.join(
            f'{n} {scores[n]:.1f}' for n in order))
    stats = {n: [r['test']['mIoU'] for r in runs]
             for n, runs in results.items()}
    means = sorted(stats, key=lambda n: -statistics.mean(stats[n]))
    close = [f'{a} / {b}' for a, b in zip(means, means[1:])
             if len(stats[a]) > 1 and len(stats[b]) > 1
             and statistics.mean(stats[a]) - statistics.mean(stats[b])
             < max(statistics.stdev(stats[a]), statistics.stdev(stats[b]))]
    agree = None if None in orders else len(set(orders)) == 1
    return lines, agree, close


def margins(results):
    """The lines on the best mmrep model against :data:`BASELINE` and on
    the INT8 extremes (empty when there is nothing to compare).

    Args:
        results (dict[str, list[dict]]): from :func:`load_results`.

    Returns:
        list[str]: markdown lines, each after an empty one.
    """
    lines = []
    mean = {n: statistics.mean(r['test']['mIoU'] for r in runs)
            for n, runs in results.items()}
    ours = [n for n in mean if n != BASELINE]
    if BASELINE in mean and ours:
        best = max(ours, key=mean.get)
        lines += ['', f'Best mmrep model against {BASELINE} (mean test '
                  f'mIoU over seeds): {best} '
                  f'{mean[best] - mean[BASELINE]:+.2f}.']
    int8 = [(r['int8'], n) for n, runs in results.items()
            for r in _quantized(runs)]
    if int8:
        drop = max((q['drop'], n) for q, n in int8)
        speed = min((q['speedup'], n) for q, n in int8)
        lines += ['', f'INT8 over every quantized run: largest drop '
                  f'{drop[0]:.2f} mIoU ({drop[1]}), smallest speed-up '
                  f'{speed[0]:.2f}x over the fastest float32 form '
                  f'({speed[1]}).']
    return lines


def tables(results, pictures):
    """The markdown of ``benchmarks/README.md``'s section and of the
    top-level README's summary.

    Args:
        results (dict[str, list[dict]]): from :func:`load_results`.
        pictures (dict[str, str]): ``curves`` / ``predictions`` -> the
            links to the pictures from ``benchmarks/README.md`` and
            (``top_curves``, ``top_predictions``) from ``README.md``.

    Returns:
        tuple[str, str]: the full section and the summary.
    """
    first = next(iter(results.values()))[0]
    h, w = first['crop']
    seeds = sorted({r['seed'] for runs in results.values() for r in runs})
    splits = first['splits']
    points = max(len(r['curve']) for runs in results.values() for r in runs)
    quantized = [r for runs in results.values() for r in _quantized(runs)]
    int8 = [r['int8'] for r in quantized]
    keep = sorted({q.get('auto_keep_float') for q in int8} - {None})
    from mmrep.deploy.quantize import DEFAULT_OP_TYPES
    ops = sorted({tuple(q.get('op_types', DEFAULT_OP_TYPES)) for q in int8})
    int8_seeds = sorted({r['seed'] for r in quantized})
    runs_ = int8[0]['latency']['runs'] if int8 else None
    order, same, close = ranking(results)
    intro = (
        f'Machine: {first["machine"]}; INT8 instructions: '
        f'{first["int8_flags"]}.\n\n'
        f'CamVid ({splits["train"]} train, {splits["val"]} val, '
        f'{splits["test"]} test images, 11 classes, void ignored), '
        f'every model UperNet trained from scratch (no pretrained weights) '
        f'on {h}x{w} crops at batch {first["batch_size"]}, '
        f'{_settings(results, "minutes")} min of training per model and '
        f'seed at {_threads(results)}: {_budget_rule(results)} '
        f'(validation, checkpoints and testing not counted). Seeds: '
        f'{", ".join(map(str, seeds))} (mean ± std over seeds). Val mIoU: '
        f'at the end of training (the curves: {points} val evaluations '
        f'spread over the training); test mIoU and per-class IoU: '
        f'mmseg\'s IoUMetric on the test split, final checkpoint.')
    if int8:
        intro += (
            f' Latency: batch 1, {_latency_size(int8)}, median of {runs_} '
            f'interleaved '
            f'rounds at the same threads; fused = the fused model in eager '
            f'PyTorch, ONNX = the fused float32 graph in onnxruntime, '
            f'INT8 = its QDQ graph {_int8_runtimes(int8)}, calibrated on '
            f'{int8[0]["calibration"]["batches"]} training images '
            f'({int8[0]["calibration"]["method"]}, '
            f'{int8[0]["calibration"]["granularity"]} weights), operators '
            f'quantized: {" / ".join(", ".join(o) for o in ops)}, '
            f'{" / ".join(map(str, keep)) or "K"} nodes kept float32 '
            f'(those INT8 hurts most, `--auto-keep-float`), on the runs of '
            f'seed{"s" if len(int8_seeds) > 1 else ""} '
            f'{", ".join(map(str, int8_seeds))}; speed-up = the '
            f'fastest float32 form over INT8; drop = float32 ONNX test '
            f'mIoU minus INT8 test mIoU.')
    lines = [intro, '',
             '| model | params M (train / fused) | seeds | iterations | '
             'train min | train img/s | val mIoU | test mIoU | fused ms | '
             'ONNX ms | INT8 ms | INT8 speed-up | INT8 drop |',
             '|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|'
             '---:|']
    summary = ['| model | test mIoU | val mIoU | train img/s | fused ms | '
               'INT8 ms | INT8 drop |', '|---|---:|---:|---:|---:|---:|---:|']
    for name, runs in results.items():
        params = runs[0]['params']
        iters = sorted({r['iters'] for r in runs})
        iters = str(iters[0]) if len(iters) == 1 else \
            f'{iters[0]}-{iters[-1]}'
        onnx = [ms.get('onnxruntime')
                for ms in _int8(runs, 'float32_ms_by_form')]
        cells = dict(
            minutes=_stat([r['train_seconds'] / 60 for r in runs], 1),
            img_s=_stat([r['train_img_per_s'] for r in runs], 1),
            val=_stat([r['val'].get('mIoU') for r in runs]),
            test=_stat([r['test']['mIoU'] for r in runs]),
            fused=_stat(_int8(runs, 'fused_ms'), 1),
            onnx=_stat(onnx, 1), int8=_stat(_int8(runs, 'int8_ms'), 1),
            speedup=_stat(_int8(runs, 'speedup')),
            drop=_stat(_int8(runs, 'drop')))
        if cells['speedup'] != '-':
            cells['speedup'] += 'x'
        lines.append(
            f'| {name} | {params["train"] / 1e6:.3f} / '
            f'{params["fused"] / 1e6:.3f} | {len(runs)} | {iters} | '
            f'{cells["minutes"]} | {cells["img_s"]} | {cells["val"]} | '
            f'{cells["test"]} | '
            f'{cells["fused"]} | {cells["onnx"]} | {cells["int8"]} | '
            f'{cells["speedup"]} | {cells["drop"]} |')
        summary.append(
            f'| {name} | {cells["test"]} | {cells["val"]} | '
            f'{cells["img_s"]} | {cells["fused"]} | {cells["int8"]} | '
            f'{cells["drop"]} |')
    failed = [f'{n} seed {r["seed"]}: {r["int8"]["error"]}'
              for n, runs in results.items() for r in runs
              if r.get('int8') and 'error' in r['int8']]
    if failed:
        lines += ['', 'INT8 step failed: ' + '; '.join(failed) + '.']
    over = {}
    for name, runs in results.items():
        for form in _int8(runs, 'speedup_over'):
            over.setdefault(name, set()).add(f'`{form}`')
    kept = {}
    for name, runs in results.items():
        for q in _int8(runs, 'kept_float'):
            kept.setdefault(name, set()).update(
                q['requested'] + q['sensitivity'])
    if kept:
        lines += ['', 'Kept float32: ' + '; '.join(
            f'{n} ' + (', '.join(f'`{k}`' for k in sorted(k_)) or 'none')
            for n, k_ in kept.items()) + '.']
    ran = {}
    for name, runs in results.items():
        for q in _int8(runs, 'int8_ms_by_runtime'):
            ran.setdefault(name, set()).update(
                f'{k} {v:.1f} ms' for k, v in (q or {}).items())
    if any(len(v) > 1 for v in ran.values()):
        chosen = {n: {f'`{r}`' for r in _int8(runs, 'runtime')}
                  for n, runs in results.items()}
        lines += ['', 'INT8 by runtime (chosen): ' + '; '.join(
            f'{n} {", ".join(sorted(v))} ({" / ".join(sorted(chosen[n]))})'
            for n, v in ran.items()) + '.']
    if over:
        lines += ['', 'Fastest float32 form (the speed-up\'s reference): '
                  + '; '.join(f'{n} {" / ".join(sorted(f))}'
                              for n, f in over.items()) + '.']
    lines += ['', 'Ranking by test mIoU, ' + '; '.join(order) + (
        '.' if len(seeds) == 1 else
        ' (not every seed has every model).' if same is None else
        ' (the same order in every seed).' if same else
        ' (the order differs between seeds).')]
    if len(seeds) > 1:
        lines[-1] += (' Neighbours (by mean) closer than a standard '
                      'deviation: ' + ', '.join(close) + '.' if close else
                      ' Every two neighbours (by mean) are more than a '
                      'standard deviation apart.')
    lines += margins(results)
    classes = first['classes']
    lines += ['', '**Test IoU per class** (%, mean over seeds)', '',
              '| model | ' + ' | '.join(classes) + ' |',
              '|---|' + '---:|' * len(classes)]
    for name, runs in results.items():
        cells = []
        for c in classes:
            values = [r['test_class_iou'].get(c) for r in runs]
            values = [v for v in values if v is not None]
            cells.append(f'{statistics.mean(values):.1f}' if values
                         else '-')
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    lines += ['', f'![val mIoU against training time]({pictures["curves"]})',
              '', f'![test images, ground truth and predictions]'
              f'({pictures["predictions"]})']
    summary = [
        f'CamVid, every family and mmseg\'s ResNetV1c-18 as UperNet '
        f'backbones trained from scratch, {h}x{w} crops, '
        f'{_settings(results, "minutes")} min of CPU training each at '
        f'{_threads(results)}, seeds '
        f'{", ".join(map(str, seeds))}'
        + (f'; latency batch 1 at {_latency_size(int8)}. ' if int8
           else '. ') +
        'Full tables, per-class IoU and settings: '
        '[benchmarks/README.md](benchmarks/README.md).', ''] + summary + [
        '', f'![val mIoU against training time]({pictures["top_curves"]})',
        '', f'![test images, ground truth and predictions]'
        f'({pictures["top_predictions"]})']
    return '\n'.join(lines), '\n'.join(summary)


def plot_curves(results, path):
    """Val mIoU against training wall time, one colour per model: thin
    lines per seed and, with several seeds, their mean (point by point).

    Args:
        results (dict[str, list[dict]]): from :func:`load_results`.
        path (str): the PNG.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colors = plt.get_cmap('tab10').colors
    for color, (name, runs) in zip(colors, results.items()):
        curves = [[(p['train_seconds'] / 60, p['mIoU']) for p in r['curve']
                   if 'mIoU' in p] for r in runs]
        curves = [c for c in curves if c]
        if not curves:
            continue
        several = len(curves) > 1
        for c in curves:
            ax.plot(*zip(*c), color=color, lw=0.8 if several else 1.8,
                    alpha=0.35 if several else 1, marker='' if several
                    else 'o', ms=3, label=None if several else name)
        if several:
            n = min(len(c) for c in curves)
            mean = [(statistics.mean(c[i][0] for c in curves),
                     statistics.mean(c[i][1] for c in curves))
                    for i in range(n)]
            ax.plot(*zip(*mean), color=color, lw=2, marker='o', ms=3,
                    label=f'{name} (mean of {len(curves)} seeds)')
    first = next(iter(results.values()))[0]
    ax.set_xlabel(f'training wall time, minutes ({_threads(results)} on '
                  f'the CPU; validation excluded)')
    ax.set_ylabel('val mIoU (%)')
    ax.set_title(f'CamVid from scratch, UperNet, {first["crop"][0]}x'
                 f'{first["crop"][1]} crops, batch {first["batch_size"]}')
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_predictions(results, work_dir, path):
    """A grid of test images: the image, its ground truth and each model's
    prediction (its first seed), in the dataset's palette, void black.

    Args:
        results (dict[str, list[dict]]): from :func:`load_results`.
        work_dir (str): the work dir (the label maps are under it).
        path (str): the PNG.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Patch
    from PIL import Image
    first = next(iter(results.values()))[0]
    classes, examples = first['classes'], first['examples']
    palette = np.zeros((256, 3), np.uint8)
    palette[:len(first['palette'])] = first['palette']

    def colour(label):
        return palette[np.asarray(label, np.uint8)]
    columns = [('image', None), ('ground truth', None)] + [
        (name, runs[0]) for name, runs in results.items()]
    fig, axes = plt.subplots(len(examples), len(columns), squeeze=False,
                             figsize=(2.3 * len(columns),
                                      1.8 * len(examples) + 0.9))
    for row, ex in zip(axes, examples):
        for ax, (title, run) in zip(row, columns):
            if title == 'image':
                picture = np.asarray(Image.open(ex['img_path']).convert(
                    'RGB'))
            elif title == 'ground truth':
                picture = colour(Image.open(ex['gt']))
            else:
                pred = osp.join(work_dir, run['pred_dir'],
                                ex['name'] + '.png')
                picture = colour(Image.open(pred)) if osp.isfile(pred) \
                    else np.zeros((8, 8, 3), np.uint8)
            ax.imshow(picture, interpolation='nearest')
            ax.set_xticks([])
            ax.set_yticks([])
            if ax is row[0]:
                ax.set_ylabel(ex['name'], fontsize=7)
    for ax, (title, run) in zip(axes[0], columns):
        if run is not None:
            title = f'{title}\n(test mIoU {run["test"]["mIoU"]:.1f})'
        ax.set_title(title, fontsize=9)
    handles = [Patch(color=np.array(c) / 255, label=n)
               for n, c in zip(classes, first['palette'])]
    handles.append(Patch(color='black', label='void'))
    width = 2.3 * len(columns)
    ncol = max(1, min(len(handles), int(width / 1.15)))
    legend_h = 0.25 * math.ceil(len(handles) / ncol) + 0.15
    fig.set_size_inches(width, 1.8 * len(examples) + 0.4 + legend_h)
    fig.legend(handles=handles, loc='lower center', ncol=ncol, fontsize=7,
               frameon=False)
    fig.tight_layout(rect=(0, legend_h / fig.get_figheight(), 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def ensure_section(path, heading):
    """Append ``heading`` and empty :data:`SECTION` markers to ``path``
    when it has none."""
    with open(path) as f:
        doc = f.read()
    if f'<!-- {SECTION}:start -->' in doc:
        return
    with open(path, 'a') as f:
        f.write(f'{"" if doc.endswith(chr(10)) else chr(10)}\n{heading}\n\n'
                f'{USAGE}\n\n'
                f'<!-- {SECTION}:start -->\n<!-- {SECTION}:end -->\n')


def report(args, log):
    """Tables and pictures from the work dir's JSONs, into the READMEs
    (unless ``--no-readme``).

    Returns:
        bool: whether there was anything to report.
    """
    from readme_section import update_section
    # A run with --only still reports every model of the work dir.
    results = load_results(args.work_dir,
                           args.only if args.from_results else None)
    if not results:
        log(f'no results in {args.work_dir}')
        return False
    out = args.work_dir if args.no_readme else BENCH
    paths = {k: osp.join(out, f) for k, f in (('curves', CURVES),
                                             ('predictions', PREDICTIONS))}
    plot_curves(results, paths['curves'])
    plot_predictions(results, args.work_dir, paths['predictions'])
    pictures = dict(curves=CURVES, predictions=PREDICTIONS,
                    top_curves=f'benchmarks/{CURVES}',
                    top_predictions=f'benchmarks/{PREDICTIONS}')
    full, summary = tables(results, pictures)
    print(full + '\n\nREADME.md summary:\n\n' + summary, flush=True)
    log('pictures: ' + ', '.join(paths.values()))
    if args.no_readme:
        return True
    ensure_section(README_BENCH, HEADING)
    update_section(SECTION, full, README_BENCH)
    log(f'{osp.relpath(README_BENCH, ROOT)} section {SECTION} updated')
    if update_section(SECTION, summary, README_TOP):
        log(f'README.md section {SECTION} updated')
    else:
        log(f'warning: README.md has no <!-- {SECTION}:start/end --> '
            f'markers; not written')
    return True


def main(argv=None):
    """Run the benchmark; see the module docstring.

    Args:
        argv (list[str], optional): command-line arguments.

    Returns:
        int: the exit status (1 when a model failed).
    """
    args = parse_args(argv)
    started = time.perf_counter()

    def log(msg):
        print(f'[{time.perf_counter() - started:6.0f}s] {msg}',
              file=sys.stderr, flush=True)

    check_args(args)
    import logging

    import torch
    from mmengine.logging import MMLogger
    torch.set_num_threads(args.threads)
    # Building models here (parameter counts) logs and warns; the tools'
    # own output goes into the logs of the work dir.
    MMLogger.get_current_instance().setLevel(logging.WARNING)
    warnings.filterwarnings('ignore', category=UserWarning)
    status = 0
    if args.int8_only:
        status = int8_only(args, log)
    elif not args.from_results:
        os.makedirs(args.work_dir, exist_ok=True)
        for seed in args.seeds:
            for name in args.models:
                path = osp.join(args.work_dir, f'{name}_seed{seed}.json')
                if osp.isfile(path):  # its run folder is about to go
                    os.remove(path)
                try:
                    result = run_one(name, seed, args, log)
                except StepError as e:
                    log(f'error: {name} seed {seed}: {e}')
                    status = 1
                    continue
                save_json(path, result)
    if not report(args, log):
        status = 1
    return status


if __name__ == '__main__':
    sys.exit(main())
