"""The napari plugin's headless core: predictions ↔ label layers ↔ manual COCO, and the way from a
prediction to Stage 2-ready data (no napari or Qt needed)."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
import tifffile

from mask2former.data.coco_records import load_coco_instances, record_masks
from mask2former.errors import InputError
from mask2former.napari.core import (
    instances_from_layers,
    layers_from_masks,
    read_prediction,
    save_manual_annotation,
)
from tests.helpers import TINY, field_image, predict, run, save_tiny_model


def crossing_masks() -> np.ndarray:
    a = np.zeros((40, 50), np.uint8)
    b = np.zeros((40, 50), np.uint8)
    cv2.line(a, (2, 20), (47, 20), 1, 5)
    cv2.line(b, (25, 2), (25, 37), 1, 5)
    c = np.zeros((40, 50), np.uint8)
    c[30:36, 5:12] = 1
    return np.stack([a, b, c]).astype(bool)


def test_overlapping_instances_survive_the_two_layers():
    masks = crossing_masks()
    top, under = layers_from_masks(masks, np.array([0.9, 0.6, 0.8]))
    assert top[20, 25] == 1 and under[20, 25] == 2  # the higher score on top at the crossing
    assert under.sum() > 0 and (under > 0).sum() == (masks[0] & masks[1]).sum()
    back = instances_from_layers(top, under)
    assert sorted(back) == [1, 2, 3]
    for k, m in back.items():
        assert np.array_equal(m, masks[k - 1])


def test_saving_accumulates_images_and_refuses_to_replace_without_asking(tmp_path):
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), field_image(50)[:40])
    masks = crossing_masks()
    top, under = layers_from_masks(masks)
    out = tmp_path / "manual"
    save_manual_annotation(str(out), str(tmp_path / "a.png"), top, under)
    save_manual_annotation(str(out), str(tmp_path / "b.png"), top[:, ::-1].copy())
    data = json.loads((out / "annotations.json").read_text())
    assert [e["file_name"] for e in data["images"]] == ["a.png", "b.png"] and len(data["annotations"]) == 6
    assert sorted(os.listdir(out / "images")) == ["a.png", "b.png"]
    with pytest.raises(InputError, match="already holds a manual annotation of a.png"):
        save_manual_annotation(str(out), str(tmp_path / "a.png"), top, under)
    top[top == 3] = 0  # the small piece erased
    save_manual_annotation(str(out), str(tmp_path / "a.png"), top, under, overwrite=True)
    records = load_coco_instances(out / "annotations.json", out / "images")
    a = next(r for r in records if r["file_name"].endswith("a.png"))
    assert (
        len(a["annotations"]) == 2
        and record_masks(a).sum() == (masks[0] | masks[1]).sum() + (masks[0] & masks[1]).sum()
    )


@pytest.mark.slow
def test_from_a_prediction_to_stage2_ready_data(tmp_path):
    """predict a field → open it as the plugin's reader does → change one instance → save →
    the organizer takes the save as the manual dataset → setup_two_stage.py says ready."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for k in range(3):
        tifffile.imwrite(raw / f"field{k}.tif", field_image(128, seed=30 + k))
    model = save_tiny_model(tmp_path / "model.pth")
    out = predict(model, raw / "field0.tif", tmp_path / "pred", cwd=tmp_path)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    found = read_prediction(str(tmp_path / "pred"))
    assert found["image"] is not None and found["image"].shape == (128, 128) and found["top"].max() > 0
    top, under = found["top"].copy(), found["under"]
    # The correction: one instance removed, one drawn by hand.
    top[top == top.max()] = 0
    cv2.line(top, (10, 100), (110, 110), int(top.max()) + 1, 6)
    saved = save_manual_annotation(str(tmp_path / "manual"), found["entry"]["original_path"], top, under)
    annotated = run(
        "utils/batch_myotube_processing.py",
        "--input_dir",
        str(raw),
        "--output_dir",
        str(tmp_path / "annotator_out"),
        "--resolution",
        "128",
        "--workers",
        "1",
        "--no-progress",
        cwd=tmp_path,
    )
    assert annotated.returncode == 0, annotated.stderr.decode()
    organized = run(
        "organize_unified_dataset.py",
        "--algorithmic_dataset",
        str(tmp_path / "annotator_out"),
        "--manual_dataset",
        saved,
        "--output_dataset",
        str(tmp_path / "myotube_dataset"),
        "--no-progress",
        cwd=tmp_path,
    )
    assert organized.returncode == 0, organized.stdout.decode() + organized.stderr.decode()
    manual = json.loads(
        (tmp_path / "myotube_dataset" / "annotations" / "manual_train_annotations.json").read_text()
    )
    assert len(manual["images"]) == 1 and len(manual["annotations"]) == len(instances_from_layers(top, under))
    ready = run(
        "setup_two_stage.py",
        "--dataset",
        str(tmp_path / "myotube_dataset"),
        "--config-dir",
        TINY,
        cwd=tmp_path,
    )
    assert ready.returncode == 0, ready.stdout.decode()[-3000:]
