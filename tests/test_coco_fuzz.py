"""Fuzz the COCO reader: whatever the JSON holds, validation returns findings and loading either
succeeds with decodable masks or raises one DatasetError, never another exception."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mask2former.data.coco import dataset_statistics
from mask2former.data.coco_masks import mask_to_rle
from mask2former.data.coco_records import load_coco_instances, record_masks
from mask2former.data.coco_validation import validate_coco
from mask2former.errors import DatasetError

# FUZZ_EXAMPLES=5000 gives a deeper local run; CI keeps the default short.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

numbers = st.one_of(
    st.integers(-5, 40),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 1e-320, 2**31, 2**32, 2**63]),
)
junk = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=6)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
small_ids = st.one_of(st.integers(0, 4), junk)
sizes = st.one_of(st.integers(1, 24), junk)

polygon = st.lists(st.one_of(st.floats(-5, 30), numbers, junk), min_size=0, max_size=14)
good_polygon = st.lists(st.tuples(st.floats(0, 24), st.floats(0, 24)), min_size=3, max_size=8).map(
    lambda points: [v for point in points for v in point]
)
rle_counts = st.one_of(
    st.lists(st.one_of(st.integers(-10, 300), numbers, junk), max_size=8),
    st.text(max_size=12),
    st.text(alphabet=st.characters(min_codepoint=48, max_codepoint=111), max_size=12),
    junk,
)
rle = st.fixed_dictionaries(
    {},
    optional={
        "size": st.one_of(st.lists(st.one_of(st.integers(-2, 24), junk), max_size=3), junk),
        "counts": rle_counts,
    },
)
segmentation = st.one_of(st.lists(st.one_of(polygon, good_polygon), max_size=3), rle, junk)

image_entry = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "id": small_ids,
            "file_name": st.one_of(st.sampled_from(["a.png", "b.png", "../x.png", "", "/abs.png"]), junk),
            "height": sizes,
            "width": sizes,
        },
    ),
    junk,
)
annotation_entry = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "id": small_ids,
            "image_id": small_ids,
            "category_id": st.one_of(st.integers(0, 3), junk),
            "segmentation": segmentation,
            "bbox": st.one_of(st.lists(numbers, max_size=5), junk),
            "iscrowd": st.one_of(st.integers(0, 1), junk),
            "area": junk,
        },
    ),
    junk,
)
category_entry = st.one_of(
    st.fixed_dictionaries({"id": st.integers(0, 3)}, optional={"name": junk}),
    st.fixed_dictionaries({}, optional={"id": junk, "name": junk}),
    junk,
)
coco_document = st.one_of(
    st.fixed_dictionaries(
        {
            "images": st.lists(image_entry, max_size=4),
            "annotations": st.lists(annotation_entry, max_size=5),
            "categories": st.lists(category_entry, max_size=3),
        }
    ),
    st.dictionaries(st.sampled_from(["images", "annotations", "categories", "info"]), junk, max_size=4),
    junk,
)


@st.composite
def valid_document(draw) -> dict:
    """A consistent COCO file: 1-3 images, polygon and RLE instances inside them."""
    images, annotations = [], []
    for i in range(draw(st.integers(1, 3))):
        h, w = draw(st.integers(4, 24)), draw(st.integers(4, 24))
        images.append({"id": i + 1, "file_name": f"img{i}.png", "height": h, "width": w})
        for _ in range(draw(st.integers(0, 3))):
            x0, y0 = draw(st.integers(0, w - 3)), draw(st.integers(0, h - 3))
            x1, y1 = draw(st.integers(x0 + 2, w)), draw(st.integers(y0 + 2, h))
            if draw(st.booleans()):
                segm = [[x0, y0, x1, y0, x1, y1, x0, y1]]
            else:
                mask = np.zeros((h, w), bool)
                mask[y0:y1, x0:x1] = True
                segm = mask_to_rle(mask)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": 1,
                    "segmentation": segm,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "iscrowd": 0,
                }
            )
    if not annotations:
        annotations.append({"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 3, 0, 3, 3]]})
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "myotube"}]}


def _containers(node, path=()):
    """Every (container, key) pair inside a JSON document, for a mutation to hit."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield node, key
            yield from _containers(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield node, index
            yield from _containers(value, path + (index,))


@st.composite
def corrupted_document(draw) -> dict:
    """A valid file with one to three values replaced, deleted or duplicated."""
    document = draw(valid_document())
    for _ in range(draw(st.integers(1, 3))):
        places = list(_containers(document))
        container, key = draw(st.sampled_from(places))
        action = draw(st.sampled_from(["replace", "delete", "duplicate"]))
        if action == "replace":
            container[key] = draw(st.one_of(junk, segmentation, st.integers(-2, 30)))
        elif action == "delete":
            del container[key]
        elif isinstance(container, list):
            container.append(json.loads(json.dumps(container[key])))
    return document


def _write_json(path: Path, document) -> None:
    path.write_text(json.dumps(document, allow_nan=True), encoding="utf-8")


def _check(json_file: Path, image_root: Path, check_images: bool) -> list[dict] | None:
    findings = validate_coco(json_file, image_root, check_images=check_images, num_workers=1)
    for f in findings:
        assert f.level in ("error", "warning")
        assert "\n" not in str(f)
    try:
        stats = dataset_statistics(json_file)
        document = json.loads(json_file.read_text(encoding="utf-8"))
        # The counts are the JSON's own, whatever else is wrong with it.
        assert (stats["images"], stats["instances"]) == (
            len(document["images"]),
            len(document["annotations"]),
        )
    except DatasetError:
        assert any(f.level == "error" for f in findings)
    try:
        records = load_coco_instances(json_file, image_root, check_images=check_images)
    except DatasetError as err:
        assert "\n" not in str(err)
        assert any(f.level == "error" for f in findings)
        event("refused")
        return None
    event("loaded with instances" if any(r["annotations"] for r in records) else "loaded, no instance")
    assert not any(f.level == "error" for f in findings)
    # Whatever validation let through must decode to masks of the declared size.
    for record in records:
        if record["height"] * record["width"] > 4096 * 4096:
            continue  # a huge declared size is valid; decoding it here would only test memory
        masks = record_masks(record)
        assert masks.shape[1:] == (record["height"], record["width"])
        for a in record["annotations"]:
            assert len(a["bbox"]) == 4 and all(isinstance(v, float) for v in a["bbox"])
            assert isinstance(a["category_id"], int)
    return records


@FUZZ
@given(document=coco_document)
def test_any_json_gives_findings_or_one_dataset_error(tmp_path, document):
    json_file = tmp_path / "fuzz.json"
    _write_json(json_file, document)
    _check(json_file, tmp_path / "images", check_images=False)


@FUZZ
@given(document=corrupted_document())
def test_corrupted_valid_file_gives_findings_or_one_dataset_error(tmp_path, document):
    json_file = tmp_path / "corrupted.json"
    _write_json(json_file, document)
    _check(json_file, tmp_path / "images", check_images=False)


@settings(
    max_examples=max(20, EXAMPLES // 5),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(document=valid_document())
def test_valid_documents_load(tmp_path, document):
    json_file = tmp_path / "valid.json"
    _write_json(json_file, document)
    records = _check(json_file, tmp_path / "images", check_images=False)
    assert records is not None
    assert sum(len(r["annotations"]) for r in records) == len(document["annotations"])


@FUZZ
@given(
    polygons=st.lists(st.one_of(polygon, good_polygon), min_size=1, max_size=3),
    counts=rle_counts,
    size=st.one_of(st.lists(st.integers(-1, 30), min_size=2, max_size=2), junk),
    use_rle=st.booleans(),
)
def test_random_segmentations_of_a_valid_file(tmp_path, polygons, counts, size, use_rle):
    """A well-formed file with one random segmentation: the segmentation checks do all the work."""
    segm = {"size": size, "counts": counts} if use_rle else polygons
    document = {
        "images": [{"id": 1, "file_name": "a.png", "height": 24, "width": 20}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": segm}],
        "categories": [{"id": 1, "name": "myotube"}],
    }
    json_file = tmp_path / "seg.json"
    _write_json(json_file, document)
    records = _check(json_file, tmp_path, check_images=False)
    if records is not None:
        (mask,) = record_masks(records[0])
        assert mask.any()  # an accepted segmentation covers at least one pixel


@settings(
    max_examples=max(40, EXAMPLES // 2),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    entries=st.lists(
        st.one_of(
            st.sampled_from([("a.png", 8, 10), ("b.png", 12, 12), ("c.tif", 8, 8)]),  # the true sizes
            st.tuples(
                st.sampled_from(["a.png", "b.png", "c.tif", "missing.png", "broken.png", "dir.png"]),
                st.integers(1, 12),
                st.integers(1, 12),
            ),
        ),
        min_size=1,
        max_size=3,
        unique_by=lambda entry: entry[0],
    ),
    with_annotation=st.booleans(),
)
def test_real_tiny_images(tmp_path, entries, with_annotation):
    images_dir = tmp_path / "images"
    if not images_dir.exists():
        images_dir.mkdir()
        cv2.imwrite(str(images_dir / "a.png"), np.zeros((8, 10), np.uint8))
        cv2.imwrite(str(images_dir / "b.png"), np.zeros((12, 12, 3), np.uint8))
        import tifffile

        tifffile.imwrite(
            images_dir / "c.tif", np.zeros((3, 8, 8), np.uint16), imagej=True, metadata={"axes": "ZYX"}
        )
        (images_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
        (images_dir / "dir.png").mkdir()
    images = [
        {"id": i + 1, "file_name": name, "height": h, "width": w} for i, (name, h, w) in enumerate(entries)
    ]
    annotations = []
    if with_annotation:
        h, w = entries[0][1], entries[0][2]
        annotations.append(
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, w, 0, w, h, 0, h]]}
        )
    json_file = tmp_path / "real.json"
    _write_json(
        json_file, {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "m"}]}
    )
    records = _check(json_file, images_dir, check_images=True)
    if records is not None:
        actual = {"a.png": (8, 10), "b.png": (12, 12), "c.tif": (8, 8)}
        for r in records:
            assert actual[Path(r["file_name"]).name] == (r["height"], r["width"])
