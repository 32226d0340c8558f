"""Train a model from an mmseg, mmdet or mmpretrain config with mmengine.

Usage:
    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--cfg-options key=value ...] [--launcher {none,pytorch,slurm,mpi}]
"""
import argparse
import glob
import os
import os.path as osp
import re

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.runner import Runner

import mmrep  # noqa: F401  (registers mmrep; allow-lists resume objects)
from mmrep.deploy import make_deploy_config
from mmrep.models.checkpoint import (CheckpointMismatchError, checkpoint_form,
                                     read_state_dict)
from mmrep.utils import (CheckpointLoadError, MissingCustomImportsError,
                         ModelConfigError, UnsafeCheckpointError,
                         check_custom_imports, check_model_config,
                         enforce_weights_only, safe_load)
from mmrep.utils.config_check import build_model_state, mmrep_types

#: The errors the tools report as one ``error:`` line, writing nothing.
REFUSED = (MissingCustomImportsError, ModelConfigError, CheckpointLoadError,
           CheckpointMismatchError, FileNotFoundError, ModuleNotFoundError)
#: The checkpoints mmengine's ``CheckpointHook`` writes.
CHECKPOINT_NAME = re.compile(r'(?:iter|epoch)_(\d+)\.pth')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument(
        '--resume', nargs='?', const='auto', default=None, metavar='CKPT',
        help='resume from CKPT; without a path, from the newest checkpoint '
        'of the work dir that loads (a truncated one is skipped), or from '
        'scratch when none does')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision training')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, key=value')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def read_config(name):
    """Read a config file, or ``package::path`` inside an installed
    OpenMMLab package (``mmpretrain::repvgg/repvgg-A0_8xb32_in1k.py``),
    resolved as mmengine resolves such names in ``_base_``.

    Args:
        name (str): the file or ``package::path``.

    Returns:
        Config: the config.

    Raises:
        SystemExit: the file does not exist, the package is not installed,
            or the config does not parse; the message starts with
            ``error:``.
    """
    try:
        path = Config._get_cfg_path(name, '')[0] if '::' in name else name
        if not osp.isfile(path):
            raise FileNotFoundError(f'no such file: {path}')
        return Config.fromfile(path)
    except Exception as e:  # noqa: BLE001  configs fail in many ways
        raise SystemExit(f'error: cannot read config {name}: '
                         f'{type(e).__name__}: {e}') from None


def build_config(args):
    """Load the config and apply the command-line overrides.

    Shared with tools/test.py, whose arguments lack the training options
    (``--amp``, ``--resume``).

    Args:
        args (argparse.Namespace): parsed arguments.

    Returns:
        Config: the config to run.
    """
    cfg = read_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if getattr(args, 'amp', False):
        wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper == 'AmpOptimWrapper':
            print('AMP is already enabled in the config')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    resume = getattr(args, 'resume', None)
    if resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif resume:
        cfg.resume = True
        cfg.load_from = resume
    return cfg


def resume_candidates(work_dir):
    """The checkpoints ``--resume`` without a path may continue from.

    Args:
        work_dir (str): the run's work dir.

    Returns:
        list[str]: ``iter_N.pth`` / ``epoch_N.pth`` files of the work dir
        and of the folder its ``last_checkpoint`` file points to, newest
        (last modified) first.
    """
    folders = [work_dir]
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            folders.append(osp.dirname(f.read().strip()) or work_dir)
    paths = {osp.abspath(p) for folder in folders
             for p in glob.glob(osp.join(glob.escape(folder), '*.pth'))
             if CHECKPOINT_NAME.fullmatch(osp.basename(p))}

    def age(path):
        number = int(CHECKPOINT_NAME.fullmatch(osp.basename(path)).group(1))
        return os.stat(path).st_mtime_ns, number
    return sorted(paths, key=age, reverse=True)


def choose_resume_checkpoint(cfg):
    """Resolve ``--resume`` without a path to the newest checkpoint of the
    work dir that loads.

    A checkpoint that a killed process left truncated is skipped (and
    named); with none that loads, ``cfg.resume`` is turned off and
    training starts from scratch.

    Args:
        cfg (Config): the config to run; ``load_from`` and ``resume`` are
            set here.

    Returns:
        tuple[dict | None, str]: the chosen checkpoint's contents (None when
        none), and the line to log about the choice.

    Raises:
        UnsafeCheckpointError: a checkpoint holds a pickled object outside
            the allow-list: that is no accident of a crash.
    """
    work_dir = cfg.work_dir
    skipped = []
    for path in resume_candidates(work_dir):
        try:
            checkpoint = safe_load(path)
        except UnsafeCheckpointError:
            raise
        except CheckpointLoadError as e:
            skipped.append(f'skipped: {e}')
            continue
        cfg.load_from = path
        return checkpoint, '; '.join(
            [f'--resume: resuming from {path}, the newest checkpoint of '
             f'{work_dir} that loads', *skipped])
    cfg.resume = False
    found = f'no checkpoint of {work_dir} loads' if skipped else \
        f'{work_dir} holds no checkpoint'
    return None, '; '.join([f'--resume: {found}, so training starts from '
                            f'scratch', *skipped])


def fitting_form(checkpoint, cfg, model_state, path, config_path):
    """The form of the config's model that a checkpoint fits exactly.

    Args:
        checkpoint (dict): the loaded checkpoint.
        cfg (Config): the config to run.
        model_state (dict[str, Tensor]): its model's state dict.
        path (str): the checkpoint file, named in messages.
        config_path (str): the config file, named in messages.

    Returns:
        tuple[str, dict[str, Tensor]]: ``'config'`` (the model as
        configured) or ``'deploy'`` (every mmrep module fused,
        :func:`~mmrep.deploy.make_deploy_config`), and the checkpoint's
        weights.

    Raises:
        CheckpointMismatchError: the checkpoint fits neither form.
    """
    state = read_state_dict(checkpoint)
    forms = {'config': model_state}
    if mmrep_types(cfg.model):
        forms['deploy'] = lambda: build_model_state(make_deploy_config(cfg),
                                                    config_path)
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    return checkpoint_form(state, forms, meta if isinstance(meta, dict)
                           else None, name=path), state


def preflight(cfg, config_path):
    """Refuse a run that would fail or load unsafe data, before building it.

    Checks that a config using ``mmrep.*`` types imports mmrep through
    ``custom_imports``; resolves ``--resume`` without a path
    (:func:`choose_resume_checkpoint`); builds the model on the meta device
    and reads the checkpoints its ``init_cfg`` names
    (:func:`~mmrep.utils.check_model_config`); and reads the checkpoint the
    run starts from (``load_from`` or ``--resume``) with the weights-only
    unpickler, which must fit the configured model exactly (every key and
    shape; fused weights are refused). A refused run has created nothing.

    Args:
        cfg (Config): the config to run.
        config_path (str): its file, named in messages.

    Returns:
        list[str]: lines to log once the runner exists.

    Raises:
        SystemExit: with a message starting ``error:``.
    """
    try:
        check_custom_imports(cfg, config_path)
        checkpoint, notes = None, []
        if cfg.get('resume') and not cfg.get('load_from'):
            checkpoint, note = choose_resume_checkpoint(cfg)
            notes.append(note)
        model_state = check_model_config(cfg, config_path)
        path = cfg.get('load_from')
        if path and '://' not in str(path):
            checkpoint = checkpoint or safe_load(path)
            form, _ = fitting_form(checkpoint, cfg, model_state, path,
                                   config_path)
            if form == 'deploy':
                raise CheckpointMismatchError(
                    f'{path} holds fused (deploy) weights, which training '
                    f'cannot start from; give the train-time checkpoint they '
                    f'were fused from')
    except REFUSED as e:
        raise SystemExit(f'error: {e}') from None
    return notes


def _replace_sync_bn(node):
    """``type='SyncBN'`` -> ``'BN'`` below ``node``; returns the count."""
    count = 0
    if isinstance(node, dict):
        if node.get('type') in ('SyncBN', 'MMSyncBN', 'TorchSyncBN'):
            node['type'] = 'BN'
            count += 1
        for value in node.values():
            count += _replace_sync_bn(value)
    elif isinstance(node, list):
        for value in node:
            count += _replace_sync_bn(value)
    return count


def setup_cpu_distributed(cfg):
    """Make a distributed config run on CPUs (gloo), where CUDA is absent.

    mmengine's ``init_dist`` always selects a CUDA device, torch's
    ``SyncBatchNorm`` runs on GPUs only, and mmengine wraps the model in
    DDP with ``device_ids``, which CPU modules refuse. Without CUDA this
    initializes the ``gloo`` process group itself (mmengine then skips its
    own initialization), turns every ``SyncBN`` norm config into ``BN``
    (per-process statistics; logged) and wraps the model in DDP without
    device ids. Does nothing when ``cfg.launcher`` is ``'none'`` or CUDA is
    available.

    Args:
        cfg (Config): the config to run; changed in place.

    Returns:
        bool: whether the CPU setup was applied.
    """
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return False
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    cfg.env_cfg.dist_cfg['backend'] = 'gloo'
    model = cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') \
        else dict(cfg.model)
    converted = _replace_sync_bn(model)
    cfg.model = model
    if cfg.get('sync_bn'):
        cfg.sync_bn = None
        converted += 1
    if converted and dist.get_rank() == 0:
        print_log(f'distributed training on CPU (gloo): converted '
                  f'{converted} SyncBN setting(s) to BN, since SyncBatchNorm '
                  f'runs on GPUs only; BN statistics are per process',
                  logger='current')
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel', device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    return True


def build_runner(cfg):
    """Build the runner the config asks for (``runner_type``) or mmengine's."""
    if 'runner_type' in cfg:
        from mmengine.registry import RUNNERS
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def main(argv=None):
    args = parse_args(argv)
    enforce_weights_only()
    cfg = build_config(args)
    notes = preflight(cfg, args.config)
    setup_cpu_distributed(cfg)
    runner = build_runner(cfg)
    for note in notes:
        runner.logger.info(note)
    runner.train()


if __name__ == '__main__':
    main()
