"""Bad input gives one clear error naming the problem, and nothing is
written: unknown or malformed archs, partitions that do not fit without
padding, checkpoints of another family or variant, truncated or corrupt
files, NaN/Inf weights before fusion and anywhere in a checkpoint that a
tool evaluates, exports or measures, configs without custom_imports."""
import logging
import os
import os.path as osp
import random

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from tool_runner import DEMO, load_tool, main_or_error

import mmrep  # noqa: F401
from mmrep.deploy import NonFiniteWeightsError, reparameterize_model
from mmrep.checkpoints import (CHECKPOINT_FAMILIES, CheckpointMismatchError,
                               load_pretrained)
from mmrep.models.backbones import CycleMLP, RepMLPNet, RepMLPResNet, RepVGG
from mmrep.utils import CheckpointLoadError, ModelArgumentError
from mmrep.utils.testing import randomize_bn
from mmrep.utils import safe_load

TINY_REPMLPNET = dict(channels=(8, 16, 32, 64), num_blocks=(1, 1, 1, 1),
                      sharesets=(1, 2, 4, 8),
                      partition_sizes=((4, 8), (4, 4), (2, 4), (2, 2)))
TINY_REPVGG = dict(num_blocks=(1, 1, 1, 1), width_multiplier=(0.25, ) * 4)
FAMILIES = {
    'RepMLPNet': (RepMLPNet, 'T999',
                  dict(channels=(8, 16), num_blocks=(1, 1),
                       partition_sizes=(4, 2), sharesets=(1, 2), foo=1)),
    'RepVGG': (RepVGG, 'C7', dict(num_blocks=(1, 1), width_multiplier=(1, ))),
    'CycleMLP': (CycleMLP, 'B9', dict(channels=(8, 16), num_blocks=(1, 1))),
    'RepMLPResNet': (RepMLPResNet, 'huge-512',
                     dict(num_blocks=(1, 1, 1, 1), block_type='dense')),
}


def test_every_family_has_bad_arch_cases():
    assert set(FAMILIES) == {f.model.__name__
                             for f in CHECKPOINT_FAMILIES.values()}


def files_in(folder):
    return sorted(os.listdir(folder))


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_unknown_arch_name_lists_the_presets(family):
    cls, name, _ = FAMILIES[family]
    with pytest.raises(ValueError) as err:
        cls(arch=name)
    msg = str(err.value)
    assert f'unknown {family} arch {name!r}' in msg
    assert 'presets' in msg and repr(sorted(cls.arch_zoo)) in msg


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_malformed_arch_dict_names_the_problem(family):
    cls, _, arch = FAMILIES[family]
    with pytest.raises(ValueError) as err:
        cls(arch=arch)
    msg = str(err.value)
    expected = {
        'RepMLPNet': "unknown keys ['foo']",
        'RepVGG': 'one num_blocks and width_multiplier entry per stage',
        'CycleMLP': "missing keys ['mlp_ratios']",
        'RepMLPResNet': "block_type must be one of",
    }[family]
    assert expected in msg, msg


def test_partition_that_does_not_fit_without_padding():
    strict = RepMLPNet(TINY_REPMLPNET, pad=False).eval()
    assert strict.input_multiple() == (64, 64)
    with torch.no_grad():
        assert len(strict(torch.randn(1, 3, 64, 128))) == 4  # fits
        with pytest.raises(ValueError) as err:
            strict(torch.randn(1, 3, 64, 60))
    msg = str(err.value)
    assert 'pad=False' in msg and 'stage 0 map 16x15' in msg
    assert 'partition 4x8' in msg and 'multiple of 64x64' in msg
    with pytest.raises(ValueError, match='patch size 4x4'):
        strict(torch.randn(1, 3, 30, 64))
    # The default pads the same input, and the flag survives fusion.
    padded = RepMLPNet(TINY_REPMLPNET).eval()
    with torch.no_grad():
        assert padded(torch.randn(1, 3, 64, 60))[0].shape == (1, 8, 16, 15)
    fused = reparameterize_model(strict)
    assert fused.pad is False and fused._build_args['pad'] is False


def test_checkpoint_of_another_family_names_the_keys(tmp_path):
    path = str(tmp_path / 'repvgg.pth')
    torch.save({'state_dict': RepVGG(TINY_REPVGG).state_dict()}, path)
    model = RepMLPNet(TINY_REPMLPNET)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as err:
        load_pretrained(model, path)
    msg = str(err.value)
    assert 'missing keys' in msg and "'conv_embedding.conv.weight'" in msg
    assert 'unexpected keys' in msg and "'stage0.rbr_dense.conv.weight'" \
        in msg
    assert all(torch.equal(before[k], v)
               for k, v in model.state_dict().items())


def test_checkpoint_of_another_variant_names_keys_and_shapes(tmp_path):
    path = str(tmp_path / 'wide.pth')
    wide = dict(TINY_REPMLPNET, channels=(16, 32, 64, 128))
    torch.save(RepMLPNet(wide).state_dict(), path)
    with pytest.raises(CheckpointMismatchError) as err:
        load_pretrained(RepMLPNet(TINY_REPMLPNET), path)
    msg = str(err.value)
    assert 'shape mismatches' in msg
    assert 'conv_embedding.conv.weight: checkpoint (16, 3, 4, 4) vs model ' \
        '(8, 3, 4, 4)' in msg


@pytest.fixture(scope='module')
def demo_checkpoint(tmp_path_factory):
    """A train-time checkpoint of the demo segmentor (random weights)."""
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    model = randomize_bn(MODELS.build(Config.fromfile(DEMO).model))
    path = str(tmp_path_factory.mktemp('demo') / 'demo.pth')
    torch.save({'state_dict': model.state_dict()}, path)
    return path


@pytest.mark.parametrize('damage', ['truncated', 'corrupt'])
def test_truncated_or_corrupt_checkpoint(demo_checkpoint, tmp_path, damage):
    data = open(demo_checkpoint, 'rb').read()
    bad = str(tmp_path / f'{damage}.pth')
    # Random bytes fail inside torch.load in many ways (EOFError,
    # UnpicklingError, IndexError, ...): each must become one clear error.
    payloads = [data[:len(data) // 2]] if damage == 'truncated' else [
        random.Random(seed).randbytes(4096) for seed in range(64)]
    model = RepMLPNet(TINY_REPMLPNET)
    for payload in payloads:
        with open(bad, 'wb') as f:
            f.write(payload)
        with pytest.raises(CheckpointLoadError, match='truncated or corrupt'):
            load_pretrained(model, bad)
    # tools/reparam.py: one error line naming the file, nothing written.
    out = str(tmp_path / 'out' / 'fused.pth')
    os.makedirs(osp.dirname(out))
    with pytest.raises(SystemExit) as err:
        load_tool('reparam').main([DEMO, bad, '--out', out])
    assert err.value.code.startswith(f'error: cannot read checkpoint {bad}')
    assert files_in(osp.dirname(out)) == []


def test_nan_weights_refuse_fusion():
    model = randomize_bn(RepVGG(TINY_REPVGG)).eval()
    model.stage2[0].rbr_1x1.bn.running_var[3] = float('inf')
    model.stage3[0].rbr_dense.conv.weight.data[0, 0, 0, 0] = float('nan')
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for inplace in (False, True):
        with pytest.raises(NonFiniteWeightsError) as err:
            reparameterize_model(model, inplace=inplace)
        msg = str(err.value)
        assert 'stage2.0.rbr_1x1.bn.running_var (32,) has 0 NaN and 1 Inf' \
            in msg and 'and 1 more tensors' in msg
        # Nothing was fused, not even in place.
        assert model.stage2[0].deploy is False
        assert all(torch.equal(before[k], v) or torch.isnan(v).any()
                   for k, v in model.state_dict().items())


def test_negative_variance_is_caught_after_fusion():
    model = randomize_bn(RepVGG(TINY_REPVGG)).eval()
    model.stage1[0].rbr_dense.bn.running_var[0] = -2.
    with pytest.raises(NonFiniteWeightsError,
                       match='after fusion: stage1.0.rbr_reparam.weight .* BN '
                             'running_var negative'):
        reparameterize_model(model)


def test_reparam_tool_writes_nothing_for_nan_weights(demo_checkpoint,
                                                     tmp_path):
    state = safe_load(demo_checkpoint)
    key = 'backbone.stages.1.0.repmlp_block.fc3_bn.running_mean'
    state['state_dict'][key][0] = float('nan')
    bad = str(tmp_path / 'nan.pth')
    torch.save(state, bad)
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    with pytest.raises(SystemExit) as err:
        load_tool('reparam').main([DEMO, bad, '--out',
                                   str(out_dir / 'fused.pth')])
    assert err.value.code.startswith('error: ')
    assert f'non-finite weights before fusion: {key} (4,) has 1 NaN' in \
        err.value.code
    assert files_in(str(out_dir)) == []


@pytest.fixture(scope='module')
def nan_head(demo_checkpoint, tmp_path_factory):
    """The demo checkpoint with one NaN in the decode head's classifier,
    which no fusion touches, and a tiny dataset for the tools that read
    data before the weights."""
    from mmrep.datasets import make_cityscapes_like
    folder = tmp_path_factory.mktemp('nan_head')
    state = safe_load(demo_checkpoint)
    key = 'decode_head.conv_seg.weight'
    state['state_dict'][key].view(-1)[5] = float('nan')
    path = str(folder / 'nan_head.pth')
    torch.save(state, path)
    data = make_cityscapes_like(str(folder / 'data'), num_train=1,
                                num_val=1, size=(64, 128))
    return dict(path=path, key=key, data=data,
                shape=tuple(state['state_dict'][key].shape))


#: What each tool that evaluates, exports or measures a checkpoint says it
#: refuses, and its command line (``{ckpt}``, ``{out}``, ``{data}``).
NAN_REFUSALS = {
    'test': ('evaluate it', [DEMO, '{ckpt}', '--work-dir', '{out}/work',
                             '--out-metrics', '{out}/metrics.json']),
    'export_onnx': ('export it', [DEMO, '{ckpt}', '--out',
                                  '{out}/model.onnx']),
    'analyze_complexity': ('measure it', [DEMO, '--checkpoint', '{ckpt}',
                                          '--both']),
    'quantize': ('quantize it', [
        DEMO, '{ckpt}', '--out', '{out}/int8.onnx', '--cfg-options',
        'train_dataloader.dataset.data_root={data}',
        'test_dataloader.dataset.data_root={data}']),
    'reparam': ('write its fused form', [DEMO, '{ckpt}', '--out',
                                         '{out}/fused.pth']),
}


@pytest.mark.parametrize('tool', sorted(NAN_REFUSALS))
def test_tools_refuse_nan_weights_anywhere(tool, nan_head, tmp_path):
    """A NaN outside the fused modules too: one line naming the tensor
    (the check of fusion, on every weight), nothing written."""
    action, argv = NAN_REFUSALS[tool]
    argv = [a.format(ckpt=nan_head['path'], out=tmp_path,
                     data=nan_head['data']) for a in argv]
    line = main_or_error(tool, argv)
    assert line == (f'error: non-finite weights in {nan_head["path"]}: '
                    f'{nan_head["key"]} {nan_head["shape"]} has 1 NaN and 0 '
                    f'Inf values; refusing to {action}')
    assert files_in(str(tmp_path)) == []


def _config_without_custom_imports(tmp_path):
    cfg = Config.fromfile(DEMO)
    data = cfg.to_dict()
    data.pop('custom_imports')
    path = str(tmp_path / 'no_imports.py')
    Config(data).dump(path)
    assert 'custom_imports' not in open(path).read()
    return path


@pytest.mark.parametrize('tool', ['train', 'test', 'reparam'])
def test_config_without_custom_imports(tool, demo_checkpoint, tmp_path):
    config = _config_without_custom_imports(tmp_path)
    work = tmp_path / 'work'
    hint = "custom_imports = dict(imports=['mmrep'], " \
        'allow_failed_imports=False)'
    argv = {
        'train': [config, '--work-dir', str(work)],
        'test': [config, demo_checkpoint, '--work-dir', str(work)],
        'reparam': [config, demo_checkpoint, '--out',
                    str(tmp_path / 'fused.pth')],
    }[tool]
    with pytest.raises(SystemExit) as err:
        load_tool(tool).main(argv)
    msg = err.value.code
    assert msg.startswith('error: ') and '\n' not in msg
    assert "uses 'mmrep.RepMLPNet' at model.backbone" in msg
    assert hint in msg
    assert not work.exists() and not (tmp_path / 'fused.pth').exists()


@pytest.mark.parametrize('sizes, problem', [
    ((0, 28, 14, 7), '0 is not a positive int or an (h, w) pair of them'),
    ((-2, 28, 14, 7), '-2 is not a positive int or an (h, w) pair of them'),
    (((56, 0), 28, 14, 7),
     '(56, 0) is not a positive int or an (h, w) pair of them'),
    ((56, 28, 14), 'needs one entry per stage (4)'),
])
def test_partition_sizes_are_validated_at_construction(sizes, problem):
    """They used to build, then fail at the first forward (modulo by zero,
    invalid shape dimension)."""
    with pytest.raises(ValueError) as err:
        RepMLPNet('T224', partition_sizes=sizes)
    assert str(err.value) == f'RepMLPNet partition_sizes={sizes!r}: {problem}'


@pytest.mark.parametrize('key, value, problem', [
    ('channels', (8, 0, 32, 64), '0 is not a positive int'),
    ('num_blocks', (1, 1.5, 1, 1), '1.5 is not a positive int'),
    ('sharesets', (1, 3, 4, 8),
     "stage 1's 3 share sets do not divide its 16 channels"),
    ('partition_sizes', ((4, 8), (4, 4), (2, -4), (2, 2)),
     '(2, -4) is not a positive int or an (h, w) pair of them'),
    ('conv_kernels', (1, 2), '2 is not a positive odd int'),
    ('gp_reduce', 16, "more than stage 0's 8 channels"),
])
def test_arch_values_are_validated_at_construction(key, value, problem):
    with pytest.raises(ValueError) as err:
        RepMLPNet(dict(TINY_REPMLPNET, **{key: value}))
    assert str(err.value) == \
        f"RepMLPNet arch['{key}']={value!r}: {problem}"


def test_maps_much_smaller_than_partitions_warn_once(monkeypatch):
    import mmrep.models.backbones.repmlpnet as repmlpnet
    logged = []
    monkeypatch.setattr(repmlpnet, 'print_log',
                        lambda msg, **kwargs: logged.append((msg, kwargs)))
    # The issue's case: T224's partitions on 128x128 crops (meta device:
    # only the sizes matter).
    with torch.device('meta'):
        t224 = RepMLPNet('T224')
    assert t224.warn_if_mostly_padding((128, 128))
    assert logged[0][0] == (
        'RepMLPNet at input 128x128: ' + '; '.join(
            f'stage {i} map {m}x{m} in {p}x{p} partitions is 67% padding'
            for i, (m, p) in enumerate(zip((32, 16, 8, 4), (56, 28, 14, 7))))
        + '; every block computes on that padding and the partition FCs '
        'are sized for the partitions: partition_sizes=(32, 16, 8, 4) '
        'fit these maps')
    assert logged[0][1]['level'] == logging.WARNING
    # Once, at the first forward; maps that fit or barely pad are quiet.
    logged.clear()
    model = RepMLPNet(TINY_REPMLPNET).eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 8, 16))  # stage 0 map 2x4, partition 4x8
        model(torch.randn(1, 3, 8, 16))
    assert len(logged) == 1 and logged[0][0].startswith(
        'RepMLPNet at input 8x16: stage 0 map 2x4 in 4x8 partitions is 75% '
        'padding; ')
    logged.clear()
    with torch.no_grad():
        RepMLPNet(TINY_REPMLPNET).eval()(torch.randn(1, 3, 64, 112))
    assert logged == []


# ---------------------------------------------------------------------------
# One error hierarchy: every refusal is an MmrepError (beside its builtin
# base), and the tools catch refusals in one place, letting bugs through.
# ---------------------------------------------------------------------------
#: The exception classes of mmrep that are no MmrepError, and why no tool
#: ever prints one.
NOT_REFUSALS = {
    # The pickle scan's verdicts: safe_load and the Paddle reader always
    # turn them into CheckpointLoadError / UnsafeCheckpointError.
    'mmrep.utils.untrusted_pickle.PickleRefused',
    'mmrep.utils.untrusted_pickle.PickleCorrupt',
    # Raised by ``import mmrep`` itself, before mmrep.utils may be imported
    # and before any tool's main runs: an ImportError traceback.
    'mmrep.dependencies.IncompatibleVersionError',
}


def mmrep_exception_classes():
    """``{'module.Class': class}`` for every exception class defined at
    module level anywhere in the mmrep package (every module imported)."""
    import importlib
    import inspect
    import pkgutil
    found = {}
    for info in pkgutil.walk_packages(mmrep.__path__, 'mmrep.'):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, BaseException) \
                    and obj.__module__ == info.name:
                found[f'{info.name}.{obj.__qualname__}'] = obj
    return found


def test_every_refusal_class_is_an_mmrep_error():
    from mmrep.utils.errors import MmrepError, builtin_name
    classes = mmrep_exception_classes()
    assert NOT_REFUSALS <= set(classes), 'NOT_REFUSALS names a lost class'
    assert {'mmrep.utils.serialization.CheckpointLoadError',
            'mmrep.apis.refusals.BadArgumentError',
            'mmrep.checkpoints.conversion.ConversionError',
            'mmrep.deploy.walker.NonFiniteWeightsError',
            'mmrep.utils.errors.ModelArgumentError'} <= set(classes)
    outside = sorted(name for name, cls in classes.items()
                     if not issubclass(cls, MmrepError)
                     and name not in NOT_REFUSALS)
    assert not outside, f'not MmrepError subclasses: {outside}'
    # Each keeps its builtin base: ``except ValueError`` (RuntimeError ...)
    # outside mmrep still catches it, and messages name that base.
    no_base = sorted(name for name, cls in classes.items()
                     if issubclass(cls, MmrepError) and cls is not MmrepError
                     and builtin_name(cls.__new__(cls)) == 'Exception')
    assert not no_base, f'MmrepError subclasses without a builtin base: ' \
        f'{no_base}'
    assert mmrep.MmrepError is MmrepError


def test_tools_define_no_exception_class():
    """A tool's own exception class would be no MmrepError: its refusals
    go through mmrep's classes."""
    import ast
    import glob
    from tool_runner import TOOLS
    for path in sorted(glob.glob(osp.join(TOOLS, '*.py'))):
        tree = ast.parse(open(path).read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b) for b in node.bases]
                assert not any(b.endswith(('Error', 'Exception'))
                               for b in bases), \
                    f'{osp.basename(path)}:{node.lineno} defines ' \
                    f'{node.name}({", ".join(bases)})'


@pytest.mark.parametrize('error, refused', [
    (ModelArgumentError("unknown RepVGG arch 'Z9'; presets: [...]"), True),
    (CheckpointLoadError('cannot read checkpoint x.pth:\n  truncated'), True),
    (FileNotFoundError('checkpoint not found: x.pth'), True),
    (ValueError('a bug'), False),
    (KeyError('a bug'), False),
    (PermissionError(13, 'Permission denied'), False),
    (RuntimeError('a bug'), False),
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else '')
def test_refusals_as_errors_catches_refusals_only(error, refused):
    """A refusal becomes the ``error:`` line; a plain ValueError, KeyError
    or OSError (a bug, or an accident of the environment) propagates."""
    from mmrep.apis import error_line, refusals_as_errors

    @refusals_as_errors()
    def main():
        raise error

    if refused:
        with pytest.raises(SystemExit) as err:
            main()
        assert err.value.code == error_line(error)
        assert '\n' not in err.value.code
    else:
        with pytest.raises(type(error)) as err:
            main()
        assert err.value is error


def test_convert_checkpoint_refuses_bad_archs_and_lets_bugs_through(
        tmp_path, monkeypatch):
    """``--arch``: an unknown preset, a malformed dict, one that does not
    build and original arguments mmrep has no layout for are refused in one
    line (ModelArgumentError, no blanket ``ValueError``); a ValueError from
    a bug inside the conversion is a traceback, not an ``error:`` line."""
    import mmrep.checkpoints.conversion as conversion
    src, dst = str(tmp_path / 'src.pth'), str(tmp_path / 'dst.pth')
    torch.save(RepVGG(TINY_REPVGG).state_dict(), src)
    argv = [src, dst, '--family', 'repvgg', '--backbone-only', '--arch']
    assert main_or_error('convert_checkpoint', argv + ['Z9']).startswith(
        "error: unknown RepVGG arch 'Z9'; presets: ['A0',")
    assert main_or_error(
        'convert_checkpoint', argv + ["{'num_blocks': (1, 1)}"]) == (
        "error: malformed RepVGG arch dict: unknown keys [], missing keys "
        "['width_multiplier']; expected ['num_blocks', 'width_multiplier'] "
        "plus optional ['group_layer_map', 'stem_channels']")
    assert main_or_error('convert_checkpoint', argv + [
        "{'num_blocks': (1, 1, 1, 1), 'width_multiplier': (1, 1, 1, 0)}"]) \
        == ('error: arch num_blocks and width_multiplier must be positive, '
            'got (1, 1, 1, 1) and (1.0, 1.0, 1.0, 0.0)')
    assert main_or_error('convert_checkpoint', argv + [
        "{'num_blocks': (1, 1, 1, 1), 'width_multiplier': (1, 1, 1, 1), "
        "'se_cfg': {'ratio': 4}}"]) == (
        'error: RepVGG blocks with SE layers (se_cfg) are not supported')
    assert not osp.exists(dst)

    def bug(*args, **kwargs):
        raise ValueError('a bug, not an input')
    monkeypatch.setattr(conversion, 'read_state_dict', bug)
    with pytest.raises(ValueError, match='a bug, not an input'):
        load_tool('convert_checkpoint').main([src, dst, '--family',
                                              'repvgg'])
    assert not osp.exists(dst)


def test_a_config_with_nothing_to_fuse_is_a_refusal():
    """What ``tools/export_onnx.py`` and ``tools/reparam.py`` meet when a
    checkpoint needs the fused form of a model with nothing to fuse: a
    ModelConfigError (one ``error:`` line), not a bare ValueError."""
    from mmrep.deploy import make_deploy_config
    from mmrep.utils import ModelConfigError
    cfg = Config(dict(model=dict(type='ImageClassifier',
                                 backbone=dict(type='ResNet', depth=18))))
    with pytest.raises(ModelConfigError, match='builds nothing to fuse'):
        make_deploy_config(cfg)
