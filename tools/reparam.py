"""Fuse the mmrep modules of a trained model for deployment.

Usage:
    python tools/reparam.py CONFIG CHECKPOINT [--out FILE] [--overwrite]
        [--verify] [--shape H W] [--cfg-options key=value ...]

Every mmrep module is fused and every BatchNorm that directly follows a
convolution in the necks and heads (mmcv ``ConvModule``) is folded into it
(:func:`mmrep.reparameterize_model`, through :func:`mmrep.apis.load_fused`).
Writes the fused weights to FILE (default ``<checkpoint stem>_deploy.pth``)
and the deploy config (same config, mmrep backbones with ``deploy=True``,
``norm_cfg=None`` where a BatchNorm was folded; checked to build exactly the
fused structure) beside it as ``<FILE stem>_config.py``;
``tools/test.py DEPLOY_CONFIG FILE`` evaluates the fused model. ``--verify``
runs the train-time and fused models in eval mode on one random input and
fails when their outputs differ by more than 1e-4 relative (a two-stage
detector is compared on what it computes without data samples: features
and RPN outputs). A checkpoint that is already fused is reported and left
alone.

FILE and its deploy config are never replaced silently: the default FILE is
the name ``ReparamCheckpointHook`` gives the fused weights it writes during
training, so when either file exists the run is refused, unless
``--overwrite`` is given (the replaced files are then named in the output).

The two files are written as a pair
(:func:`mmrep.utils.fileio.atomic_write_all`), in this order: both to
temporary files beside them (``.<name>.<random>.tmp``); then an existing
FILE is removed; then the deploy config is renamed into place, and FILE
last. So wherever FILE exists, the deploy config beside it is its own and
complete, even after a SIGKILL at any point (which may leave the temporary
files, or the deploy config without FILE); an error while writing leaves
neither new file and no temporary file. Every output path is checked
before the work starts (:func:`mmrep.apis.refusals.check_writable`).

Exit status:
    0: written, or the checkpoint is already fused (nothing to do);
    1: refused input (missing or unreadable config or checkpoint, a
       checkpoint that fits the config in neither form, with the
       mismatching keys named, non-finite weights, missing
       ``custom_imports``, an output file that exists without
       ``--overwrite``, an output that cannot be written, checked before
       the work): one ``error:`` line on stderr, nothing written;
    2: ``--verify`` failed (the fused model computes something else; not a
       refused input): an ``error:`` line on stderr after the measured
       differences, nothing written; also for arguments argparse rejects.
"""
import argparse
import os
import os.path as osp
import sys

import torch
from mmengine.config import DictAction

import mmrep
from mmrep.apis import (BadArgumentError, check_writable, load_config,
                        load_fused, refusals_as_errors)
from mmrep.deploy import deploy_path, make_deploy_config, tensor_outputs
from mmrep.deploy.walker import check_finite_state
from mmrep.utils import enforce_weights_only
from mmrep.utils.fileio import atomic_write_all


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out', help='fused weights file (default: '
                        '<checkpoint stem>_deploy.pth)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace FILE and its deploy config when they '
                        'exist (refused otherwise)')
    parser.add_argument('--verify', action='store_true',
                        help='compare train-time and fused outputs')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size for --verify (default: the '
                        "config's crop_size, else 224x224)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def compare(model, fused, shape):
    """Max absolute and relative difference of the two models' outputs
    (:func:`mmrep.deploy.tensor_outputs`: for a two-stage detector, the
    features and RPN outputs).

    Args:
        model (nn.Module): the train-time model.
        fused (nn.Module): its fused form.
        shape (tuple[int, int]): the input's ``(H, W)``.

    Returns:
        tuple[float, float]: max absolute and relative difference.
    """
    x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = tensor_outputs(model, x)
        out = tensor_outputs(fused, x)
    abs_diff = max((a - b).abs().max().item() for a, b in zip(ref, out))
    scale = max(a.abs().max().item() for a in ref)
    return abs_diff, abs_diff / max(scale, 1e-12)


def write_text(path, text):
    """Write ``text`` to ``path`` (UTF-8)."""
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text)


@refusals_as_errors()
def main(argv=None):
    """Run the tool: fuse, verify and write; see the module docstring.

    Args:
        argv (list[str], optional): command-line arguments.

    Returns:
        int: exit status (0: written or already fused; 2: ``--verify``
        failed, nothing written).

    Raises:
        SystemExit: ``'error: ...'`` (exit status 1) for a refused input,
            nothing written.
    """
    args = parse_args(argv)
    enforce_weights_only()
    cfg = load_config(args.config, args.cfg_options)
    out = args.out or deploy_path(args.checkpoint)
    config_out = osp.splitext(out)[0] + '_config.py'
    check_writable(out, '--out')
    check_writable(config_out, 'the deploy config')
    loaded = load_fused(cfg, args.checkpoint, keep_unfused=args.verify,
                        check_deploy=True)
    if loaded.form == 'deploy':
        print(f'{args.checkpoint} is already fused; nothing to do.')
        return 0
    check_finite_state(loaded.fused.state_dict(), f'in {args.checkpoint}',
                       'refusing to write its fused form')
    existing = [p for p in (out, config_out) if osp.exists(p)]
    if existing and not args.overwrite:
        verb = 'exists' if len(existing) == 1 else 'exist'
        raise BadArgumentError(
            f'{" and ".join(existing)} already {verb} (the default output '
            f'is also the name ReparamCheckpointHook writes); give '
            f'--overwrite to replace, or --out another file')

    if args.verify:
        shape = args.shape or tuple(cfg.get('crop_size', (224, 224)))
        abs_diff, rel_diff = compare(loaded.model, loaded.fused, shape)
        print(f'verify at {shape[0]}x{shape[1]}: max abs diff {abs_diff:.3g},'
              f' max rel diff {rel_diff:.3g}')
        if rel_diff > 1e-4:
            print('error: the fused model differs by more than 1e-4 '
                  'relative', file=sys.stderr)
            return 2

    deploy_cfg = make_deploy_config(cfg)
    for path in existing:
        print(f'--overwrite: replacing {path}')
    meta = dict(source_checkpoint=osp.basename(args.checkpoint),
                mmrep_version=mmrep.__version__,
                deploy_config=deploy_cfg.pretty_text)
    if loaded.meta.get('dataset_meta'):  # the inference APIs' class names
        meta['dataset_meta'] = loaded.meta['dataset_meta']
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    atomic_write_all([
        (config_out, lambda tmp: write_text(tmp, deploy_cfg.pretty_text)),
        (out, lambda tmp: torch.save(
            dict(meta=meta, state_dict=loaded.fused.state_dict()), tmp))])
    print(f'fused weights: {out}\ndeploy config: {config_out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
