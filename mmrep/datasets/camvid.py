"""CamVid in the 11 classes of the SegNet split, as an mmseg dataset.

This module imports mmseg; ``import mmrep`` does not import it: the name
``CamVidDataset`` of mmrep's dataset registry imports it on its first
lookup (``type='mmrep.CamVidDataset'`` in a config under
``default_scope='mmseg'``).
"""
from mmseg.datasets import BaseSegDataset

from ..registry import DATASETS
from .camvid_convert import (CAMVID_CLASSES, CAMVID_IGNORE_INDEX,
                             CAMVID_PALETTE)

__all__ = ['CamVidDataset', 'CAMVID_CLASSES', 'CAMVID_PALETTE',
           'CAMVID_IGNORE_INDEX']


@DATASETS.register_module()
class CamVidDataset(BaseSegDataset):
    """CamVid, 11 classes (SegNet split: 367 train, 101 val, 233 test).

    It reads the layout that ``tools/dataset_converters/camvid.py`` writes
    (:func:`mmrep.datasets.camvid_convert.convert_camvid`)::

        data_root/img_dir/{train,val,test}/<stem>.png   RGB images
        data_root/ann_dir/{train,val,test}/<stem>.png   uint8 labels

    A label holds the class index 0..10 (:data:`CAMVID_CLASSES`: Sky,
    Building, Pole, Road, Pavement, Tree, SignSymbol, Fence, Car,
    Pedestrian, Bicyclist) or :data:`CAMVID_IGNORE_INDEX` (255) for void,
    which training and evaluation ignore. Labels are used as they are
    (``reduce_zero_label=False``).

    Args:
        data_root (str): the converted folder.
        data_prefix (dict): the split's folders below ``data_root``, e.g.
            ``dict(img_path='img_dir/train', seg_map_path='ann_dir/train')``.
        img_suffix (str): suffix of the images. Default: '.png'.
        seg_map_suffix (str): suffix of the labels. Default: '.png'.
        reduce_zero_label (bool): must stay False: label 0 is Sky.
            Default: False.
        ignore_index (int): the void label. Default:
            :data:`CAMVID_IGNORE_INDEX` (255).
        **kwargs: the other arguments of mmseg's ``BaseSegDataset``
            (``pipeline``, ``test_mode``, ``ann_file`` ...).
    """
    METAINFO = dict(classes=CAMVID_CLASSES,
                    palette=[list(colour) for colour in CAMVID_PALETTE])

    def __init__(self,
                 img_suffix='.png',
                 seg_map_suffix='.png',
                 reduce_zero_label=False,
                 ignore_index=CAMVID_IGNORE_INDEX,
                 **kwargs):
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=reduce_zero_label,
                         ignore_index=ignore_index, **kwargs)
