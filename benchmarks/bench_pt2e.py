"""PyTorch's own INT8 flow measured against the ONNX one: PT2E with the x86
Inductor quantizer (torchao) on the demo RepMLPNet UperNet segmentor that
``benchmarks/bench_quant.py`` trains.

Usage:
    python benchmarks/bench_pt2e.py [--work-dir work_dirs/bench_quant]
        [--seg-iters 300] [--size 512 1024] [--threads 2] [--runs 10]
        [--calib-batches 8] [--no-eval] [--no-conv-add] [--no-onnx]

Needs torchao (``torchao.quantization.pt2e``; torch 2.14 no longer ships
``torch.ao.quantization.quantize_pt2e``) and the bench's checkpoint
(``<work-dir>/seg_RepMLPNet/iter_<seg-iters>.pth``; run
``bench_quant.py --only seg:RepMLPNet`` first). Not run by the tests.

The checkpoint is fused (:func:`mmrep.deploy.reparameterize_model`, through
:func:`mmrep.apis.forms.load_fused`) and UperNet's head turned back into
mmseg's plain ``UPerHead`` (:func:`mmrep.deploy.heads.plain_heads`, as
``tools/quantize.py`` quantizes it). Its tensor forward (the module the
ONNX export uses) is exported with ``torch.export`` at batch 1 and
``--size``, prepared with ``X86InductorQuantizer`` (static, per-channel
symmetric weights and histogram-calibrated uint8 activations, the
quantizer's default config), calibrated on
``--calib-batches`` training images through the test pipeline (resized to
``--size``), converted and compiled with Inductor (freezing on); when
that compile fails (torch 2.14 on this model: Inductor's in-place fusion of
an INT8 convolution with the add after it asserts), the error is recorded
and the model quantized again without the quantizer's convolution + add
annotations (convolutions INT8, those adds float32). Timed,
interleaved, median of ``--runs`` rounds: float32 eager (deploy head and
plain head), float32 ``torch.compile`` (plain head, freezing on), the PT2E
INT8 compiled model and, when the bench wrote it, onnxruntime on the bench's
INT8 QDQ graph. The mIoU on the bench's validation images is taken with a
second export at their size (128x256), also compiled. Results go to
``<work-dir>/pt2e.json``.
"""
import argparse
import copy
import json
import os
import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir',
                        default=osp.join(ROOT, 'work_dirs', 'bench_quant'))
    parser.add_argument('--seg-iters', type=int, default=300)
    parser.add_argument('--size', type=int, nargs=2, default=(512, 1024))
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--runs', type=int, default=10)
    parser.add_argument('--calib-batches', type=int, default=8)
    parser.add_argument('--no-eval', action='store_true',
                        help='skip the mIoU (a second export and compile)')
    parser.add_argument('--no-conv-add', action='store_true',
                        help='quantize without the convolution + add '
                        'annotations from the start (the default recipe '
                        'fails to compile with torch 2.14)')
    parser.add_argument('--no-onnx', action='store_true',
                        help="do not time the bench's INT8 .onnx file")
    return parser.parse_args(argv)


def load_models(args):
    """The config, the fused model and its plain-head copy, and the
    calibration batches (as :func:`mmrep.apis.quantize.quantize_config`
    reads them)."""
    import torch
    from mmengine.config import DictAction
    from mmengine.runner import Runner
    from bench_quant import SEG, SEG_DIR
    from mmrep.apis import load_config
    from mmrep.apis.demo import demo_config_options
    from mmrep.apis.forms import load_fused
    from mmrep.apis.onnx_eval import (preprocessed_batches,
                                      with_data_preprocessor)
    from mmrep.apis.quantize import calibration_config
    from mmrep.deploy.heads import plain_heads
    data = osp.join(args.work_dir, 'data_cityscapes')
    ckpt = osp.join(args.work_dir, 'seg_RepMLPNet',
                    f'iter_{args.seg_iters}.pth')
    if not osp.isfile(ckpt):
        raise SystemExit(f'{ckpt} is missing: run benchmarks/bench_quant.py '
                         '--only seg:RepMLPNet first')
    opts = demo_config_options(data, args.seg_iters)
    options = {k: DictAction._parse_iterable(v)
               for k, v in (opt.split('=', 1) for opt in opts)}
    cfg = with_data_preprocessor(load_config(
        osp.join(SEG_DIR, SEG['RepMLPNet'] + '.py'), options))
    fused = load_fused(cfg, ckpt).fused.eval()
    plain = copy.deepcopy(fused)
    plain_heads(plain)
    loader_cfg, _ = calibration_config(cfg)
    calib = preprocessed_batches(
        cfg, fused, args.calib_batches,
        dataloader=Runner.build_dataloader(loader_cfg, seed=0))
    calib = [torch.from_numpy(c) for c in calib]
    return cfg, fused, plain.eval(), calib


def pt2e_int8(module, example, calib, conv_add=True):
    """PT2E static INT8 with the x86 Inductor quantizer.

    Args:
        module (nn.Module): the tensor forward (float32, eval).
        example (Tensor): the export input (its shape is fixed).
        calib (list[Tensor]): calibration inputs of that shape.
        conv_add (bool): let the quantizer annotate convolution + add
            patterns (fused by Inductor into an INT8 convolution with an
            in-place sum). Default: True.

    Returns:
        GraphModule: the converted model (quantize / dequantize nodes).
    """
    import torch
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e.quantize_pt2e import (convert_pt2e,
                                                         prepare_pt2e)
    quantizer = xiq.X86InductorQuantizer()
    # static; weights per channel (symmetric), activations uint8 per
    # tensor with a histogram observer
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    if not conv_add:  # the convolutions are still quantized, the add not
        quantizer._annotate_conv2d_binary = lambda *a, **k: None
        quantizer._annotate_conv2d_binary_unary = lambda *a, **k: None
    with torch.no_grad():
        gm = torch.export.export(module, (example, ), strict=False).module()
        prepared = prepare_pt2e(gm, quantizer)
        for x in calib:
            prepared(x)
        return convert_pt2e(prepared)


def compiled(fn, example):
    """``torch.compile`` (Inductor, freezing on) and its first call.

    Returns:
        tuple[callable, float]: the compiled function and the seconds the
        first call took (the compile).
    """
    import torch
    import torch._inductor.config as inductor_config
    inductor_config.freezing = True
    out = torch.compile(fn)
    start = time.perf_counter()
    with torch.no_grad():  # the mode it is timed in (no recompile; under
        out(example)       # inference_mode a frozen graph fails to lower)
    return out, time.perf_counter() - start


def miou(cfg, fn):
    """mIoU of the config's test set with ``fn`` as the tensor forward."""
    from mmrep.apis.onnx_eval import OnnxPredictor, evaluate
    predictor = OnnxPredictor(cfg, object())
    import torch

    def run(x):
        with torch.no_grad():
            return [t.float() for t in fn(x.float())]
    predictor.run = run
    return float(evaluate(cfg, predictor.test_step)['mIoU'])


def main(argv=None):
    args = parse_args(argv)
    import numpy as np
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(args.threads)
    import torchao
    from mmrep.apis.onnx_export import TensorForward, max_difference
    from mmrep.apis.quantize import time_forms
    from mmrep.deploy.runtime import run_session, runtime_session
    result = dict(torch=torch.__version__, torchao=torchao.__version__,
                  threads=args.threads, size=list(args.size), steps={})
    out_json = osp.join(args.work_dir, 'pt2e.json')

    def save():
        with open(out_json, 'w') as f:
            json.dump(result, f, indent=2)

    cfg, fused, plain, calib = load_models(args)
    deploy_fwd, plain_fwd = TensorForward(fused).eval(), \
        TensorForward(plain).eval()
    shape = tuple(args.size)
    big = [F.interpolate(c, size=shape, mode='bilinear', align_corners=False)
           for c in calib]
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(
        (1, 3, *shape)).astype(np.float32))

    conv_add = not args.no_conv_add
    try:
        if not conv_add:
            raise RuntimeError('skipped (--no-conv-add)')
        start = time.perf_counter()
        int8 = pt2e_int8(plain_fwd, big[0], big)
        result['steps']['export_prepare_calibrate_convert_s'] = round(
            time.perf_counter() - start, 1)
        int8_c, t = compiled(int8, x)
    except Exception as e:  # noqa: BLE001 (recorded, then retried)
        # torch 2.14: 'QConv Binary Inplace Fusion requires accum is not an
        # alias or mutation.' on this model
        result['default_recipe_failed'] = f'{type(e).__name__}: ' + \
            (str(e).strip().splitlines() or [''])[0][:300]
        print(f'[pt2e] default recipe failed: '
              f'{result["default_recipe_failed"]}', flush=True)
        torch._dynamo.reset()
        conv_add = False
        start = time.perf_counter()
        int8 = pt2e_int8(plain_fwd, big[0], big, conv_add=False)
        result['steps']['export_prepare_calibrate_convert_s'] = round(
            time.perf_counter() - start, 1)
        int8_c, t = compiled(int8, x)
    result['conv_add_annotated'] = conv_add
    result['steps']['int8_compile_s'] = round(t, 1)
    print(f'[pt2e] INT8 compiled in {t:.0f} s', flush=True)
    save()
    float_c, t = compiled(plain_fwd, x)
    result['steps']['float32_compile_s'] = round(t, 1)
    print(f'[pt2e] float32 compiled in {t:.0f} s', flush=True)
    save()

    with torch.no_grad():
        ref = list(plain_fwd(big[0]))
        errs = {'int8 compiled': max_difference(ref, list(int8_c(big[0]))),
                'int8 converted, eager': max_difference(ref,
                                                        list(int8(big[0]))),
                'float32 compiled': max_difference(ref,
                                                   list(float_c(big[0])))}
    result['max_abs_logit_error_vs_float32_eager'] = {
        k: dict(max_abs=round(d, 4), max_abs_reference=round(s, 3))
        for k, (d, s) in errs.items()}
    print(f'[pt2e] errors {result["max_abs_logit_error_vs_float32_eager"]}',
          flush=True)

    def torch_form(fn):
        def run(a):
            with torch.no_grad():
                fn(torch.from_numpy(a))
        return run
    forms = {'float32 eager, deploy head': torch_form(deploy_fwd),
             'float32 eager, plain head': torch_form(plain_fwd),
             'float32 compiled, plain head': torch_form(float_c),
             'int8 pt2e compiled': torch_form(int8_c)}
    onnx = osp.join(args.work_dir, 'onnx', 'seg_RepMLPNet_default.onnx')
    if not args.no_onnx and osp.isfile(onnx):
        sess = runtime_session('onnxruntime', onnx, args.threads)
        forms['int8 onnxruntime QDQ (bench_quant)'] = \
            lambda a: run_session(sess, a)
    load = os.getloadavg()
    times = time_forms(forms, x.numpy(), args.runs)
    result['latency_ms'] = {k: round(v, 2) for k, v in times.items()}
    result['load_average_before_after'] = [
        round(v, 2) for v in load + os.getloadavg()]
    result['runs'] = args.runs
    print(f'[pt2e] latency {result["latency_ms"]}, load '
          f'{result["load_average_before_after"]}', flush=True)
    save()

    if not args.no_eval:
        small = tuple(calib[0].shape[2:])
        start = time.perf_counter()
        int8_small = pt2e_int8(plain_fwd, calib[0], calib, conv_add)
        int8_small_c, t = compiled(int8_small, calib[0])
        result['steps']['eval_size_convert_and_compile_s'] = round(
            time.perf_counter() - start, 1)
        result['eval_size'] = list(small)
        result['mIoU'] = {
            'float32 eager, plain head': round(miou(cfg, plain_fwd), 2),
            'int8 pt2e compiled': round(miou(cfg, int8_small_c), 2)}
        print(f'[pt2e] mIoU {result["mIoU"]}', flush=True)
        save()
    print(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
