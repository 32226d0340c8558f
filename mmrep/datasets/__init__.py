"""Small generated datasets in the layouts of Cityscapes, ADE20K, CamVid,
COCO and ImageNet, for demos and end-to-end tests; real CamVid (11 classes,
SegNet split).

CamVid: :mod:`mmrep.datasets.camvid_convert` converts a CamVid copy into
mmseg's layout (:func:`convert_camvid`, behind
``tools/dataset_converters/camvid.py``; it imports no mmseg), and
``mmrep.datasets.camvid.CamVidDataset`` reads it. That module imports mmseg,
so this package does not import it: a config names
``type='mmrep.CamVidDataset'``, which imports it on the first lookup.
"""
from .camvid_convert import (CAMVID_CLASSES, CAMVID_IGNORE_INDEX,
                             CAMVID_PALETTE, DatasetConversionError,
                             convert_camvid)
from .synthetic import (ADE20K_DEMO_LABELS, CAMVID_DEMO_LABELS,
                        CITYSCAPES_DEMO_CLASSES, make_ade20k_like,
                        make_camvid_like, make_cityscapes_like)
from .synthetic_coco import COCO_DEMO_CLASSES, make_coco_like
from .synthetic_imagenet import make_imagenet_like

__all__ = ['make_cityscapes_like', 'CITYSCAPES_DEMO_CLASSES',
           'make_ade20k_like', 'ADE20K_DEMO_LABELS',
           'make_camvid_like', 'CAMVID_DEMO_LABELS',
           'make_coco_like', 'COCO_DEMO_CLASSES', 'make_imagenet_like',
           'CAMVID_CLASSES', 'CAMVID_PALETTE', 'CAMVID_IGNORE_INDEX',
           'convert_camvid', 'DatasetConversionError']
