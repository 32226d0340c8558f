"""What tools/test.py does besides computing the metrics: writing the
predictions (``--out``) in the format of the config's library, and
test-time augmentation (``--tta``) with the config's ``tta_model`` and
``tta_pipeline``."""
import copy
import json
import os
import os.path as osp

from ..utils import atomic_write
from .refusals import BadArgumentError, check_writable

#: The libraries whose ``--out`` meaning tools/test.py follows, by the
#: config's ``default_scope``.
PREDICTION_FORMATS = {
    'mmseg': 'a folder of PNG label maps, one per image (the test '
             "evaluator's output_dir)",
    'mmdet': "a .pkl of the predictions (mmdet's DumpDetResults)",
    'mmpretrain': "a .pkl of the predictions (mmengine's DumpResults)",
}

_PICKLE_SUFFIXES = ('.pkl', '.pickle')


def metrics_as_json(metrics):
    """An evaluator's metrics, or a report holding them, as JSON values.

    Args:
        metrics (dict): name -> a Python or numpy number (or, rarely,
            another value), or a dict or list of such values (a report, as
            :func:`~mmrep.apis.quantize.quantize_config`'s).

    Returns:
        dict: name -> float (a Python ``int`` stays one), the value's
        ``str`` when it is no number, dicts and lists converted item by
        item.
    """
    def value(v):
        if isinstance(v, dict):
            return {k: value(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [value(x) for x in v]
        if type(v) is int:
            return v
        try:
            return float(v)
        except (TypeError, ValueError):
            return str(v)
    return value(dict(metrics))


def write_metrics(path, metrics):
    """Write metrics as a JSON object (tools/test.py's ``--out-metrics``,
    tools/quantize.py's report), creating the folder; the file appears
    whole or not at all.

    Args:
        path (str): the JSON file.
        metrics (dict): the evaluator's output, or a report holding it
            (:func:`metrics_as_json`).
    """
    def write(tmp):
        with open(tmp, 'w') as f:
            json.dump(metrics_as_json(metrics), f, indent=2)
            f.write('\n')
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    atomic_write(path, write)


def config_library(cfg):
    """The OpenMMLab library a config runs in.

    Args:
        cfg (Config): the config.

    Returns:
        str | None: ``'mmseg'``, ``'mmdet'`` or ``'mmpretrain'`` (the
        config's ``default_scope``), or None for any other scope.
    """
    scope = cfg.get('default_scope')
    return scope if scope in PREDICTION_FORMATS else None


def _evaluators(cfg):
    """The config's test metric dicts (``test_evaluator`` is one metric, a
    list of them, or an ``Evaluator`` dict with ``metrics``)."""
    evaluator = cfg.get('test_evaluator')
    if isinstance(evaluator, dict) and 'metrics' in evaluator:
        evaluator = evaluator['metrics']
    if isinstance(evaluator, dict):
        return [evaluator]
    return [m for m in (evaluator or []) if isinstance(m, dict)]


def configure_prediction_output(cfg, out):
    """Check ``--out`` against the config's library and, for mmseg, point
    the test metrics at it, as each library's own tools/test.py does.

    * mmseg: ``out`` is a folder; every test metric gets
      ``output_dir=out`` and ``keep_results=True`` (``IoUMetric`` writes
      one ``<image name>.png`` label map per image there, and still
      computes its metrics);
    * mmdet: ``out`` is a ``.pkl`` / ``.pickle`` file that
      :func:`add_prediction_dump` has ``DumpDetResults`` write (instance
      masks RLE-encoded);
    * mmpretrain: the same with mmengine's ``DumpResults``.

    Nothing is created here; ``out`` is checked to be writable
    (:func:`~mmrep.apis.refusals.check_writable`).

    Args:
        cfg (Config): the config to test; its ``test_evaluator`` is changed
            in place for mmseg.
        out (str): the ``--out`` argument.

    Returns:
        str: the library (``'mmseg'``, ``'mmdet'`` or ``'mmpretrain'``).

    Raises:
        BadArgumentError: the config is of no known library, ``out`` does
            not suit its format (an existing file for mmseg's folder, a
            name without ``.pkl`` / ``.pickle`` or an existing folder for a
            dump) or cannot be written, or the config has no test metric.
    """
    library = config_library(cfg)
    if library is None:
        raise BadArgumentError(
            f"--out needs a config of mmseg, mmdet or mmpretrain "
            f"(default_scope), got default_scope="
            f"{cfg.get('default_scope')!r}")
    metrics = _evaluators(cfg)
    if not metrics:
        raise BadArgumentError('--out needs a test_evaluator in the config; '
                               'it has none')
    if library == 'mmseg':
        if osp.exists(out) and not osp.isdir(out):
            raise BadArgumentError(
                f'--out {out} exists and is not a folder (mmseg writes '
                f'{PREDICTION_FORMATS["mmseg"]})')
        check_writable(out, '--out', folder=True)
        for metric in metrics:
            metric['output_dir'] = out
            metric['keep_results'] = True
        return library
    if not out.endswith(_PICKLE_SUFFIXES):
        raise BadArgumentError(
            f'--out must name a .pkl or .pickle file for an {library} config '
            f'({PREDICTION_FORMATS[library]}), got {out}')
    if osp.isdir(out):
        raise BadArgumentError(f'--out {out} is a folder; name a .pkl file')
    check_writable(out, '--out')
    return library


def add_prediction_dump(runner, library, out):
    """Add the metric that writes the predictions to ``out`` to a built
    runner's test evaluator (mmdet and mmpretrain; mmseg's metrics write
    them themselves, :func:`configure_prediction_output`).

    Args:
        runner (Runner): the runner about to test.
        library (str): from :func:`configure_prediction_output`.
        out (str): the ``.pkl`` file.

    Returns:
        BaseMetric | None: the metric added, or None for mmseg.
    """
    if library == 'mmseg':
        return None
    if library == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        metric = DumpDetResults(out_file_path=out)
    else:
        from mmengine.evaluator import DumpResults
        metric = DumpResults(out_file_path=out)
    runner.test_evaluator.metrics.append(metric)
    return metric


def use_tta(cfg, config_path):
    """Test with the config's test-time augmentation, as mmseg's
    tools/test.py does: the test dataset's pipeline becomes
    ``tta_pipeline`` and the model ``tta_model`` wrapping the configured
    model (``tta_model.module``).

    Call it once the model's form is settled (after
    :func:`~mmrep.apis.preflight_test`, which may switch it to the deploy
    form): the weights then load into ``runner.model.module``.

    Args:
        cfg (Config): the config to test; changed in place.
        config_path (str): its file, named in messages.

    Raises:
        BadArgumentError: the config has no ``tta_model`` or no
            ``tta_pipeline`` (mmrep does not invent them).
    """
    missing = [key for key in ('tta_model', 'tta_pipeline')
               if not cfg.get(key)]
    if missing:
        raise BadArgumentError(
            f'--tta needs tta_model and tta_pipeline in the config; '
            f'{config_path} has no {" and no ".join(missing)}')
    dataset = cfg.test_dataloader.dataset
    while 'pipeline' not in dataset and 'dataset' in dataset:
        dataset = dataset['dataset']  # a wrapper such as ConcatDataset's
    dataset['pipeline'] = copy.deepcopy(cfg.tta_pipeline)
    tta_model = copy.deepcopy(cfg.tta_model)
    tta_model['module'] = cfg.model
    cfg.model = tta_model
