"""COCO loader and validator: polygons, RLE, overlaps, contiguous ids, and every validation finding."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mask2former.data.coco import coco_categories, dataset_statistics, read_coco_json, write_coco_json
from mask2former.data.coco_masks import mask_to_rle, segmentation_to_mask
from mask2former.data.coco_records import BBOX_MODE_XYWH_ABS, load_coco_instances, record_masks
from mask2former.data.coco_validation import validate_coco
from mask2former.errors import DatasetError
from tests.helpers import make_coco_dataset

H, W = 20, 30
SQUARE = [2, 2, 10, 2, 10, 10, 2, 10]  # pycocotools fills pixels 2..9 in x and y


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths of the column-major mask, starting with a 0-run."""
    flat = mask.flatten(order="F").astype(np.uint8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0] + runs
    return {"size": list(mask.shape), "counts": runs}


class Coco:
    """A one-file COCO dataset in a temp folder, with real images unless told otherwise."""

    def __init__(self, root: Path):
        self.root = root
        self.images_dir = root / "images"
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self.json = root / "ann.json"

    def image(self, name: str = "a.png", h: int = H, w: int = W, value: int = 50) -> str:
        cv2.imwrite(str(self.images_dir / name), np.full((h, w), value, np.uint8))
        return name

    def write(self, images, annotations, categories=None) -> Path:
        data = {
            "images": images,
            "annotations": annotations,
            "categories": categories if categories is not None else [{"id": 1, "name": "myotube"}],
        }
        self.json.write_text(json.dumps(data))
        return self.json

    def findings(self, check_images: bool = True):
        return validate_coco(self.json, self.images_dir, check_images=check_images)

    def errors(self, check_images: bool = True) -> list[str]:
        return [str(f) for f in self.findings(check_images) if f.level == "error"]

    def load(self, check_images: bool = True):
        return load_coco_instances(self.json, self.images_dir, check_images=check_images)


@pytest.fixture
def coco(tmp_path) -> Coco:
    return Coco(tmp_path / "ds")


def img(i=1, name="a.png", h=H, w=W):
    return {"id": i, "file_name": name, "height": h, "width": w}


def ann(i=1, image_id=1, category_id=1, segmentation=None, **extra):
    return {
        "id": i,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": [list(SQUARE)] if segmentation is None else segmentation,
        **extra,
    }


# --------------------------------------------------------------------------- loading


def test_polygon_rle_and_uncompressed_rle_load_to_the_right_masks(coco):
    coco.image()
    square = np.zeros((H, W), bool)
    square[2:10, 2:10] = True
    blob = np.zeros((H, W), bool)
    blob[5:18, 12:29] = True
    blob[9:12, 20:24] = False  # a hole RLE can hold
    stripe = np.zeros((H, W), bool)
    stripe[0:H, 8:11] = True  # touches the image border: the first run is not a 0-run in some columns
    coco.write(
        [img()],
        [
            ann(1, segmentation=[list(SQUARE)]),
            ann(2, segmentation=mask_to_rle(blob)),
            ann(3, segmentation=uncompressed_rle(stripe)),
        ],
    )
    assert coco.errors() == []
    (record,) = coco.load()
    masks = record_masks(record)
    assert masks.shape == (3, H, W) and masks.dtype == bool
    np.testing.assert_array_equal(masks[0], square)
    np.testing.assert_array_equal(masks[1], blob)
    np.testing.assert_array_equal(masks[2], stripe)
    # Overlaps are kept: the stripe crosses the square and both keep the shared pixels.
    assert (masks[0] & masks[2]).sum() == 8 * 2


def test_uncompressed_rle_starting_with_foreground(coco):
    coco.image()
    mask = np.zeros((H, W), bool)
    mask[0:4, 0:3] = True  # pixel (0, 0) set: the counts start with a 0-run
    rle = uncompressed_rle(mask)
    assert rle["counts"][0] == 0
    coco.write([img()], [ann(segmentation=rle)])
    (record,) = coco.load()
    np.testing.assert_array_equal(record_masks(record)[0], mask)


@pytest.mark.parametrize("use_polygons", [False, True])
def test_generated_dataset_round_trips(tmp_path, use_polygons):
    truth = make_coco_dataset(str(tmp_path), {"x.json": 3}, size=64, seed=3, use_polygons=use_polygons)[
        "x.json"
    ]
    records = load_coco_instances(tmp_path / "annotations" / "x.json", tmp_path / "images")
    assert len(records) == 3
    for record, masks in zip(records, truth):
        got = record_masks(record)
        assert got.shape == (len(masks), 64, 64)
        for g, t in zip(got, masks):
            if use_polygons:
                # Contours run through boundary pixel centres and simplify line caps: rasterised,
                # they lose a rim of at most two pixels and gain almost nothing.
                kernel = np.ones((5, 5), np.uint8)
                assert not (g & ~cv2.dilate(t.astype(np.uint8), kernel).astype(bool)).any()
                assert not (t & ~cv2.dilate(g.astype(np.uint8), kernel).astype(bool)).any()
                assert (g & t).sum() > 0.5 * t.sum()
            else:
                assert g.sum() == t.sum()
                np.testing.assert_array_equal(g, t)


def test_record_fields(coco):
    coco.image("a.png")
    coco.image("b.png")
    coco.write(
        [img(10, "a.png"), img(20, "b.png")],
        [
            ann(5, image_id=20, bbox=[1, 2, 3, 4]),
            ann(6, image_id=20, iscrowd=1),
            ann(7, image_id=10),
        ],
    )
    records = coco.load()
    assert [r["image_id"] for r in records] == [10, 20]
    assert records[0]["file_name"] == os.path.join(str(coco.images_dir), "a.png")
    assert (records[0]["height"], records[0]["width"]) == (H, W)
    by_id = {a["id"]: a for r in records for a in r["annotations"]}
    assert set(by_id) == {5, 6, 7}
    assert by_id[5]["bbox"] == [1.0, 2.0, 3.0, 4.0]  # given bbox kept
    assert by_id[7]["bbox"] == [2.0, 2.0, 8.0, 8.0]  # missing bbox computed from the mask
    assert all(a["bbox_mode"] == BBOX_MODE_XYWH_ABS for a in by_id.values())
    assert by_id[6]["iscrowd"] == 1 and by_id[5]["iscrowd"] == 0
    assert record_masks(records[1]).shape == (1, H, W)  # crowd regions are not instances


def test_category_ids_become_contiguous_in_sorted_id_order(coco):
    coco.image()
    cats = [{"id": 7, "name": "myotube"}, {"id": 3, "name": "debris"}]
    coco.write([img()], [ann(1, category_id=7), ann(2, category_id=3), ann(3, category_id=7)], cats)
    (record,) = coco.load()
    assert [a["category_id"] for a in record["annotations"]] == [1, 0, 1]
    assert [c["name"] for c in coco_categories(coco.json)] == ["debris", "myotube"]


def test_image_without_annotations_is_a_warning_and_loads_as_background(coco):
    coco.image("a.png")
    coco.image("empty.png")
    coco.write([img(1, "a.png"), img(2, "empty.png")], [ann(1, image_id=1)])
    findings = coco.findings()
    assert [f.level for f in findings] == ["warning"]
    assert "empty.png" in findings[0].message and "no annotations" in findings[0].message
    records = coco.load()
    assert [len(r["annotations"]) for r in records] == [1, 0]
    assert record_masks(records[1]).shape == (0, H, W)


def test_dataset_statistics(coco):
    coco.write(
        [img(1, "a.png"), img(2, "b.png"), img(3, "c.png")],
        [ann(1, image_id=1), ann(2, image_id=1), ann(3, image_id=1), ann(4, image_id=3)],
    )
    stats = dataset_statistics(coco.json)
    assert stats["images"] == 3 and stats["instances"] == 4
    assert stats["instances_per_image"] == {"min": 0, "median": 1.0, "max": 3}
    assert stats["categories"] == ["myotube"]


def test_write_coco_json_is_atomic_and_readable(tmp_path):
    path = tmp_path / "out" / "a.json"
    path.parent.mkdir()
    write_coco_json(path, [img()], [ann()])
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]
    data = read_coco_json(path)
    assert data["categories"] == [{"id": 1, "name": "myotube", "supercategory": "cell"}]
    assert data["annotations"][0]["segmentation"] == [SQUARE]


def test_segmentation_to_mask_rejects_unknown_types():
    with pytest.raises(ValueError):
        segmentation_to_mask("not a segmentation", H, W)


# --------------------------------------------------------------------------- validation findings


def _only_error(coco: Coco, *needles: str, check_images: bool = True, file: str | None = None):
    """The dataset has exactly one error; it mentions every needle and names ``file``."""
    errors = [f for f in coco.findings(check_images) if f.level == "error"]
    assert len(errors) == 1, errors
    text = str(errors[0])
    for needle in needles:
        assert needle in text, text
    expected_file = file or str(coco.json)
    assert errors[0].file == expected_file
    with pytest.raises(DatasetError) as err:
        coco.load(check_images)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(expected_file + ": ")
    assert errors[0].message in message
    return errors[0]


@pytest.mark.parametrize(
    "segmentation, needles",
    [
        ([[1, 1, 5, 5]], ["annotation id 1", "a.png", "2 points", "at least 3"]),
        ([[1, 1, 5, 5, 9]], ["odd number"]),
        ([[1, 1, 5, 5, 9, 9]], ["zero area"]),
        ([[1, 1, 5, 1, 9, 1, 3, 1]], ["zero area"]),
        ([[2, 2, 12, 12, 12, 2, 2, 16]], ["self-intersecting"]),
        ([[2, 2, 10, 10, 10, 2, 2, 10]], ["self-intersecting"]),  # symmetric bow-tie: signed area 0
        ([[40, 40, 50, 40, 50, 50]], ["outside", "30x20"]),
        ([[-20, -20, -5, -20, -5, -5]], ["outside"]),
        ([[20, 2, 45, 2, 45, 10]], ["outside"]),
        ([[1, 1, 5, float("nan"), 9, 9]], ["non-finite"]),
        ([["a", 1, 5, 5, 9, 9]], ["flat list of numbers"]),
        ([[[1, 1], [5, 5], [9, 1]]], ["flat list of numbers"]),
        ([], ["no segmentation"]),
        ("polygon", ["unsupported segmentation"]),
    ],
)
def test_bad_polygons(coco, segmentation, needles):
    coco.image()
    coco.write([img()], [ann(segmentation=segmentation)])
    _only_error(coco, *needles)


def test_polygon_on_the_border_is_fine(coco):
    coco.image()
    coco.write([img()], [ann(segmentation=[[0, 0, W, 0, W, H, 0, H]])])
    assert coco.errors() == []
    assert record_masks(coco.load()[0])[0].all()


@pytest.mark.parametrize(
    "segmentation, needles",
    [
        (mask_to_rle(np.ones((10, 10), bool)), ["RLE size 10x10", "20x30"]),
        ({"size": [W, H], "counts": [0, H * W]}, ["RLE size 30x20"]),
        ({"size": [H, W], "counts": [5, 10]}, ["15 pixels", "600"]),
        ({"size": [H, W]}, ["counts"]),
        ({"counts": "abc"}, ["size"]),
        ({"size": [H, W], "counts": [0] * 0 + [H * W]}, ["empty"]),
    ],
)
def test_bad_rle(coco, segmentation, needles):
    coco.image()
    coco.write([img()], [ann(segmentation=segmentation)])
    _only_error(coco, *needles)


@pytest.mark.parametrize("counts", ["@@@@###", "0", "zzzzzzzzzzzz", "PPYo0", "é"])
def test_rle_string_with_garbage_counts_is_an_error(coco, counts):
    coco.image()
    coco.write([img()], [ann(segmentation={"size": [H, W], "counts": counts})])
    _only_error(coco, "RLE")


def test_rle_list_with_negative_or_non_integer_counts_is_an_error(coco):
    coco.image()
    for counts in ([700, -100], [300.5, 299.5], ["300", "300"]):
        coco.write([img()], [ann(segmentation={"size": [H, W], "counts": counts})])
        _only_error(coco, "RLE")


def test_missing_image_file(coco):
    coco.write([img(1, "missing.png")], [ann()])
    path = str(coco.images_dir / "missing.png")
    _only_error(coco, "not found", file=path)
    assert coco.errors(check_images=False) == []


@pytest.mark.parametrize("content", [b"", b"this is not a PNG at all" * 10])
def test_corrupt_or_empty_image(coco, content):
    (coco.images_dir / "a.png").write_bytes(content)
    coco.write([img()], [ann()])
    _only_error(coco, file=str(coco.images_dir / "a.png"))


def test_truncated_png(coco):
    coco.image(h=64, w=64)
    path = coco.images_dir / "a.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    coco.write([img(h=64, w=64)], [ann()])
    _only_error(coco, file=str(path))


def test_directory_instead_of_an_image(coco):
    (coco.images_dir / "a.png").mkdir()
    coco.write([img()], [ann()])
    _only_error(coco, "directory", file=str(coco.images_dir / "a.png"))


def test_image_size_differs_from_json(coco):
    coco.image(h=H, w=W)
    coco.write([img(h=H + 5, w=W)], [ann()])
    _only_error(coco, "30x20", "30x25", file=str(coco.images_dir / "a.png"))


def test_annotation_pointing_at_unknown_image(coco):
    coco.image()
    coco.write([img(1)], [ann(1, image_id=1), ann(2, image_id=99)])
    _only_error(coco, "annotation id 2", "unknown image id 99")


def test_unknown_category(coco):
    coco.image()
    coco.write([img()], [ann(1), ann(2, category_id=5)])
    _only_error(coco, "annotation id 2", "unknown category id 5")


def test_duplicate_image_ids(coco):
    coco.image("a.png")
    coco.image("b.png")
    coco.write([img(1, "a.png"), img(1, "b.png")], [ann()])
    _only_error(coco, "duplicate image id 1", "b.png")


def test_same_file_listed_twice(coco):
    coco.image("a.png")
    coco.write([img(1, "a.png"), img(2, "a.png")], [ann(1, image_id=1), ann(2, image_id=2)])
    _only_error(coco, "a.png", "2 times")


def test_duplicate_annotation_ids(coco):
    coco.image()
    coco.write([img()], [ann(3), ann(3)])
    _only_error(coco, "duplicate annotation id 3")


def test_duplicate_category_ids(coco):
    coco.image()
    coco.write([img()], [ann()], [{"id": 1, "name": "myotube"}, {"id": 1, "name": "other"}])
    _only_error(coco, "duplicate category id 1")


def test_no_categories(coco):
    coco.image()
    coco.write([img()], [ann()], [])
    errors = coco.errors()
    assert any("no categories" in e for e in errors)
    with pytest.raises(DatasetError):
        coco.load()


def test_empty_annotation_list(coco):
    coco.image()
    coco.write([img()], [])
    _only_error(coco, "no annotations")


@pytest.mark.parametrize(
    "entry, needle",
    [
        ({"id": 1, "file_name": "a.png"}, "needs id, file_name, height and width"),
        ({"id": 1, "file_name": "a.png", "height": 0, "width": W}, "invalid size"),
        ({"id": 1, "file_name": "a.png", "height": "20", "width": W}, "invalid size"),
        ("a.png", "needs id"),
    ],
)
def test_bad_image_entries(coco, entry, needle):
    coco.image()
    coco.write([entry, img(2, "b.png")], [ann(image_id=2)])
    errors = coco.errors(check_images=False)
    assert len(errors) == 1 and needle in errors[0], errors


def test_annotation_entry_without_id_or_not_an_object(coco):
    coco.image()
    coco.write([img()], [{"image_id": 1, "category_id": 1, "segmentation": [SQUARE]}, 42])
    errors = coco.errors()
    assert len(errors) == 2
    assert any("without an id" in e for e in errors) and any("not an object" in e for e in errors)


@pytest.mark.parametrize(
    "content, needle",
    [
        (b'[{"images": []}]', "top level is not an object"),
        (b'{"images": [], "annotations": []}', "missing 'categories'"),
        (b'{"images": {}, "annotations": [], "categories": []}', "missing 'images'"),
        (b'{"images": [', "not valid JSON"),
        (b"", "not valid JSON"),
        (b"\xff\xfe\x00garbage \xe9\xe8", "not UTF-8"),
    ],
)
def test_json_that_is_not_coco(coco, content, needle):
    coco.json.write_bytes(content)
    _only_error(coco, needle)


def test_missing_json_file(coco):
    with pytest.raises(DatasetError, match="annotation file not found"):
        coco.load()
    findings = coco.findings()
    assert len(findings) == 1 and findings[0].file == str(coco.json)


def test_several_errors_are_all_listed_and_summarised_in_one_line(coco):
    coco.image()
    coco.write(
        [img(1), img(2, "missing.png")],
        [
            ann(1, segmentation=[[1, 1, 2, 2]]),
            ann(2, category_id=9),
            ann(3, image_id=2),
        ],
    )
    errors = coco.errors()
    assert len(errors) == 3
    assert any("missing.png" in e for e in errors)
    with pytest.raises(DatasetError) as err:
        coco.load()
    assert "\n" not in str(err.value)
    assert "(and 2 more problems; run setup_two_stage.py" in str(err.value)
    coco.write([img(1)], [ann(1, segmentation=[[1, 1, 2, 2]]), ann(2, category_id=9)])
    with pytest.raises(DatasetError, match=r"\(and 1 more problem; run"):
        coco.load()


def test_validation_never_modifies_the_dataset(coco):
    coco.image()
    coco.write([img(), img(2, "missing.png")], [ann(1), ann(2, segmentation=[[1, 1]])])
    before = {p: p.read_bytes() for p in coco.root.rglob("*") if p.is_file()}
    coco.findings()
    with pytest.raises(DatasetError):
        coco.load()
    after = {p: p.read_bytes() for p in coco.root.rglob("*") if p.is_file()}
    assert before == after


def test_mask_to_rle_is_json_ready_and_exact():
    mask = np.zeros((7, 5), bool)
    mask[1:4, 2:5] = True
    rle = mask_to_rle(mask)
    assert isinstance(rle["counts"], str)
    json.dumps(rle)
    np.testing.assert_array_equal(segmentation_to_mask(rle, 7, 5), mask)
    assert int(mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode()})) == 9


def test_compressed_rle_counts_decoder_matches_pycocotools():
    from mask2former.data.coco_masks import rle_string_counts

    rng = np.random.default_rng(7)
    for shape in [(1, 1), (5, 3), (40, 33), (64, 64)]:
        for density in (0.0, 0.05, 0.5, 1.0):
            mask = rng.random(shape) < density
            expected = uncompressed_rle(mask)["counts"]
            compressed = mask_utils.frPyObjects({"size": list(shape), "counts": expected}, *shape)
            assert rle_string_counts(compressed["counts"].decode("ascii")) == expected
    assert rle_string_counts("") == []
    with pytest.raises(ValueError, match="ends in the middle"):
        rle_string_counts("o")  # continuation bit set on the last character
    with pytest.raises(ValueError, match="outside the COCO alphabet"):
        rle_string_counts("\x7f")


def test_multichannel_images_are_validated_with_the_configured_channel(coco):
    import tifffile

    data = np.random.default_rng(1).integers(0, 4096, (2, H, W), dtype=np.uint16)
    tifffile.imwrite(coco.images_dir / "two.tif", data, imagej=True, metadata={"axes": "CYX"})
    coco.write([img(1, "two.tif")], [ann()])
    errors = coco.errors()  # INPUT.CHANNEL -1: training could not read this image
    assert len(errors) == 1 and "2 channels" in errors[0] and "two.tif" in errors[0]
    assert [f for f in validate_coco(coco.json, coco.images_dir, channel=1) if f.level == "error"] == []
    (record,) = load_coco_instances(coco.json, coco.images_dir, channel=1)
    assert record["file_name"].endswith("two.tif")
    with pytest.raises(DatasetError, match="channel 2 requested"):
        load_coco_instances(coco.json, coco.images_dir, channel=2)
