"""Batch prediction end to end: the Python API with a stand-in model, and predict.py with the tiny model."""

import csv
import json
import os
import sys

import cv2
import numpy as np
import pytest
import roifile
import tifffile
import yaml

from mask2former.errors import InputError
from mask2former.inference.filters import PostprocessParams
from mask2former.inference.inputs import collect_inputs, find_companion, output_names
from mask2former.inference.options import PredictOptions
from mask2former.inference.run import run_prediction
from mask2former.structures import Instances
from tests.helpers import REPO_ROOT, TINY_STAGE2, draw_field, save_tiny_checkpoint


class ThresholdPredictor:
    """Stand-in model: every 8-connected bright region of the tile is one instance."""

    def __init__(self, threshold):
        self.threshold = threshold
        self.tiles = 0

    def __call__(self, tile):
        self.tiles += 1
        n, labels = cv2.connectedComponents((tile > self.threshold).astype(np.uint8), connectivity=8)
        masks = (
            np.stack([labels == k for k in range(1, n)]) if n > 1 else np.zeros((0, *tile.shape[:2]), bool)
        )
        return Instances(masks, np.full(len(masks), 0.9, np.float32))


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


OPTIONS = PredictOptions(
    tile_size=128,
    tile_overlap=0.25,
    post=PostprocessParams(score_threshold=0.5, min_area=50),
    channel=1,
    nuclei_channel=0,
    progress=False,
)


def test_batch_with_tiles_nuclei_and_a_broken_file(tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    # Tube A spans the 400 px field (four tiles across) and holds 3 nuclei; tube B holds 1.
    tube_a = ([(10, 60), (200, 120), (390, 70)], 15)
    tube_b = ([(40, 250), (160, 290)], 13)
    nuclei = [(60, 76), (200, 120), (330, 85), (100, 270), (300, 250)]  # the last one is free
    field = draw_field(320, 400, [tube_a, tube_b], nuclei)
    tifffile.imwrite(inputs / "well1.tif", field, photometric="minisblack", metadata={"axes": "CYX"})
    tifffile.imwrite(
        inputs / "well2.tif",
        draw_field(100, 110, [([(5, 50), (100, 55)], 9)], [(50, 52)]),
        photometric="minisblack",
        metadata={"axes": "CYX"},
    )
    (inputs / "broken.tif").write_bytes(b"II*\x00garbage")
    out = tmp_path / "out"
    predictor = ThresholdPredictor(1500)

    report = run_prediction(str(inputs), predictor, str(out), OPTIONS)

    assert [os.path.basename(p) for p, _ in report.failures] == ["broken.tif"]
    err = capsys.readouterr().err
    assert err.count("failed:") == 1 and "broken.tif" in err and "Traceback" not in err
    assert predictor.tiles > 4  # the big field was tiled, the small one predicted whole
    for name in ("well1", "well2"):
        for suffix in ("_overlay.png", "_labels.tif", "_coco.json", "_rois.zip", "_measurements.csv"):
            assert (out / f"{name}{suffix}").is_file()
    assert not list(out.glob(".*.tmp")) and not [f for f in os.listdir(out) if f.startswith(".")]

    # Tube A crosses tile borders but comes out as one instance; ids agree across all exports.
    labels = tifffile.imread(out / "well1_labels.tif")
    rows = read_csv(out / "well1_measurements.csv")
    assert labels.dtype == np.uint16 and sorted(np.unique(labels)) == [0, 1, 2]
    assert [r["id"] for r in rows] == ["1", "2"]
    assert len(roifile.roiread(out / "well1_rois.zip")) == 2
    coco = json.loads((out / "well1_coco.json").read_text())
    assert [a["id"] for a in coco["annotations"]] == [1, 2]
    by_nuclei = sorted(int(r["nuclei"]) for r in rows)
    assert by_nuclei == [1, 3]
    long_row = max(rows, key=lambda r: float(r["length_px"]))
    assert float(long_row["length_px"]) > 380 and int(long_row["nuclei"]) == 3

    summary = {r["image"]: r for r in read_csv(out / "summary.csv")}
    assert set(summary) == {"well1.tif", "well2.tif", "broken.tif"}
    assert summary["broken.tif"]["error"] and not summary["well1.tif"]["error"]
    assert int(summary["well1.tif"]["myotubes"]) == 2
    assert int(summary["well1.tif"]["nuclei"]) == 5
    assert float(summary["well1.tif"]["fusion_index"]) == pytest.approx(3 / 5)
    allcoco = json.loads((out / "predictions_coco.json").read_text())
    assert len(allcoco["images"]) == 2 and len(allcoco["annotations"]) == 3
    assert len({a["id"] for a in allcoco["annotations"]}) == 3


def test_nuclei_masks_folder_and_microns(tmp_path):
    images = tmp_path / "data"
    images.mkdir()
    field = draw_field(120, 200, [([(10, 60), (190, 60)], 15)], [(50, 60), (150, 60)])
    cv2.imwrite(str(images / "F01_myosin.png"), (field[1] // 16).astype(np.uint8))
    nuclei_mask = ((field[0] > 1000) * 255).astype(np.uint8)
    cv2.imwrite(str(images / "F01_nuclei_mask.png"), nuclei_mask)
    options = PredictOptions(
        tile_size=512,
        channel=-1,
        nuclei_masks_dir=str(images),
        pixel_size=0.5,
        post=PostprocessParams(min_area=50),
        progress=False,
    )
    report = run_prediction(
        str(images / "*_myosin.png"), ThresholdPredictor(100), str(tmp_path / "out"), options
    )
    assert report.ok
    row = read_csv(tmp_path / "out" / "F01_myosin_measurements.csv")[0]
    assert int(row["nuclei"]) == 2
    # The tube is ~180 px + caps long: 0.5 um per pixel.
    assert float(row["length_um"]) == pytest.approx(0.5 * 195, rel=0.05)
    summary = read_csv(tmp_path / "out" / "summary.csv")[0]
    assert float(summary["fusion_index"]) == pytest.approx(1.0)


def test_input_collection_and_names(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        cv2.imwrite(str(tmp_path / d / "x.png"), np.zeros((8, 8), np.uint8))
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    found = collect_inputs([str(tmp_path / "a"), str(tmp_path / "*" / "x.png")])
    assert [os.path.relpath(p, tmp_path) for p in found] == [
        os.path.join("a", "x.png"),
        os.path.join("b", "x.png"),
    ]
    assert output_names(found) == ["x", "x_2"]
    with pytest.raises(InputError, match="input not found"):
        collect_inputs(str(tmp_path / "missing.tif"))
    with pytest.raises(InputError, match="no image files match"):
        collect_inputs(str(tmp_path / "*.tif"))
    with pytest.raises(InputError, match="not an image file"):
        collect_inputs(str(tmp_path / "a" / "notes.txt"))
    with pytest.raises(InputError, match="no nuclei file for x.png"):
        find_companion(str(tmp_path / "a" / "x.png"), str(tmp_path / "a"), ("", "_dapi"))
    with pytest.raises(InputError, match="only one nuclei source"):
        PredictOptions(nuclei_channel=0, nuclei_masks_dir=str(tmp_path)).validate()


def test_options_from_config():
    from mask2former.config import get_cfg

    cfg = get_cfg()
    cfg.INPUT.IMAGE_SIZE = 1024
    cfg.INFERENCE.MIN_AREA = 321
    options = PredictOptions.from_cfg(cfg, pixel_size=0.3)
    assert options.tile_size == 1024  # TILE_SIZE 0 means the model input size
    assert options.post.min_area == 321 and options.pixel_size == 0.3
    cfg.INFERENCE.TILE_SIZE = 700
    assert PredictOptions.from_cfg(cfg).tile_size == 700


# --------------------------------------------------------------------------- predict.py


def run_cli(argv):
    sys.path.insert(0, REPO_ROOT)
    try:
        import predict
    finally:
        sys.path.remove(REPO_ROOT)
    return predict.main(argv)


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    rc = run_cli(
        [
            "--config-file",
            TINY_STAGE2,
            "--weights",
            "",
            "--input",
            str(tmp_path / "nope.tif"),
            "--output",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "nope.tif: input not found" in err and "Traceback" not in err
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((8, 8), np.uint8))
    rc = run_cli(
        [
            "--config-file",
            TINY_STAGE2,
            "--weights",
            "",
            "--input",
            str(tmp_path / "x.png"),
            "--output",
            str(tmp_path / "out"),
            "--opts",
            "INFERENCE.MIN_AREEA",
            "5",
        ]
    )
    assert rc == 1 and "INFERENCE.MIN_AREEA" in capsys.readouterr().err
    rc = run_cli(
        [
            "--config-file",
            TINY_STAGE2,
            "--weights",
            str(tmp_path / "missing.pth"),
            "--input",
            str(tmp_path / "x.png"),
            "--output",
            str(tmp_path / "out"),
        ]
    )
    assert rc == 1 and "missing.pth: weights file not found" in capsys.readouterr().err


def test_cli_tiny_model_checkpoint_end_to_end(tmp_path, capsys):
    import torch

    from mask2former.config import load_config
    from mask2former.modeling.build import build_model

    cfg = load_config(TINY_STAGE2, ["MODEL.WEIGHTS", ""])
    torch.manual_seed(0)
    weights = tmp_path / "model_final.pth"
    torch.save({"model": build_model(cfg, ["myotube"]).state_dict()}, weights)

    inputs = tmp_path / "in"
    inputs.mkdir()
    big = draw_field(300, 280, [([(10, 30), (270, 280)], 13)])
    tifffile.imwrite(inputs / "big.tif", big, photometric="minisblack", metadata={"axes": "CYX"})
    tifffile.imwrite(
        inputs / "small.tif",
        draw_field(90, 100, [([(5, 40), (95, 50)], 9)]),
        photometric="minisblack",
        metadata={"axes": "CYX"},
    )
    (inputs / "bad.tif").write_bytes(b"not a tiff")
    out = tmp_path / "out"
    rc = run_cli(
        [
            "--config-file",
            TINY_STAGE2,
            "--weights",
            str(weights),
            "--input",
            str(inputs),
            "--output",
            str(out),
            "--channel",
            "1",
            "--nuclei-channel",
            "0",
            "--tile-size",
            "128",
            "--tile-overlap",
            "0.2",
            "--score-threshold",
            "0.0",
            "--pixel-size",
            "0.65",
            "--device",
            "cpu",
            "--no-progress",
            "--opts",
            "INFERENCE.MIN_AREA",
            "20",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1  # bad.tif failed, the others were done
    failed = [line for line in err.splitlines() if "failed:" in line]
    assert len(failed) == 1 and "bad.tif" in failed[0] and "cannot read TIFF" in failed[0]
    assert "Traceback" not in err
    for name, shape in (("big", (300, 280)), ("small", (90, 100))):
        labels = tifffile.imread(out / f"{name}_labels.tif")
        assert labels.dtype == np.uint16 and labels.shape == shape
        rows = read_csv(out / f"{name}_measurements.csv")
        # Every label id is a measured instance (an instance hidden under a better one has no pixels).
        assert set(np.unique(labels[labels > 0]).tolist()) <= {int(r["id"]) for r in rows}
        assert len(roifile.roiread(out / f"{name}_rois.zip")) == len(rows)
        assert len(json.loads((out / f"{name}_coco.json").read_text())["annotations"]) == len(rows)
        assert all(float(r["score"]) >= 0.0 and float(r["area_um2"]) >= 20 * 0.65**2 - 1e-6 for r in rows)
    saved = (out / "config.yaml").read_text()
    assert "TILE_SIZE: 128" in saved and str(weights) in saved
    summary = read_csv(out / "summary.csv")
    assert [r["image"] for r in summary] == ["bad.tif", "big.tif", "small.tif"]
    assert "fusion_index" in summary[1] and "mean_length_um" in summary[1]


def test_measuring_workers_default_to_none_on_cpu_and_free_cores_on_gpu(monkeypatch):
    from mask2former.utils import processes

    monkeypatch.setattr(processes.os, "cpu_count", lambda: 16)
    assert processes.default_workers("cpu") == 0
    assert processes.default_workers("cuda:0") == 8
    monkeypatch.setattr(processes.os, "cpu_count", lambda: 2)
    assert processes.default_workers("cuda") == 1


def test_tta_flag_predicts_tiles_with_flips_and_records_it(tmp_path, capsys):
    weights = save_tiny_checkpoint(tmp_path / "model_final.pth")
    inputs = tmp_path / "in"
    inputs.mkdir()
    tifffile.imwrite(inputs / "field.tif", draw_field(200, 180, [([(10, 20), (190, 170)], 11)])[1])
    out = tmp_path / "out"
    rc = run_cli(
        [
            "--weights", weights, "--input", str(inputs), "--output", str(out), "--device", "cpu",
            "--tile-size", "96", "--tta", "--score-threshold", "0.01", "--no-progress",
        ]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["TEST"]["AUG"] == {"ENABLED": True, "FUSE_IOU": 0.5, "OBJECT_MASK_THRESHOLD": 0.01}
    rows = read_csv(out / "field_measurements.csv")
    assert rows and all(float(r["score"]) >= 0.01 for r in rows)
    assert tifffile.imread(out / "field_labels.tif").shape == (200, 180)


def test_the_model_config_decides_the_flips_unless_a_flag_says_otherwise(tmp_path, capsys):
    weights = save_tiny_checkpoint(tmp_path / "model_final.pth", opts=("TEST.AUG.ENABLED", True))
    inputs = tmp_path / "in"
    inputs.mkdir()
    tifffile.imwrite(inputs / "field.tif", draw_field(120, 120, [([(10, 20), (110, 100)], 9)])[1])
    for flags, expected in (([], True), (["--no-tta"], False), (["--tta"], True)):
        out = tmp_path / f"out{len(flags)}{'-'.join(flags)}"
        args = ["--weights", weights, "--input", str(inputs), "--output", str(out), "--device", "cpu"]
        rc = run_cli([*args, "--no-progress", *flags])
        assert rc == 0, capsys.readouterr().err
        assert yaml.safe_load((out / "config.yaml").read_text())["TEST"]["AUG"]["ENABLED"] is expected, flags
