"""Manual-annotation importers: every format round-trips to COCO with the right instances and masks.

The writers (in tests/helpers.py, with the scene they write) write each tool's format the way the
tool does (CVAT's row-major mask RLE, LabelMe's base64 PNG mask boxes, VIA's all_points_x/y, CVAT's
COCO export with iscrowd=1 RLE masks), independently of the importers, and the source masks are
rasterised as the tool's COCO export would (polygons through pycocotools).
"""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
import tifffile
from pycocotools import mask as mask_utils

from mask2former.data.coco import read_coco_json
from mask2former.data.coco_masks import rle_string_counts
from mask2former.data.importers import FORMATS, decode_cvat_rle, detect_format, load_manual_annotations
from mask2former.data.organize import organize_unified_dataset
from mask2former.errors import DatasetError
from tests.helpers import (
    POLY_A,
    POLY_B,
    H,
    W,
    assert_same_instances,
    label_scene,
    make_coco_dataset,
    output_masks,
    rasterise,
    ring_mask,
    scene,
    write_cvat,
    write_cvat_coco,
    write_image,
    write_labelme,
    write_via,
)

# --------------------------------------------------------------------------- the scene


def truth_masks(shapes: list) -> np.ndarray:
    return np.stack([rasterise(s) if kind == "polygon" else s for kind, s in shapes])


# --------------------------------------------------------------------------- format writers


def write_label_images(folder: str, layout: str = "suffix") -> np.ndarray:
    labels, _ = label_scene()
    if layout == "suffix":
        os.makedirs(folder, exist_ok=True)
        write_image(os.path.join(folder, "field_c.png"))
        tifffile.imwrite(os.path.join(folder, "field_c_labels.tif"), labels)
        write_image(os.path.join(folder, "unlabelled_field.png"), seed=5)
    else:
        os.makedirs(os.path.join(folder, "images"), exist_ok=True)
        os.makedirs(os.path.join(folder, "labels"), exist_ok=True)
        write_image(os.path.join(folder, "images", "field_c.tif"), dtype=np.uint16)
        cv2.imwrite(os.path.join(folder, "labels", "field_c.png"), labels)
    return labels


# --------------------------------------------------------------------------- helpers


def organize(tmp_path, manual, **kwargs) -> dict:
    algorithmic = str(tmp_path / "annotator_out")
    if not os.path.isdir(algorithmic):
        make_coco_dataset(algorithmic, {"train_annotations.json": 2, "test_annotations.json": 1}, size=H)
    kwargs.setdefault("progress", False)
    return organize_unified_dataset(algorithmic, manual, str(tmp_path / "out"), **kwargs)


def manual_json(summary: dict, split: str = "train") -> str:
    return summary["splits"][f"myotube_manual_{split}"]["json_file"]


# --------------------------------------------------------------------------- round trips


def test_cvat_xml_round_trip_polygons_masks_overlap(tmp_path):
    src = scene()
    path = write_cvat(str(tmp_path / "cvat"), src)
    assert detect_format(path) == "cvat" and detect_format(str(tmp_path / "cvat")) == "cvat"
    summary = organize(tmp_path, path)
    got = output_masks(manual_json(summary))
    for name, shapes in src.items():
        assert_same_instances(truth_masks(shapes), got[name])
    assert any("<box> shapes skipped" in w for w in summary["warnings"])


def test_cvat_rle_decoding_is_row_major_from_background():
    mask = np.zeros((3, 4), bool)
    mask[0, 1:3] = True
    mask[2, 0] = True
    decoded = decode_cvat_rle("1, 2, 5, 1, 3", 4, 3)
    np.testing.assert_array_equal(decoded, mask)
    with pytest.raises(DatasetError, match="covers 11 pixels"):
        decode_cvat_rle("1, 2, 5, 3", 4, 3, file="a.xml")


def test_cvat_subsets_become_splits(tmp_path):
    src = scene()
    path = write_cvat(
        str(tmp_path / "cvat"), src, subsets={"field_a.png": "Train", "field_b.png": "Validation"}
    )
    summary = organize(tmp_path, path, manual_test_fraction=0.5)
    assert output_masks(manual_json(summary, "train")).keys() == {"field_a.png"}
    assert output_masks(manual_json(summary, "test")).keys() == {"field_b.png"}
    assert any("--manual_test_fraction ignored" in w for w in summary["warnings"])


@pytest.mark.parametrize("embed", [False, True], ids=["image-files", "embedded-imageData"])
def test_labelme_round_trip(tmp_path, embed):
    src = scene()
    folder = write_labelme(str(tmp_path / "labelme"), src, embed_images=embed)
    assert detect_format(folder) == "labelme"
    summary = organize(tmp_path, folder)
    got = output_masks(manual_json(summary))
    for name, shapes in src.items():
        assert_same_instances(truth_masks(shapes), got[name])
    for name in src:  # the embedded bytes are the image, unchanged
        written = os.path.join(summary["output"], "images", name)
        assert cv2.imread(written, cv2.IMREAD_UNCHANGED).shape == (H, W)


def test_labelme_group_id_merges_shapes_into_one_instance(tmp_path):
    folder = tmp_path / "labelme"
    write_labelme(str(folder), {"field_a.png": [("polygon", POLY_A), ("polygon", POLY_B)]})
    doc = json.loads((folder / "field_a.json").read_text())
    for shape in doc["shapes"][:2]:
        shape["group_id"] = 3
    (folder / "field_a.json").write_text(json.dumps(doc))
    dataset = load_manual_annotations(str(folder))
    assert dataset.format == "labelme" and dataset.categories == ["myotube"]
    assert len(dataset.images[0].instances) == 1
    union = rasterise(POLY_A) | rasterise(POLY_B)
    np.testing.assert_array_equal(dataset.images[0].instances[0].to_mask(H, W), union)


def test_labelme_group_of_polygon_and_mask_is_their_union(tmp_path):
    folder = tmp_path / "labelme"
    write_labelme(str(folder), {"field_b.png": [("mask", ring_mask()), ("polygon", POLY_A)]})
    doc = json.loads((folder / "field_b.json").read_text())
    for shape in doc["shapes"][:2]:
        shape["group_id"] = 1
    (folder / "field_b.json").write_text(json.dumps(doc))
    [image] = load_manual_annotations(str(folder)).images
    [instance] = image.instances
    assert not instance.is_polygon
    np.testing.assert_array_equal(instance.to_mask(H, W), ring_mask() | rasterise(POLY_A))


@pytest.mark.parametrize("project", [True, False], ids=["project", "annotation-export"])
def test_via_round_trip(tmp_path, project):
    src = scene(with_masks=False)
    path = write_via(str(tmp_path / "via"), src, project=project)
    assert detect_format(path) == "via"
    summary = organize(tmp_path, path)
    got = output_masks(manual_json(summary))
    for name, shapes in src.items():
        assert_same_instances(truth_masks(shapes), got[name])


def test_via_polyline_is_closed_and_unlabelled_project_is_myotube(tmp_path):
    path = write_via(str(tmp_path / "via"), {"field_a.png": [("polygon", POLY_A)]}, attribute=None)
    doc = json.loads(open(path).read())
    next(iter(doc["_via_img_metadata"].values()))["regions"][0]["shape_attributes"]["name"] = "polyline"
    open(path, "w").write(json.dumps(doc))
    dataset = load_manual_annotations(path)
    [instance] = dataset.images[0].instances
    assert instance.category == "myotube"
    np.testing.assert_array_equal(instance.to_mask(H, W), rasterise(POLY_A))


def test_cvat_coco_export_round_trip_keeps_crowd_masks(tmp_path):
    src = scene()
    write_cvat_coco(str(tmp_path / "coco"), src)
    assert detect_format(str(tmp_path / "coco")) == "coco"
    summary = organize(tmp_path, str(tmp_path / "coco"))
    got = output_masks(manual_json(summary))
    for name, shapes in src.items():
        assert_same_instances(truth_masks(shapes), got[name])
    assert any("iscrowd=1" in w for w in summary["warnings"])
    assert any("box-only" in w for w in summary["warnings"])


def test_coco_subset_files_become_splits(tmp_path):
    write_cvat_coco(str(tmp_path / "coco"), {"field_a.png": [("polygon", POLY_A)]}, "instances_Train.json")
    write_cvat_coco(
        str(tmp_path / "coco"), {"field_b.png": [("polygon", POLY_B)]}, "instances_Test.json", seed=7
    )
    summary = organize(tmp_path, str(tmp_path / "coco"))
    assert output_masks(manual_json(summary, "train")).keys() == {"field_a.png"}
    assert output_masks(manual_json(summary, "test")).keys() == {"field_b.png"}


@pytest.mark.parametrize("layout", ["suffix", "folders"])
def test_label_images_round_trip_holes_and_touching(tmp_path, layout):
    folder = str(tmp_path / "labels_src")
    write_label_images(folder, layout)
    assert detect_format(folder) == "labels"
    summary = organize(tmp_path, folder)
    got = output_masks(manual_json(summary))
    _, truth = label_scene()
    name = "field_c.png" if layout == "suffix" else "field_c.tif"
    assert_same_instances(np.stack(truth), got[name], min_iou=1.0)
    ring = next(m for m in got[name] if m[22, 32])
    assert not ring[30, 40] and ring[22, 32], "the hole must stay a hole"
    if layout == "suffix":
        assert any("without a label file" in w for w in summary["warnings"])


def test_label_image_refuses_colour_and_fractional_labels(tmp_path):
    folder = tmp_path / "labels_src"
    folder.mkdir()
    write_image(str(folder / "x.png"))
    colour = np.zeros((H, W, 3), np.uint8)
    colour[5:10, 5:10] = (255, 0, 0)
    cv2.imwrite(str(folder / "x_labels.png"), colour)
    with pytest.raises(DatasetError, match="x_labels.png: label image has 3 different channels"):
        load_manual_annotations(str(folder))
    os.remove(folder / "x_labels.png")
    tifffile.imwrite(str(folder / "x_labels.tif"), np.full((H, W), 1.5, np.float32))
    with pytest.raises(DatasetError, match="fractional"):
        load_manual_annotations(str(folder))


def test_label_stack_is_refused_not_projected(tmp_path):
    folder = tmp_path / "labels_src"
    folder.mkdir()
    write_image(str(folder / "x.png"))
    labels, _ = label_scene()
    tifffile.imwrite(str(folder / "x_labels.tif"), np.stack([labels, labels[::-1]]))
    with pytest.raises(DatasetError, match=r"x_labels.tif: label image is a stack \(2, 48, 64\)"):
        load_manual_annotations(str(folder))


def test_name_clash_between_sources_is_resolved_consistently(tmp_path):
    # The annotator names its images train_000.png ...; the manual set reuses that name for another image.
    make_coco_dataset(
        str(tmp_path / "annotator_out"), {"train_annotations.json": 2, "test_annotations.json": 1}, size=H
    )
    clash = {"train_000.png": [("polygon", POLY_A), ("polygon", POLY_B)], "unique.png": [("polygon", POLY_B)]}
    write_cvat_coco(str(tmp_path / "coco"), clash, seed=11)
    summary = organize(tmp_path, str(tmp_path / "coco"))
    out = summary["output"]
    names = sorted(os.listdir(os.path.join(out, "images")))
    assert "algorithmic_train_000.png" in names and "manual_train_000.png" in names and "unique.png" in names
    assert len(names) == len(set(n.lower() for n in names)) == 2 + 1 + 2
    for split_json, src_dir in (
        (manual_json(summary), tmp_path / "coco" / "images"),
        (summary["splits"]["myotube_algorithmic_train"]["json_file"], tmp_path / "annotator_out" / "images"),
    ):
        for img in read_coco_json(split_json)["images"]:
            written = open(os.path.join(out, "images", img["file_name"]), "rb").read()
            assert written == open(src_dir / img["original_file_name"], "rb").read()
    got = output_masks(manual_json(summary))
    assert_same_instances(truth_masks(clash["train_000.png"]), got["train_000.png"])


def test_identical_image_in_both_sources_is_stored_once(tmp_path):
    make_coco_dataset(
        str(tmp_path / "annotator_out"), {"train_annotations.json": 2, "test_annotations.json": 1}, size=H
    )
    folder = tmp_path / "labelme"
    write_labelme(str(folder), {"train_000.png": [("polygon", POLY_A)]})
    os.replace(tmp_path / "annotator_out" / "images" / "train_000.png", folder / "train_000.png")
    os.link(folder / "train_000.png", tmp_path / "annotator_out" / "images" / "train_000.png")
    doc = json.loads((folder / "train_000.json").read_text())
    doc["imageWidth"] = H  # the annotator's fixture images are square
    (folder / "train_000.json").write_text(json.dumps(doc))
    summary = organize(tmp_path, str(folder))
    assert summary["renamed_images"] == {}
    assert read_coco_json(manual_json(summary))["images"][0]["file_name"] == "train_000.png"


# --------------------------------------------------------------------------- detection and errors


def test_detect_format_rules(tmp_path):
    write_cvat(str(tmp_path / "c"), scene())
    write_via(str(tmp_path / "v"), scene(with_masks=False))
    write_cvat_coco(str(tmp_path / "o"), scene())
    write_labelme(str(tmp_path / "l"), scene())
    assert [detect_format(str(tmp_path / d)) for d in "cvlo"] == ["cvat", "via", "labelme", "coco"]
    assert set(FORMATS) == {"coco", "cvat", "labelme", "via", "labels"}
    # Two formats in one folder: ambiguous, the user must choose.
    write_via(str(tmp_path / "l"), {"field_a.png": [("polygon", POLY_A)]})
    with pytest.raises(DatasetError, match="several annotation formats.*--manual_format"):
        detect_format(str(tmp_path / "l"))
    assert load_manual_annotations(str(tmp_path / "l"), "labelme").format == "labelme"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no annotations found"):
        detect_format(str(tmp_path / "empty"))
    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(DatasetError, match="neither COCO, LabelMe nor VIA"):
        detect_format(str(tmp_path / "other.json"))


@pytest.mark.parametrize("fmt", ["cvat", "labelme", "via", "coco"])
def test_truncated_file_is_a_one_line_error_naming_it(tmp_path, fmt):
    src = scene(with_masks=fmt != "via")
    if fmt == "cvat":
        path = write_cvat(str(tmp_path / "m"), src)
    elif fmt == "labelme":
        write_labelme(str(tmp_path / "m"), src)
        path = str(tmp_path / "m" / "field_b.json")
    elif fmt == "via":
        path = write_via(str(tmp_path / "m"), src)
    else:
        path = write_cvat_coco(str(tmp_path / "m"), src)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(DatasetError) as err:
        load_manual_annotations(str(tmp_path / "m") if fmt == "labelme" else path, fmt)
    assert str(err.value).startswith(path) and "\n" not in str(err.value)


def test_missing_image_names_the_annotation_file(tmp_path):
    path = write_cvat(str(tmp_path / "cvat"), scene())
    os.remove(tmp_path / "cvat" / "images" / "field_b.png")
    with pytest.raises(DatasetError, match=r"annotations.xml: image 'field_b.png' not found \(looked in"):
        load_manual_annotations(path)


def test_manual_image_dir_is_searched_first(tmp_path):
    path = write_cvat(str(tmp_path / "cvat"), scene())
    os.rename(tmp_path / "cvat" / "images", tmp_path / "elsewhere")
    dataset = load_manual_annotations(path, image_dir=str(tmp_path / "elsewhere"))
    assert all(img.path.startswith(str(tmp_path / "elsewhere")) for img in dataset.images)


def test_garbage_compressed_rle_is_refused_before_pycocotools(tmp_path):
    path = write_cvat_coco(str(tmp_path / "coco"), {"field_a.png": [("polygon", POLY_A)]})
    doc = json.loads(open(path).read())
    doc["annotations"][0]["segmentation"] = {"size": [H, W], "counts": "zzzz~~~~"}
    open(path, "w").write(json.dumps(doc))
    with pytest.raises(DatasetError, match="RLE counts"):
        load_manual_annotations(path)


def test_rle_string_decoder_matches_pycocotools():
    rng = np.random.default_rng(1)
    for _ in range(20):
        mask = rng.random((17, 23)) > rng.uniform(0.2, 0.8)
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        counts = rle_string_counts(rle["counts"].decode("ascii"))
        back = mask_utils.decode(mask_utils.frPyObjects({"size": [17, 23], "counts": counts}, 17, 23))
        np.testing.assert_array_equal(back.astype(bool), mask)
