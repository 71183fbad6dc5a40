"""The model's pixel scale: measured on the training fields, kept with the model, applied by predict.py."""

from __future__ import annotations

import json
import os
import sys

import cv2
import numpy as np
import pytest
import tifffile

from mask2former.data.coco import read_coco_json
from mask2former.data.coco_records import load_coco_instances
from mask2former.data.scale import InputScale, prediction_scale, training_input_scale
from tests.helpers import REPO_ROOT, TINY_STAGE2, make_coco_dataset, tiny_cfg


def test_training_scale_combines_the_annotator_resize_and_the_model_input_size():
    # Fields written at 1500 px from 2048 px originals, trained at IMAGE_SIZE 1500: 0.732 of the original.
    records = [
        {"height": 1500, "width": 1500, "original_height": 2048, "original_width": 2048} for _ in range(3)
    ]
    scale = training_input_scale(records, 1500)
    assert scale.factor == pytest.approx(1500 / 2048) and scale.fields == 3 and scale.pixel_size_um is None
    # Manual fields at their original 2048 px, resized by the mapper to 1500: the same scale.
    assert training_input_scale([{"height": 2048, "width": 2048}], 1500).factor == pytest.approx(1500 / 2048)
    # A pixel size on every field gives the model's microns per model pixel.
    sized = [{**r, "pixel_size_um": 0.65} for r in records]
    assert training_input_scale(sized, 750).pixel_size_um == pytest.approx(0.65 * 1500 / 750)
    # ...on only some fields, none.
    assert training_input_scale(sized[:2] + records[2:], 750).pixel_size_um is None
    mixed = training_input_scale(
        [{"height": 1000, "width": 500}, {"height": 2000, "width": 2000}, {"height": 500, "width": 500}], 1000
    )
    assert (mixed.factor, mixed.low, mixed.high) == (1.0, 0.5, 2.0)
    assert "median of 3 training fields" in mixed.describe()
    assert training_input_scale([], 1500) is None
    # Crops at the field's own scale (a jitter around side / crop, as bench/real_two_stage.py trains).
    crops = training_input_scale(records, 256, jitter=(0.9 * 1500 / 256, 1.1 * 1500 / 256))
    assert crops.factor == pytest.approx(1500 / 2048)


def test_prediction_scale_override_then_pixel_size_then_record():
    recorded = InputScale(0.5, pixel_size_um=1.3)
    assert prediction_scale(recorded, override=0.8, pixel_size_um=0.65)[0] == 0.8
    factor, why = prediction_scale(recorded, pixel_size_um=0.65)
    assert factor == pytest.approx(0.5) and "0.65 um" in why
    assert prediction_scale(recorded, pixel_size_um=0.325)[0] == pytest.approx(0.25)
    assert prediction_scale(InputScale(0.5))[0] == 0.5
    assert prediction_scale(InputScale(0.5), pixel_size_um=0.65)[0] == 0.5  # the model knows no microns
    factor, why = prediction_scale(None)
    assert factor == 1.0 and "no training scale" in why
    assert InputScale.from_dict(InputScale(0.5, 1.3, 0.4, 0.6, 7).to_dict()) == InputScale(
        0.5, 1.3, 0.4, 0.6, 7
    )
    assert InputScale.from_dict({"factor": -1}) is None and InputScale.from_dict(None) is None


def test_the_organizer_keeps_the_original_size_and_pixel_size(tmp_path):
    from mask2former.data.organize import organize_unified_dataset

    source = tmp_path / "annotator_out"
    make_coco_dataset(str(source), {"train_annotations.json": 2, "test_annotations.json": 1}, size=64)
    for name in ("train_annotations.json", "test_annotations.json"):
        path = source / "annotations" / name
        data = json.loads(path.read_text())
        for entry in data["images"]:
            entry.update(original_height=100, original_width=100, pixel_size_um=0.9)
        path.write_text(json.dumps(data))
    out = tmp_path / "myotube_dataset"
    organize_unified_dataset(str(source), None, str(out), progress=False)
    json_file = out / "annotations" / "algorithmic_train_annotations.json"
    assert all(
        e["original_height"] == 100 and e["pixel_size_um"] == 0.9
        for e in read_coco_json(str(json_file))["images"]
    )
    records = load_coco_instances(json_file, out / "images")
    assert training_input_scale(records, 128).factor == pytest.approx(128 / 64 * 64 / 100)


def _predict(weights, image_path, out, *flags):
    sys.path.insert(0, REPO_ROOT)
    try:
        import predict
    finally:
        sys.path.remove(REPO_ROOT)
    # Every candidate kept: the comparison is about what the model sees, not about thresholds.
    rc = predict.main(
        [
            "--config-file",
            TINY_STAGE2,
            "--weights",
            str(weights),
            "--input",
            str(image_path),
            "--output",
            str(out),
            "--score-threshold",
            "0",
            "--device",
            "cpu",
            "--no-progress",
            # One pass: fused flips average four views, which blurs the scale difference looked at.
            "--no-tta",
            *flags,
            "--opts",
            "INFERENCE.MIN_AREA",
            "0",
            "INFERENCE.REMOVE_CONTAINED",
            "False",
            # The stage configs snap outlines to each image's own threshold, at its own pixels;
            # compared here is what the model sees.
            "INFERENCE.SNAP_REACH",
            "0",
            "INFERENCE.SPLIT_DISCONNECTED",
            "False",
        ]
    )
    assert rc == 0
    return tifffile.imread(out / (os.path.splitext(os.path.basename(image_path))[0] + "_labels.tif"))


def _union_iou(a, b):
    a, b = a > 0, b > 0
    return (a & b).sum() / max(1, (a | b).sum())


def test_a_field_at_two_resolutions_gives_the_same_instances(tmp_path):
    """A field at 300 px and the same field at 410 px (like 1500 and 2048 px): resized to the model's
    scale, both are predicted from the same model input, so the instances agree up to resampling."""
    import torch

    from mask2former.config import load_config
    from mask2former.data.synthetic import generate_field
    from mask2former.modeling.build import build_model

    cfg = load_config(TINY_STAGE2, ["MODEL.WEIGHTS", "", "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "16"])
    torch.manual_seed(0)
    weights = tmp_path / "model_final.pth"
    # Trained on fields like the 300 px one, 0.5 um per pixel.
    torch.save(
        {
            "model": build_model(cfg, ["myotube"]).state_dict(),
            "class_names": ["myotube"],
            "cfg": cfg.dump(),
            "input_scale": InputScale(1.0, pixel_size_um=0.5).to_dict(),
        },
        weights,
    )
    field = generate_field(300, seed=3, pixel_scale=0.5).image
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cv2.imwrite(str(tmp_path / "a" / "f.png"), field)
    cv2.imwrite(str(tmp_path / "b" / "f.png"), cv2.resize(field, (410, 410), interpolation=cv2.INTER_CUBIC))

    small = _predict(weights, tmp_path / "a" / "f.png", tmp_path / "out_small", "--pixel-size", "0.5")
    large = _predict(
        weights, tmp_path / "b" / "f.png", tmp_path / "out_large", "--pixel-size", str(0.5 * 300 / 410)
    )
    assert large.shape == (410, 410)  # masks come back at the input's resolution
    back = cv2.resize(large, (300, 300), interpolation=cv2.INTER_NEAREST)
    at_scale = _union_iou(small, back)
    assert at_scale > 0.75
    assert abs(len(np.unique(small)) - len(np.unique(large))) <= 3
    saved = (tmp_path / "out_large" / "config.yaml").read_text()
    assert "INPUT_SCALE: 0.73" in saved  # the scale used, not "0 = recorded"

    # The old behaviour, tiles at the input's own pixels, sees the tubes 1.37x wider: another result.
    native = _predict(weights, tmp_path / "b" / "f.png", tmp_path / "out_native", "--scale", "1")
    assert (
        _union_iou(small, cv2.resize(native, (300, 300), interpolation=cv2.INTER_NEAREST)) < at_scale - 0.15
    )


def test_predictor_resizes_by_its_input_scale():
    from mask2former.data.mapper import preprocess_image

    cfg = tiny_cfg()
    pixels, info = preprocess_image(np.zeros((400, 200), np.uint8), cfg, scale=0.5)
    assert info.resized_hw == (200, 100) and pixels.shape == (3, 224, 224) and info.scale == 0.5
    _, info = preprocess_image(np.zeros((400, 200), np.uint8), cfg)
    assert info.resized_hw == (128, 64)  # evaluation: longest side = IMAGE_SIZE
