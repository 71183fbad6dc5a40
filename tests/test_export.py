"""Exports read back with the tools users open them with: tifffile, roifile, pycocotools, cv2."""

import csv
import json
import os

import cv2
import numpy as np
import pytest
import roifile
import tifffile
from pycocotools import mask as mask_utils

from mask2former.data.coco_records import load_coco_instances
from mask2former.inference.export import (
    coco_annotations,
    coco_image_entry,
    mask_outline,
    render_overlay,
    write_coco,
    write_csv,
    write_instances_tiff,
    write_png,
    write_roi_zip,
)
from mask2former.structures import CroppedInstances

SIZE = (160, 240)


@pytest.fixture
def crossing():
    """Three instances: two crossing tubes (the crossing overlaps) and a curved one."""
    a = np.zeros(SIZE, np.uint8)
    cv2.line(a, (10, 20), (230, 140), 1, 9)
    b = np.zeros(SIZE, np.uint8)
    cv2.line(b, (10, 140), (230, 20), 1, 7)
    c = np.zeros(SIZE, np.uint8)
    cv2.ellipse(c, (120, 80), (60, 60), 0, 200, 340, 1, 6)
    masks = np.stack([a, b, c]).astype(bool)
    return masks, CroppedInstances.from_masks(masks, [0.9, 0.6, 0.75])


def shoelace(points):
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


def test_label_tiff_reads_back_as_uint16_with_ids(tmp_path, crossing):
    masks, inst = crossing
    path = tmp_path / "labels.tif"
    write_instances_tiff(path, inst, pixel_size=0.65)
    labels = tifffile.imread(path)
    assert labels.dtype == np.uint16 and labels.shape == SIZE
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    overlap = masks[0] & masks[1]
    assert overlap.any() and np.all(labels[overlap] == 1)  # score 0.9 beats 0.6
    assert np.array_equal(labels == 2, masks[1] & ~masks[0] & ~masks[2])  # b (0.6) loses to a and c
    assert np.array_equal(labels > 0, masks.any(0))
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej
        xres = tif.pages[0].tags["XResolution"].value
        assert xres[0] / xres[1] == pytest.approx(1 / 0.65, rel=1e-4)
    assert not [f for f in os.listdir(tmp_path) if f != "labels.tif"]  # no temp file left


def test_roi_zip_opens_with_roifile_and_matches_masks(tmp_path, crossing):
    masks, inst = crossing
    path = tmp_path / "rois.zip"
    assert write_roi_zip(path, inst) == 3
    rois = roifile.roiread(path)
    assert len(rois) == 3
    assert [r.name for r in rois] == ["0001", "0002", "0003"]
    for roi, m in zip(rois, masks):
        pts = roi.coordinates()
        assert shoelace(pts) == pytest.approx(m.sum(), rel=0.03)
        ys, xs = np.nonzero(m)
        assert pts[:, 0].min() >= xs.min() - 1 and pts[:, 0].max() <= xs.max() + 2
        assert pts[:, 1].min() >= ys.min() - 1 and pts[:, 1].max() <= ys.max() + 2


def test_outline_is_the_largest_piece_without_holes():
    m = np.zeros((60, 60), bool)
    m[10:40, 10:40] = True
    m[20:30, 20:30] = False  # a hole
    m[50:52, 50:52] = True  # a speck
    inst = CroppedInstances.from_masks(m[None])
    outline = mask_outline(inst[0])
    assert shoelace(outline) == pytest.approx(900, abs=1)


def test_empty_roi_zip_is_a_valid_zip(tmp_path):
    path = tmp_path / "none.zip"
    assert write_roi_zip(path, CroppedInstances(10, 10, [])) == 0
    import zipfile

    assert zipfile.ZipFile(path).namelist() == []


def test_coco_json_keeps_overlapping_masks_whole(tmp_path, crossing):
    masks, inst = crossing
    anns = coco_annotations(inst, image_id=1)
    path = tmp_path / "pred.json"
    write_coco(path, [coco_image_entry("img.png", inst, 1)], anns)
    data = json.loads(path.read_text())
    assert [a["id"] for a in data["annotations"]] == [1, 2, 3]
    for ann, m in zip(data["annotations"], masks):
        rle = {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}
        assert np.array_equal(mask_utils.decode(rle).astype(bool), m)
        ys, xs = np.nonzero(m)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert ann["area"] == int(m.sum())
    assert [a["score"] for a in data["annotations"]] == pytest.approx([0.9, 0.6, 0.75])
    # The same file loads as a dataset (e.g. to correct predictions in an annotation tool).
    cv2.imwrite(str(tmp_path / "img.png"), np.zeros(SIZE, np.uint8))
    records = load_coco_instances(str(path), str(tmp_path))
    assert len(records) == 1 and len(records[0]["annotations"]) == 3


def test_overlay_colours_instances_and_writes_png(tmp_path, crossing):
    masks, inst = crossing
    image = (np.random.default_rng(0).random(SIZE) * 4000).astype(np.uint16)
    rgb = render_overlay(image, inst)
    assert rgb.shape == (*SIZE, 3) and rgb.dtype == np.uint8
    plain = render_overlay(image, CroppedInstances(*SIZE, []))
    assert not np.array_equal(rgb[masks[0]], plain[masks[0]])
    far = ~cv2.dilate(masks.any(0).astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool)
    assert np.array_equal(rgb[far], plain[far])  # background untouched away from instances
    path = tmp_path / "overlay.png"
    write_png(path, rgb)
    back = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(back, rgb)


def test_csv_round_trip(tmp_path):
    rows = [{"id": 1, "length_px": 12.3456789}, {"id": 2, "length_px": 3.0, "nuclei": 4}]
    path = tmp_path / "m.csv"
    write_csv(path, rows, ["id", "length_px", "nuclei"])
    with open(path, newline="") as f:
        back = list(csv.DictReader(f))
    assert back[0] == {"id": "1", "length_px": "12.3457", "nuclei": ""}
    assert back[1]["nuclei"] == "4"


def test_csv_without_rows_has_its_header_and_refuses_unnamed_keys(tmp_path):
    write_csv(tmp_path / "empty.csv", [], ["id", "length_px"])
    assert (tmp_path / "empty.csv").read_text(encoding="utf-8").splitlines() == ["id,length_px"]
    # A key outside the columns is a mistake in the caller's column list, not a column to drop.
    with pytest.raises(ValueError):
        write_csv(tmp_path / "extra.csv", [{"id": 1, "length_px": 2.0, "width_px": 3.0}], ["id", "length_px"])
    assert [p.name for p in tmp_path.iterdir()] == ["empty.csv"]  # nothing half-written left behind
