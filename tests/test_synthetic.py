"""Synthetic myotube fields: determinism, masks that match the image, datasets and CLI."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace

import cv2
import numpy as np
import pytest

from mask2former.data.catalog import ANNOTATION_FILES
from mask2former.data.coco_records import load_coco_instances, record_masks
from mask2former.data.coco_validation import validate_coco
from mask2former.data.synthetic import DENSITY_LEVELS, REALISTIC, generate_field, generator_params
from mask2former.synthetic_datasets import write_synthetic_dataset
from tests.helpers import load_script

main = load_script("utils/make_synthetic_dataset.py").main


def test_same_seed_same_field_and_different_seed_differs():
    a = generate_field(160, seed=7, density="dense")
    b = generate_field(160, seed=7, density="dense")
    c = generate_field(160, seed=8, density="dense")
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.masks, b.masks)
    assert np.array_equal(a.nuclei_image, b.nuclei_image)
    assert np.array_equal(a.nuclei_labels, b.nuclei_labels)
    assert not np.array_equal(a.image, c.image)


def test_rng_argument_is_equivalent_to_seed():
    a = generate_field(128, rng=np.random.default_rng(3), density="medium")
    b = generate_field(128, seed=3, density="medium")
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)


@pytest.mark.parametrize("density", ["sparse", "medium", "dense"])
def test_masks_are_bright_non_empty_and_cover_the_requested_fraction(density):
    for seed in range(3):
        f = generate_field(192, seed=seed, density=density)
        assert f.image.dtype == np.uint8 and f.image.shape == (192, 192)
        assert f.masks.dtype == bool and f.masks.ndim == 3 and len(f.masks) >= 1
        assert all(m.sum() > 30 for m in f.masks)
        union = f.masks.any(axis=0)
        inside, outside = float(f.image[union].mean()), float(np.median(f.image[~union]))
        assert inside > 2.0 * outside + 5, (inside, outside)
        # Coverage reaches the target (the last tube may overshoot it).
        assert f.coverage >= DENSITY_LEVELS[density] * 0.95
        assert f.coverage < DENSITY_LEVELS[density] + 0.3


def test_dense_fields_have_overlapping_myotubes_and_sparse_are_less_covered():
    overlaps = 0
    for seed in range(3):
        f = generate_field(256, seed=seed, density="dense")
        flat = f.masks.reshape(len(f.masks), -1).astype(np.int32)
        pair_overlap = flat @ flat.T
        np.fill_diagonal(pair_overlap, 0)
        overlaps += int((pair_overlap > 0).sum() // 2)
    assert overlaps >= 2
    sparse = np.mean([generate_field(256, seed=s, density="sparse").coverage for s in range(3)])
    dense = np.mean([generate_field(256, seed=s, density="dense").coverage for s in range(3)])
    assert dense > 2 * sparse


def test_sixteen_bit_output_and_nuclei_channel():
    f = generate_field(160, seed=1, density="medium", bit_depth=16)
    assert f.image.dtype == np.uint16 and f.nuclei_image.dtype == np.uint16
    assert f.image.max() <= 4095 and f.image.max() > 255
    assert f.nuclei_labels.dtype == np.int32 and f.nuclei_labels.max() >= 1
    nuclei = f.nuclei_labels > 0
    assert f.nuclei_image[nuclei].mean() > 2 * f.nuclei_image[~nuclei].mean()
    masks = f.nuclei_masks
    assert masks.shape[0] == f.nuclei_labels.max() and masks.any(axis=0).sum() == nuclei.sum()
    # Myonuclei sit inside the tubes.
    assert (nuclei & f.masks.any(axis=0)).sum() > 0


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="density"):
        generate_field(64, seed=0, density="crowded")
    with pytest.raises(ValueError, match="density"):
        generate_field(64, seed=0, density=1.5)
    with pytest.raises(ValueError, match="bit_depth"):
        generate_field(64, seed=0, bit_depth=12)


def test_generation_is_fast():
    generate_field(256, seed=0, density="dense")  # warm-up
    start = time.perf_counter()
    for seed in range(5):
        generate_field(256, seed=seed, density="dense")
    per_field = (time.perf_counter() - start) / 5
    assert per_field < 0.5, per_field  # ~0.05-0.1 s on one core; loose for busy CI machines


def test_plain_dataset_round_trips_through_the_loader(tmp_path):
    path = write_synthetic_dataset(
        tmp_path / "ds", 3, size=128, seed=5, density="dense", progress=False, write_dapi=True
    )
    assert path == os.path.join(tmp_path / "ds", "annotations.json")
    assert [f for f in validate_coco(path, tmp_path / "ds" / "images") if f.level == "error"] == []
    records = load_coco_instances(path, tmp_path / "ds" / "images")
    assert len(records) == 3
    # Image i is generated from the i-th child of the seed: regenerate it and compare.
    child = np.random.SeedSequence(5).spawn(3)[1]
    field = generate_field(128, rng=np.random.default_rng(child), density="dense")
    assert np.array_equal(cv2.imread(records[1]["file_name"], cv2.IMREAD_UNCHANGED), field.image)
    assert np.array_equal(record_masks(records[1]), field.masks)
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    assert data["categories"] == [{"id": 1, "name": "myotube", "supercategory": "cell"}]
    assert all(isinstance(a["segmentation"]["counts"], str) for a in data["annotations"])
    assert os.path.isfile(tmp_path / "ds" / "dapi" / "synthetic_00001_dapi.png")
    labels = cv2.imread(str(tmp_path / "ds" / "nuclei" / "synthetic_00001_nuclei.png"), cv2.IMREAD_UNCHANGED)
    assert labels.dtype == np.uint16 and np.array_equal(labels, field.nuclei_labels)


@pytest.mark.parametrize("algorithmic", ["truth", "annotator"])
def test_unified_dataset_has_the_four_splits(tmp_path, algorithmic):
    root = tmp_path / "myotube_dataset"
    write_synthetic_dataset(
        root, 5, size=160, seed=2, density="dense", unified=True, algorithmic=algorithmic, progress=False
    )
    names = {}
    for split, fname in ANNOTATION_FILES.items():
        records = load_coco_instances(root / "annotations" / fname, root / "images")
        names[split] = [os.path.basename(r["file_name"]) for r in records]
    assert names["myotube_algorithmic_test"] == names["myotube_manual_test"] == ["synthetic_00004.png"]
    assert len(names["myotube_algorithmic_train"]) == 4
    assert set(names["myotube_manual_train"]) <= set(names["myotube_algorithmic_train"])
    assert len(names["myotube_manual_train"]) == 2  # manual_fraction 0.5


def test_cli_writes_a_dataset_and_reports_bad_arguments(tmp_path, capsys):
    assert (
        main(
            [
                "--out",
                str(tmp_path / "out"),
                "--num-images",
                "2",
                "--size",
                "96",
                "--seed",
                "1",
                "--density",
                "0.2",
            ]
        )
        == 0
    )
    assert os.path.isfile(tmp_path / "out" / "annotations.json")
    assert sorted(os.listdir(tmp_path / "out" / "images")) == ["synthetic_00000.png", "synthetic_00001.png"]
    capsys.readouterr()
    assert main(["--out", str(tmp_path / "bad"), "--num-images", "2", "--density", "crowded"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "density" in err[0]


# --------------------------------------------------------------------------- the realistic preset


def _touching_pairs(masks: np.ndarray) -> int:
    """Pairs of instances whose masks touch or overlap along more than a few pixels."""
    grown = np.stack([cv2.dilate(m.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0 for m in masks])
    flat, grown_flat = (
        masks.reshape(len(masks), -1).astype(np.int32),
        grown.reshape(len(masks), -1).astype(np.int32),
    )
    contact = grown_flat @ flat.T
    np.fill_diagonal(contact, 0)
    return int((contact > 20).sum() // 2)


def test_realistic_preset_is_deterministic_and_keeps_the_mask_contract():
    a = generate_field(192, seed=3, params=REALISTIC, pixel_scale=0.5)
    b = generate_field(192, seed=3, params=REALISTIC, pixel_scale=0.5)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
    assert not np.array_equal(a.image, generate_field(192, seed=3, pixel_scale=0.5).image)
    union = a.masks.any(axis=0)
    assert float(a.image[union].mean()) > 2.0 * float(np.median(a.image[~union]))


def test_parallel_tubes_are_laid_alongside_and_touch_their_neighbour():
    alongside = replace(REALISTIC, parallel_probability=1.0, branch_probability=0.0, protrusions=(0, 0))
    never = replace(alongside, parallel_probability=0.0)
    touching = sum(
        _touching_pairs(generate_field(256, seed=s, density=0.1, pixel_scale=0.5, params=alongside).masks)
        for s in range(3)
    )
    apart = sum(
        _touching_pairs(generate_field(256, seed=s, density=0.1, pixel_scale=0.5, params=never).masks)
        for s in range(3)
    )
    assert touching > apart + 3, (touching, apart)


def test_tube_ends_fade_and_spread_bodies_are_brighter_than_their_tube():
    from mask2former.data.synthetic import _along_tube, _Tube

    path = np.stack([np.linspace(10, 190, 91), np.full(91, 50.0)], axis=1)
    radii = np.full(91, 8.0)
    lobe = np.stack([np.linspace(90, 110, 11), np.full(11, 80.0)], axis=1)
    tube = _Tube([path, lobe], [radii, np.full(11, 10.0)], 50.0, False, 16.0, 180.0, [1.0, 2.0], end_fade=0.2)
    along = _along_tube(tube, (120, 200), np.zeros(2))
    assert along[50, 100] == pytest.approx(1.0, abs=1e-3)  # the middle of the tube
    for end, inward in ((11, 22), (189, 178)):  # both ends fade towards a quarter
        assert along[50, end] < 0.45 < along[50, inward] < 1.0
    assert along[80, 100] == pytest.approx(2.0, abs=1e-3)  # the spread body, twice as bright


def test_generator_presets_by_name():
    assert generator_params("realistic") is REALISTIC
    assert generator_params(None) == generator_params("classic")
    with pytest.raises(ValueError, match="unknown generator preset"):
        generator_params("cartoon")
