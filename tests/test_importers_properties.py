"""Property-based tests of the importers and the organizer on random polygons, labels and corruptions.

Whatever the input, the organizer either succeeds or raises the project's clear InputError; it never
writes outside OUT and never touches its inputs. Well-formed random annotations come out exactly.
"""

from __future__ import annotations

import json
import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mask2former.data.organize import organize_unified_dataset
from mask2former.errors import InputError
from tests.helpers import (
    POLY_A,
    H,
    W,
    assert_same_instances,
    make_coco_dataset,
    output_masks,
    rasterise,
    ring_mask,
    tree_digest,
    write_cvat,
    write_cvat_coco,
    write_labelme,
    write_via,
)

PROPERTY_SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)

WRITERS = {
    "labelme": lambda folder, scene: write_labelme(folder, scene),
    "via": lambda folder, scene: write_via(folder, scene),
    "cvat": lambda folder, scene: write_cvat(folder, scene),
    "coco": lambda folder, scene: write_cvat_coco(folder, scene),
}

coordinate_x = st.floats(-4, W + 4, allow_nan=False).map(lambda v: round(v, 2))
coordinate_y = st.floats(-4, H + 4, allow_nan=False).map(lambda v: round(v, 2))
polygons = st.lists(st.tuples(coordinate_x, coordinate_y), min_size=3, max_size=7).map(
    lambda pts: [v for p in pts for v in p]
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats() | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def annotator_out(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("props") / "annotator_out")
    make_coco_dataset(root, {"train_annotations.json": 1, "test_annotations.json": 1}, size=32)
    return root


def organize_sandboxed(
    annotator_out: str, write_manual: Callable[[str], str], check: Callable[[dict], None] | None = None
) -> bool:
    """Write a manual source, organize it into a fresh OUT; True on success, False on InputError.

    Asserts the invariants either way: nothing beside OUT, inputs byte-identical.
    """
    with tempfile.TemporaryDirectory() as tmp:
        manual = write_manual(os.path.join(tmp, "inputs"))
        parent = os.path.join(tmp, "work")
        os.makedirs(parent)
        inputs_before, annotator_before = tree_digest(os.path.join(tmp, "inputs")), tree_digest(annotator_out)
        try:
            summary = organize_unified_dataset(
                annotator_out, manual, os.path.join(parent, "out"), progress=False
            )
            ok = True
        except InputError as err:
            assert "\n" not in str(err)
            ok = False
        assert os.listdir(parent) == (["out"] if ok else []), "wrote outside OUT or left a temporary folder"
        assert tree_digest(os.path.join(tmp, "inputs")) == inputs_before, "an input was modified"
        assert tree_digest(annotator_out) == annotator_before, "the annotator output was modified"
        if ok and check is not None:
            check(summary)
    return ok


# --------------------------------------------------------------------------- well-formed random input


@pytest.mark.parametrize("fmt", sorted(WRITERS))
@PROPERTY_SETTINGS
@given(shapes=st.lists(polygons, min_size=1, max_size=4))
def test_random_polygons_come_out_exactly(annotator_out, fmt, shapes):
    truth = [m for m in (rasterise(p) for p in shapes) if m.any()]

    def check(summary):
        split = summary["splits"].get("myotube_manual_train")
        if not truth:  # nothing drawable: the image is left out as empty
            assert split is None
            return
        got = output_masks(split["json_file"])["p.png"]
        assert_same_instances(np.stack(truth), got, min_iou=0.99)

    def write(folder):
        return WRITERS[fmt](os.path.join(folder, fmt), {"p.png": [("polygon", p) for p in shapes]})

    assert organize_sandboxed(annotator_out, write, check), "well-formed polygons must import"


@PROPERTY_SETTINGS
@given(
    labels=hnp.arrays(
        np.uint16,
        st.tuples(st.integers(3, 14), st.integers(3, 14)),
        elements=st.sampled_from([0, 0, 0, 1, 2, 3, 77, 65535]),
    )
)
def test_random_label_images_come_out_exactly(annotator_out, labels):
    ids = [v for v in np.unique(labels) if v]

    def write(folder):
        os.makedirs(folder)
        tifffile.imwrite(os.path.join(folder, "f.tif"), np.zeros(labels.shape, np.uint8) + 9)
        tifffile.imwrite(os.path.join(folder, "f_labels.tif"), labels)
        return folder

    def check(summary):
        split = summary["splits"].get("myotube_manual_train")
        if not ids:
            assert split is None
            return
        got = output_masks(split["json_file"])["f.tif"]
        assert_same_instances(np.stack([labels == v for v in ids]), got, min_iou=1.0)

    assert organize_sandboxed(annotator_out, write, check)


# --------------------------------------------------------------------------- corrupted input


def json_paths(node, prefix=()) -> list[tuple]:
    """Every key path into a JSON document (containers and leaves)."""
    paths = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            paths += json_paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            paths += json_paths(v, prefix + (i,))
    return paths


def mutate(doc, path: tuple, value, delete: bool):
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


SCENE_WITH_MASK = {"a.png": [("polygon", POLY_A), ("mask", ring_mask())], "b.png": [("polygon", POLY_A)]}
JSON_SOURCES = {
    "labelme": (lambda d: write_labelme(d, SCENE_WITH_MASK), "a.json"),
    "via": (
        lambda d: os.path.dirname(
            write_via(d, {"a.png": [("polygon", POLY_A)], "b.png": [("polygon", POLY_A)]})
        ),
        "via_project.json",
    ),
    "coco": (lambda d: write_cvat_coco(d, SCENE_WITH_MASK) and d, "annotations/instances_default.json"),
}


@pytest.mark.parametrize("fmt", sorted(JSON_SOURCES))
@PROPERTY_SETTINGS
@given(data=st.data())
def test_corrupted_json_is_imported_or_refused_clearly(annotator_out, fmt, data):
    writer, json_name = JSON_SOURCES[fmt]

    def write(folder):
        source = writer(os.path.join(folder, fmt))
        path = os.path.join(folder, fmt, json_name)
        raw = open(path, "rb").read()
        if data.draw(st.booleans(), label="truncate"):
            open(path, "wb").write(raw[: data.draw(st.integers(0, len(raw) - 1), label="keep bytes")])
            return source
        doc = json.loads(raw)
        paths = json_paths(doc)
        target = paths[data.draw(st.integers(0, len(paths) - 1), label="path")]
        doc = mutate(
            doc, target, data.draw(json_values, label="value"), data.draw(st.booleans(), label="delete")
        )
        open(path, "w").write(json.dumps(doc))
        return source

    organize_sandboxed(annotator_out, write)


@PROPERTY_SETTINGS
@given(data=st.data())
def test_corrupted_cvat_xml_is_imported_or_refused_clearly(annotator_out, data):
    def write(folder):
        path = write_cvat(os.path.join(folder, "cvat"), SCENE_WITH_MASK)
        tree = ET.parse(path)
        elements = [e for e in tree.getroot().iter() if e.attrib]
        element = elements[data.draw(st.integers(0, len(elements) - 1), label="element")]
        keys = sorted(element.attrib)
        key = keys[data.draw(st.integers(0, len(keys) - 1), label="attribute")]
        if data.draw(st.booleans(), label="delete"):
            del element.attrib[key]
        else:
            element.attrib[key] = data.draw(
                st.text(max_size=12)
                | st.integers(-(10**7), 10**7).map(str)
                | st.sampled_from(["1e9", "nan", "-1", "3,4;5", ""]),
                label="value",
            )
        tree.write(path)
        return path

    organize_sandboxed(annotator_out, write)


@PROPERTY_SETTINGS
@given(
    labels=hnp.arrays(
        st.sampled_from([np.uint8, np.int32, np.float32, np.int16]),
        st.tuples(st.integers(1, 6), st.integers(1, 6)),
    ),
    image_shape=st.tuples(st.integers(1, 12), st.integers(1, 12)),
)
def test_odd_label_images_are_imported_or_refused_clearly(annotator_out, labels, image_shape):
    def write(folder):
        os.makedirs(folder)
        tifffile.imwrite(os.path.join(folder, "f.tif"), np.ones(image_shape, np.uint8))
        tifffile.imwrite(os.path.join(folder, "f_masks.tif"), labels)
        return folder

    organize_sandboxed(annotator_out, write)
