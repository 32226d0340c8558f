"""Every output path of the tools is checked before the work starts
(:func:`mmrep.apis.refusals.check_writable`): a path that cannot be written
(under a regular file, which no user can make a folder of, or in ``/proc``,
where even root cannot create files) gives one ``error:`` line, exit status
1, and nothing is written or created."""
import os
import os.path as osp
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from tool_runner import DEMO, REPO, main_or_error

import mmrep  # noqa: F401
from mmrep.apis import build_model
from mmrep.apis import UnwritableOutputError, check_writable

REPVGG_A0 = osp.join(REPO, 'configs', 'imagenet', 'repvgg-a0_8xb32_in1k.py')

pytestmark = pytest.mark.usefixtures('one_torch_thread')


@pytest.fixture(scope='module')
def demo_ckpt(tmp_path_factory):
    """Random weights of the demo segmentor."""
    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp('ckpt') / 'demo.pth')
    torch.save({'state_dict': build_model(Config.fromfile(DEMO))
                .state_dict()}, path)
    return path


def test_check_writable_refuses_without_creating_anything(tmp_path):
    afile = tmp_path / 'afile'
    afile.write_text('a regular file')
    cases = [
        (afile / 'out.pth', False, f'{afile} is not a folder'),
        (afile / 'a' / 'b' / 'out.pth', False, f'{afile} is not a folder'),
        (afile, True, 'it is a file, not a folder'),
        (tmp_path, False, 'it is a folder'),
        ('/proc/mmrep-no-such-dir/out.pth', False,
         'cannot create files in /proc'),
        ('/proc/mmrep-out', True, 'cannot create files in /proc'),
    ]
    for path, folder, problem in cases:
        with pytest.raises(UnwritableOutputError) as err:
            check_writable(path, '--out', folder=folder)
        assert str(err.value) == \
            f'--out {path} cannot be written: {problem}'
    # Writable, also below folders to be created: nothing is created.
    check_writable(tmp_path / 'new' / 'deeper' / 'out.pth', '--out')
    check_writable(tmp_path / 'new_folder', '--show-dir', folder=True)
    check_writable(afile, '--out')  # an existing file, replaced
    assert sorted(os.listdir(tmp_path)) == ['afile']
    assert afile.read_text() == 'a regular file'


@pytest.mark.skipif(os.geteuid() == 0, reason='root may write anywhere')
def test_check_writable_refuses_a_read_only_folder(tmp_path):
    folder = tmp_path / 'ro'
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(UnwritableOutputError,
                           match=f'cannot create files in {folder}$'):
            check_writable(folder / 'out.pth', '--out')
    finally:
        folder.chmod(0o755)


def output_cases(ckpt, ok, bad):
    """``{case: (tool, argv, option)}`` with ``bad`` as the option's path
    and the other outputs in the writable folder ``ok``."""
    seg = [DEMO, ckpt, '--work-dir', str(ok / 'work')]
    quant = [DEMO, ckpt, '--out', str(ok / 'q.onnx')]
    return {
        'reparam': ('reparam', [DEMO, ckpt, '--out', bad], '--out'),
        'export_onnx': ('export_onnx', [DEMO, ckpt, '--out', bad], '--out'),
        'test --out-metrics': ('test', seg + ['--out-metrics', bad],
                               '--out-metrics'),
        'test --out (mmseg folder)': ('test', seg + ['--out', bad],
                                      '--out'),
        'test --out (pkl)': ('test', [REPVGG_A0, ckpt, '--work-dir',
                                      str(ok / 'work'), '--out', bad],
                             '--out'),
        'test --show-dir': ('test', seg + ['--show-dir', bad], '--show-dir'),
        'test --work-dir': ('test', [DEMO, ckpt, '--work-dir', bad],
                            '--work-dir'),
        'test model.onnx --out-metrics': (
            'test', [DEMO, str(ok / 'model.onnx'), '--out-metrics', bad],
            '--out-metrics'),
        'quantize --out': ('quantize', [DEMO, ckpt, '--out', bad], '--out'),
        'quantize --out-float': ('quantize', quant + ['--out-float', bad],
                                 '--out-float'),
        'quantize --out-metrics': ('quantize', quant + ['--out-metrics', bad],
                                   '--out-metrics'),
        'analyze_complexity --out-json': (
            'analyze_complexity', [DEMO, '--out-json', bad], '--out-json'),
        'train --work-dir': ('train', [DEMO, '--work-dir', bad],
                             '--work-dir'),
        'convert_checkpoint DST': (
            'convert_checkpoint', [ckpt, bad, '--family', 'repmlpnet'],
            'DST'),
    }


CASES = list(output_cases('ckpt', Path('ok'), 'bad'))


@pytest.mark.parametrize('case', CASES)
def test_tools_refuse_an_unwritable_output_before_the_work(case, demo_ckpt,
                                                           tmp_path):
    """An output below a regular file: one line naming the option and the
    file in the way, before the checkpoint is read (test.py: before the
    evaluation, whose metrics would be lost), nothing created."""
    afile = tmp_path / 'afile'
    afile.write_text('in the way')
    ok = tmp_path / 'ok'
    ok.mkdir()
    (ok / 'model.onnx').write_bytes(b'not read before the check')
    bad = str(afile / ('out.pkl' if case.endswith('(pkl)') else 'out'))
    tool, argv, option = output_cases(demo_ckpt, ok, bad)[case]
    assert main_or_error(tool, argv) == (
        f'error: {option} {bad} cannot be written: {afile} is not a folder')
    assert sorted(os.listdir(tmp_path)) == ['afile', 'ok']
    assert sorted(os.listdir(ok)) == ['model.onnx']
    assert afile.read_text() == 'in the way'


def test_export_refuses_an_output_in_proc(demo_ckpt):
    """Root too: ``os.access`` says yes, creating a file there says no."""
    line = main_or_error('export_onnx', [DEMO, demo_ckpt, '--out',
                                         '/proc/mmrep-out/model.onnx'])
    assert line == ('error: --out /proc/mmrep-out/model.onnx cannot be '
                    'written: cannot create files in /proc')
