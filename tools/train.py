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

from mmengine.config import DictAction

import mmrep  # noqa: F401  (registers mmrep; allow-lists resume objects)
from mmrep.apis import (REFUSED, build_config, build_runner,
                        finish_distributed, fitting_form,
                        setup_cpu_distributed)
from mmrep.checkpoints import CheckpointMismatchError
from mmrep.utils import (CheckpointLoadError, UnsafeCheckpointError,
                         check_custom_imports, check_model_config,
                         enforce_weights_only, safe_load)

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
    finish_distributed()


if __name__ == '__main__':
    main()
