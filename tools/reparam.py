"""Fuse the mmrep modules of a trained model for deployment.

Usage:
    python tools/reparam.py CONFIG CHECKPOINT [--out FILE] [--verify]
        [--shape H W] [--cfg-options key=value ...]

Every mmrep module is fused and every BatchNorm that directly follows a
convolution in the necks and heads (mmcv ``ConvModule``) is folded into it
(:func:`mmrep.reparameterize_model`). Writes the fused weights to FILE
(default ``<checkpoint stem>_deploy.pth``) and the deploy config (same
config, mmrep backbones with ``deploy=True``, ``norm_cfg=None`` where a
BatchNorm was folded; checked to build exactly the fused structure) beside
it as ``<FILE stem>_config.py``; ``tools/test.py DEPLOY_CONFIG FILE``
evaluates the fused model. ``--verify`` runs the train-time and fused models
in eval mode on one random input and exits non-zero when their outputs
differ by more than 1e-4 relative (a two-stage detector is compared on what
it computes without data samples: features and RPN outputs). A checkpoint that is already fused is
reported and left alone; one that does not fit the config is refused with
the mismatching keys named, and nothing is written.
"""
import argparse
import os.path as osp
import sys

import torch
from mmengine.config import DictAction

import mmrep
from mmrep.apis import build_model, load_config
from mmrep.checkpoints import (CheckpointMismatchError, describe_mismatch,
                               matching_form, read_state_dict, same_layout)
from mmrep.deploy import (NonFiniteWeightsError, make_deploy_config,
                          reparameterize_model, tensor_outputs)
from mmrep.deploy import deploy_path
from mmrep.utils import atomic_save
from mmrep.utils import (CheckpointLoadError, MissingCustomImportsError,
                         check_custom_imports, enforce_weights_only)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out', help='fused weights file')
    parser.add_argument('--verify', action='store_true',
                        help='compare train-time and fused outputs')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size for --verify (default: the '
                        "config's crop_size, else 224x224)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def check_deploy_config(deploy_cfg, fused):
    """Make sure the deploy config builds the fused model's structure.

    Args:
        deploy_cfg (Config): from :func:`mmrep.deploy.make_deploy_config`.
        fused (nn.Module): the fused model.

    Raises:
        CheckpointMismatchError: the fused weights would not load strictly
            into the model the deploy config builds (a conv + BN pair that
            the config's ``norm_cfg=None`` does not describe); the keys are
            named.
    """
    expected = build_model(deploy_cfg).state_dict()
    state = fused.state_dict()
    if not same_layout(state, expected):
        raise CheckpointMismatchError(
            'the deploy config does not build the fused model: '
            + describe_mismatch(state, expected))


def compare(model, fused, shape):
    """Max absolute and relative difference of the two models' outputs
    (:func:`mmrep.deploy.tensor_outputs`: for a two-stage detector, the
    features and RPN outputs)."""
    x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = tensor_outputs(model, x)
        out = tensor_outputs(fused, x)
    abs_diff = max((a - b).abs().max().item() for a, b in zip(ref, out))
    scale = max(a.abs().max().item() for a in ref)
    return abs_diff, abs_diff / max(scale, 1e-12)


def main(argv=None):
    """Run the tool.

    Args:
        argv (list[str], optional): command-line arguments.

    Returns:
        int: exit status (0: written or already fused; 1: bad input, nothing
        written; 2: ``--verify`` failed, nothing written).
    """
    args = parse_args(argv)
    enforce_weights_only()
    try:
        return run(args)
    except (CheckpointLoadError, CheckpointMismatchError, FileNotFoundError,
            MissingCustomImportsError, NonFiniteWeightsError) as e:
        print(f'error: {e}', file=sys.stderr)
        print('nothing was written', file=sys.stderr)
        return 1


def run(args):
    """Fuse, verify and write; see the module docstring.

    Args:
        args (argparse.Namespace): parsed arguments.

    Returns:
        int: exit status, as :func:`main`'s.
    """
    cfg = load_config(args.config, args.cfg_options)
    deploy_cfg = make_deploy_config(cfg)

    state = read_state_dict(args.checkpoint)
    model = build_model(cfg)
    expected = model.state_dict()
    form = matching_form(state, {
        'config': expected,
        'deploy': lambda: build_model(deploy_cfg).state_dict()})
    if form == 'deploy':
        print(f'{args.checkpoint} is already fused; nothing to do.')
        return 0
    if form is None:
        print(f'error: {args.checkpoint} does not fit {args.config}: '
              + describe_mismatch(state, expected), file=sys.stderr)
        return 1
    model.load_state_dict(state, strict=True)
    fused = reparameterize_model(model)
    check_deploy_config(deploy_cfg, fused)

    if args.verify:
        shape = args.shape or tuple(cfg.get('crop_size', (224, 224)))
        abs_diff, rel_diff = compare(model, fused, shape)
        print(f'verify at {shape[0]}x{shape[1]}: max abs diff {abs_diff:.3g},'
              f' max rel diff {rel_diff:.3g}')
        if rel_diff > 1e-4:
            print('error: the fused model differs by more than 1e-4 '
                  'relative', file=sys.stderr)
            return 2

    out = args.out or deploy_path(args.checkpoint)
    config_out = osp.splitext(out)[0] + '_config.py'
    meta = dict(source_checkpoint=osp.basename(args.checkpoint),
                mmrep_version=mmrep.__version__,
                deploy_config=deploy_cfg.pretty_text)
    atomic_save(dict(meta=meta, state_dict=fused.state_dict()), out)
    deploy_cfg.dump(config_out)
    print(f'fused weights: {out}\ndeploy config: {config_out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
