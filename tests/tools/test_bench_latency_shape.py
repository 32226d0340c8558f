"""The CamVid benchmark times its float32 and INT8 forms on the frames its
test mIoU is scored on (``benchmarks/bench_camvid.py``): the test
pipeline's ``Resize`` scale, unless ``--latency-shape`` says otherwise,
and its tables name the size the runs were timed at."""
import types

import pytest
from mmengine import Config

import bench_camvid


@pytest.mark.parametrize('name', sorted(bench_camvid.MODELS))
def test_every_model_is_timed_on_the_scored_frames(name):
    cfg = bench_camvid.read(bench_camvid.MODELS[name])
    resize = [t for t in cfg.test_dataloader.dataset.pipeline
              if t['type'] == 'Resize']
    w, h = resize[0]['scale']
    assert bench_camvid.frame_size(cfg) == (h, w)
    # Not the training crop: the demo trains on smaller crops.
    assert bench_camvid.frame_size(cfg) != bench_camvid.crop_size(cfg)


def _cfg(pipeline):
    return Config(dict(test_dataloader=dict(dataset=dict(pipeline=pipeline))))


def test_frame_size_reads_w_h_and_refuses_a_pipeline_without_resize():
    cfg = _cfg([dict(type='LoadImageFromFile'),
                dict(type='Resize', scale=(640, 320), keep_ratio=True)])
    assert bench_camvid.frame_size(cfg) == (320, 640)
    for pipeline in ([dict(type='LoadImageFromFile')],
                     [dict(type='Resize', scale=512, keep_ratio=True)]):
        with pytest.raises(SystemExit, match=r'^error: the test pipeline has '
                           r'no Resize with a \(W, H\) scale: give '
                           r'--latency-shape H W$'):
            bench_camvid.frame_size(_cfg(pipeline))


@pytest.mark.parametrize('shape,expected', [(None, ['320', '640']),
                                            ([96, 128], ['96', '128'])])
def test_quantize_step_passes_the_timed_size(tmp_path, monkeypatch, shape,
                                             expected):
    seen = []

    def run_tool(argv, log_path, threads):
        seen.append(argv)
        raise bench_camvid.StepError('stopped here')

    monkeypatch.setattr(bench_camvid, 'run_tool', run_tool)
    args = types.SimpleNamespace(
        auto_keep_float=3, calib_batches=8, int8_op_types=['Conv'],
        threads=1, latency_shape=shape, latency_runs=5, runtimes=None)
    cfg = _cfg([dict(type='Resize', scale=(640, 320), keep_ratio=True)])
    logs = []
    result = bench_camvid.quantize(
        'RepVGG', 0, 'c.py', str(tmp_path / 'iter_1.pth'), [], cfg,
        str(tmp_path), args, {}, logs.append)
    assert result == dict(error='stopped here')
    argv = seen[0]
    at = argv.index('--latency-shape')
    assert argv[at + 1:at + 3] == expected


def test_tables_name_the_timed_sizes():
    def entry(h, w):
        return dict(latency=dict(shape=[1, 3, h, w]))
    assert bench_camvid._latency_size([entry(360, 480)] * 2) == '360x480'
    assert bench_camvid._latency_size(
        [entry(360, 480), entry(192, 256)]) == '192x256 / 360x480'
