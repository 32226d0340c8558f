"""Evaluating an exported ONNX file (float32 or INT8) with a config's test
dataloader, data preprocessor and evaluator, as mmdeploy's test tool does.

The graph computes what ``tools/export_onnx.py`` exports: the model's
tensor forward on preprocessed images (:func:`mmrep.deploy.tensor_outputs`).
What follows it runs in the config's own model, built without weights
(post-processing has none):

* segmentor: the graph's output is the decode head's logits at its output
  stride; they go through the head's ``predict_by_feat`` (bilinear resize to
  the input) inside the segmentor's ``predict``, so whole and slide
  inference, padding removal and the resize to the original image are
  mmseg's own;
* classifier: the graph's output is the class scores, turned into
  predictions by the head's ``_get_predictions``;
* one-stage detector: the graph's outputs are the head's raw outputs,
  flattened per level; they are regrouped and decoded by the head's
  ``predict_by_feat`` (mmdet's post-processing and NMS).

A two-stage detector's graph ends at the RPN (its RoI heads need proposals)
and is refused.
"""
import os.path as osp
import time

import numpy as np
import torch
from mmengine.registry import init_default_scope

from ..deploy.runtime import run_session, session
from .config import build_model, load_config
from .refusals import BadArgumentError, check_writable, refusals_as_errors
from .test_outputs import write_metrics


def with_data_preprocessor(cfg):
    """Give ``cfg.model`` the config's top-level ``data_preprocessor``, as
    mmengine's runner does (mmpretrain configs keep the mean/std there).

    Args:
        cfg (Config): the config; changed in place.

    Returns:
        Config: ``cfg``.
    """
    top = cfg.get('data_preprocessor')
    model = cfg.get('model')
    if top is not None and model is not None and \
            model.get('data_preprocessor') is None:
        model['data_preprocessor'] = top
    return cfg


def model_kind(model):
    """What kind of OpenMMLab model ``model`` is.

    Args:
        model (nn.Module): an mmseg, mmpretrain or mmdet model.

    Returns:
        str: ``'segmentor'``, ``'classifier'``, ``'detector'`` or
        ``'two-stage detector'``.

    Raises:
        BadArgumentError: none of these.
    """
    if hasattr(model, 'decode_head'):
        return 'segmentor'
    if getattr(model, 'with_rpn', False):
        return 'two-stage detector'
    if hasattr(model, 'bbox_head'):
        return 'detector'
    if hasattr(model, 'head') and hasattr(model.head, '_get_predictions'):
        return 'classifier'
    raise BadArgumentError(f'cannot evaluate an ONNX file for a '
                           f'{type(model).__name__} (segmentors, classifiers '
                           f'and one-stage detectors only)')


class OnnxPredictor:
    """The config's model with its tensor forward replaced by an ONNX file.

    Args:
        cfg (Config): the config (train-time or deploy form; only the
            data preprocessor and the post-processing are used).
        path (str): the .onnx file, or an onnxruntime session.
        threads (int, optional): onnxruntime intra-op threads (default:
            torch's).

    Raises:
        BadArgumentError: a two-stage detector, or a model of another kind.
    """

    def __init__(self, cfg, path, threads=None):
        self.model = build_model(with_data_preprocessor(cfg))
        self.kind = model_kind(self.model)
        if self.kind == 'two-stage detector':
            raise BadArgumentError(
                'the ONNX graph of a two-stage detector ends at the RPN '
                '(its RoI heads need proposals); evaluate it with the '
                'checkpoint instead')
        self.session = session(path, threads) if isinstance(path, str) \
            else path
        self.seconds = 0.  # time spent in onnxruntime

    def run(self, inputs):
        """Run the graph.

        Args:
            inputs (Tensor): preprocessed images ``(N, 3, H, W)``.

        Returns:
            list[Tensor]: the graph's outputs.
        """
        start = time.perf_counter()
        outputs = run_session(self.session, inputs.detach().cpu().numpy())
        self.seconds += time.perf_counter() - start
        return [torch.from_numpy(o) for o in outputs]

    def predict(self, inputs, data_samples):
        """The model's ``predict`` with the graph as its tensor forward.

        Args:
            inputs (Tensor): preprocessed images.
            data_samples (list): their data samples.

        Returns:
            list: the data samples with predictions, as ``model.predict``
            returns them.
        """
        model = self.model
        if self.kind == 'segmentor':
            def encode_decode(x, batch_img_metas):
                logits = self.run(x)[0]
                return model.decode_head.predict_by_feat(logits,
                                                         batch_img_metas)
            model.encode_decode = encode_decode
            return model.predict(inputs, data_samples)
        outputs = self.run(inputs)
        if self.kind == 'classifier':
            return model.head._get_predictions(outputs[0], data_samples)
        head = model.bbox_head
        levels = len(head.prior_generator.strides)
        if len(outputs) % levels:
            raise BadArgumentError(
                f'the graph has {len(outputs)} outputs, not a multiple of '
                f'the head\'s {levels} levels')
        groups = [outputs[i:i + levels]
                  for i in range(0, len(outputs), levels)]
        metas = [s.metainfo for s in data_samples]
        results = head.predict_by_feat(*groups, batch_img_metas=metas,
                                       rescale=True)
        return model.add_pred_to_datasample(data_samples, results)

    def test_step(self, data):
        """Preprocess a batch and predict, as ``model.test_step`` does.

        Args:
            data (dict): a batch from the test dataloader.

        Returns:
            list: data samples with predictions.
        """
        with torch.no_grad():
            data = self.model.data_preprocessor(data, False)
            return self.predict(data['inputs'], data['data_samples'])


def build_test_dataloader(cfg, key='test_dataloader'):
    """Build one of the config's dataloaders, in the config's scope.

    Args:
        cfg (Config): the config.
        key (str): ``'test_dataloader'`` (or another dataloader key).

    Returns:
        DataLoader: the dataloader.

    Raises:
        BadArgumentError: the config has no such dataloader.
    """
    from mmengine.runner import Runner
    if not cfg.get(key):
        raise BadArgumentError(f'the config has no {key}')
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    return Runner.build_dataloader(cfg[key], seed=0)


def build_test_evaluator(cfg, dataset):
    """The config's ``test_evaluator`` with the dataset's meta information.

    Args:
        cfg (Config): the config.
        dataset: the test dataset.

    Returns:
        Evaluator: mmengine's evaluator.

    Raises:
        BadArgumentError: the config has no ``test_evaluator``.
    """
    from mmengine.evaluator import Evaluator
    if not cfg.get('test_evaluator'):
        raise BadArgumentError('the config has no test_evaluator')
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    evaluator = Evaluator(cfg.test_evaluator)
    evaluator.dataset_meta = getattr(dataset, 'metainfo', None)
    return evaluator


def evaluate(cfg, step, dataloader=None, max_batches=None):
    """Run ``step`` over the test dataloader and evaluate its predictions.

    Args:
        cfg (Config): the config (dataloader and evaluator).
        step (callable): a batch -> data samples with predictions (a
            model's ``test_step`` or :meth:`OnnxPredictor.test_step`).
        dataloader (DataLoader, optional): default: the config's test
            dataloader.
        max_batches (int, optional): stop after this many batches (the
            metrics then cover them only).

    Returns:
        dict: the evaluator's metrics.
    """
    loader = dataloader or build_test_dataloader(cfg)
    evaluator = build_test_evaluator(cfg, loader.dataset)
    seen = 0
    for i, data in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        outputs = step(data)
        evaluator.process(data_samples=outputs, data_batch=data)
        seen += len(outputs)
    return evaluator.evaluate(seen)


def evaluate_onnx(cfg, path, threads=None, max_batches=None):
    """Evaluate an ONNX file with the config's test dataloader, data
    preprocessor and evaluator.

    Args:
        cfg (Config): the config the file was exported from (train-time or
            deploy form).
        path (str): the .onnx file (float32 or INT8).
        threads (int, optional): onnxruntime intra-op threads.
        max_batches (int, optional): evaluate the first batches only.

    Returns:
        dict: the metrics (``mIoU``, ``accuracy/top1``, ``coco/bbox_mAP``,
        ... as the evaluator names them).

    Raises:
        BadArgumentError: no test dataloader or evaluator, or a model whose
            graph cannot be evaluated (:class:`OnnxPredictor`).
    """
    loader = build_test_dataloader(cfg)
    predictor = OnnxPredictor(cfg, path, threads)
    return evaluate(cfg, predictor.test_step, loader, max_batches)


def evaluate_model(cfg, model, max_batches=None):
    """Evaluate a torch model (e.g. the fused one) the same way.

    Args:
        cfg (Config): the config.
        model (nn.Module): the model, its data preprocessor included.
        max_batches (int, optional): evaluate the first batches only.

    Returns:
        dict: the metrics.
    """
    model.eval()

    def step(data):
        with torch.no_grad():
            return model.test_step(data)
    return evaluate(cfg, step, max_batches=max_batches)


def preprocessed_batches(cfg, model, count, key='test_dataloader',
                         dataloader=None):
    """The first ``count`` batches of a dataloader after the model's data
    preprocessor (normalized, padded), as the graph takes them.

    Args:
        cfg (Config): the config.
        model (nn.Module): holds ``data_preprocessor``.
        count (int): how many batches.
        key (str): the config's dataloader. Default: ``'test_dataloader'``.
        dataloader (DataLoader, optional): use this one instead.

    Returns:
        list[np.ndarray]: up to ``count`` float32 batches (fewer when the
        dataloader has fewer).
    """
    loader = dataloader or build_test_dataloader(cfg, key)
    batches = []
    with torch.no_grad():
        for data in loader:
            if len(batches) >= count:
                break
            data = model.data_preprocessor(data, False)
            batches.append(np.ascontiguousarray(
                data['inputs'].float().cpu().numpy()))
    return batches


def test_onnx(args, log=print):
    """``tools/test.py CONFIG MODEL.onnx``: evaluate an exported graph with
    the config's test dataloader, data preprocessor and evaluator.

    Args:
        args (argparse.Namespace): tools/test.py's arguments (``config``,
            ``checkpoint`` naming the .onnx file, ``cfg_options``,
            ``out_metrics``; ``show_dir``, ``out``, ``tta`` and a launcher
            are refused: they need the torch model).
        log (callable): where the metrics are printed. Default: ``print``.

    Returns:
        dict: the metrics.

    Raises:
        SystemExit: ``'error: ...'`` (exit status 1) for a refused input
            (:func:`~mmrep.apis.refusals_as_errors`), nothing written.
    """
    with refusals_as_errors():
        for option in ('show_dir', 'out', 'tta'):
            if getattr(args, option, None):
                raise BadArgumentError(
                    f'--{option.replace("_", "-")} needs the torch model; '
                    f'an ONNX file is evaluated for its metrics only')
        if getattr(args, 'launcher', 'none') != 'none':
            raise BadArgumentError('an ONNX file is evaluated in one '
                                   'process (--launcher none)')
        if not osp.isfile(args.checkpoint):
            raise FileNotFoundError(f'no such file: {args.checkpoint}')
        if args.out_metrics:
            check_writable(args.out_metrics, '--out-metrics')
        cfg = load_config(args.config, args.cfg_options)
        loader = build_test_dataloader(cfg)
        build_test_evaluator(cfg, loader.dataset)
        try:
            predictor = OnnxPredictor(cfg, args.checkpoint)
        except BadArgumentError:
            raise
        except Exception as e:  # noqa: BLE001  onnxruntime's own errors
            raise BadArgumentError(f'onnxruntime cannot load '
                                   f'{args.checkpoint}: {e}') from None
    metrics = evaluate(cfg, predictor.test_step, loader)
    for key, value in metrics.items():
        log(f'{key}: {value}')
    if args.out_metrics:
        write_metrics(args.out_metrics, metrics)
    return metrics
