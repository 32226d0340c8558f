"""``--resume`` without a path: the newest checkpoint of the work dir that
loads."""
import glob
import os
import os.path as osp
import re

from ..utils import CheckpointLoadError, UnsafeCheckpointError, safe_load

#: The checkpoints mmengine's ``CheckpointHook`` writes.
CHECKPOINT_NAME = re.compile(r'(?:iter|epoch)_(\d+)\.pth')


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
