"""Resuming: the newest checkpoint of the work dir that loads (``--resume``
without a path), and a checkpoint's ``meta['config']`` read without
executing it."""
import ast
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


def config_literals(text):
    """The values of a config text made of plain literal assignments, read
    without executing it.

    Each statement must assign (to plain names) a literal: numbers,
    strings, ``None``/``True``/``False``, and lists, tuples, sets and dicts
    of literals, including ``dict(key=literal, ...)`` as configs write
    them. A leading docstring is allowed.

    Args:
        text (str): the config text.

    Returns:
        dict[str, object]: each assigned name's value.

    Raises:
        ValueError: a statement or value that is no plain literal (one
            line, naming its line number), or text that does not parse.
    """
    try:
        tree = ast.parse(text)
        values = {}
        for node in tree.body:
            if isinstance(node, ast.Expr) and isinstance(
                    node.value, ast.Constant):
                continue
            if not (isinstance(node, ast.Assign) and all(
                    isinstance(t, ast.Name) for t in node.targets)):
                raise ValueError(f'line {node.lineno} is no assignment of '
                                 f'a literal')
            value = _literal(node.value)
            values.update((t.id, value) for t in node.targets)
        return values
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001  SyntaxError, RecursionError...
        raise ValueError(f'it does not parse ({e.__class__.__name__})') \
            from None


def _literal(node):
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id == 'dict' and not node.args \
            and all(kw.arg for kw in node.keywords):
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_literal(k): _literal(v)
                for k, v in zip(node.keys, node.values)}
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_literal(e) for e in node.elts]
        return {ast.List: list, ast.Tuple: tuple,
                ast.Set: set}[type(node)](items)
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f'line {node.lineno} assigns something other '
                         f'than a literal') from None


def defuse_resume_config(checkpoint, path):
    """Make ``meta['config']`` of a checkpoint safe for mmengine's resume.

    mmengine 0.10.7's ``Runner.resume`` executes ``meta['config']`` (as a
    Python config, ``Config.fromstring``) to read ``gpu_ids``. A config
    text of plain literals is replaced by the one assignment resume reads
    (``gpu_ids = [...]``, written here from the value read) or removed;
    any other text is refused. mmengine's own checkpoints write
    ``meta['cfg']``, which is never executed, and no ``meta['config']``.

    Args:
        checkpoint (dict): the loaded checkpoint; changed in place.
        path (str): its file, named in the message.

    Returns:
        bool: whether ``meta['config']`` was there (and replaced).

    Raises:
        UnsafeCheckpointError: ``meta['config']`` is no text of plain
            literal assignments.
    """
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or 'config' not in meta:
        return False
    text = meta.pop('config')
    try:
        if not isinstance(text, str):
            raise ValueError(f'it is a {type(text).__name__}, not text')
        gpu_ids = config_literals(text).get('gpu_ids')
    except ValueError as e:
        raise UnsafeCheckpointError(
            f"refused to resume from {path}: its meta['config'] is not a "
            f"config of plain literals ({e}), and mmengine's resume would "
            f'execute it') from None
    if isinstance(gpu_ids, (list, tuple)) and \
            all(type(i) is int for i in gpu_ids):
        meta['config'] = f'gpu_ids = {list(gpu_ids)!r}'
    return True
