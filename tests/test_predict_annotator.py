"""``predict.py --method annotator``: the classical annotator in the model's place, through the same
per-image pipeline, files, tables and long-batch rules as a model."""

from __future__ import annotations

import csv
import json
import os

import cv2
import numpy as np
import pytest
import tifffile
import yaml

from mask2former.annotate import AnnotatorParams, annotate_instances
from mask2former.inference.annotator import AnnotatorPredictor, annotator_options
from mask2former.inference.image_pipeline import predict_image
from mask2former.structures import Instances
from tests.helpers import (
    TINY_STAGE2,
    assert_same_predictions,
    draw_field,
    load_script,
    save_tiny_checkpoint,
    without_column,
)

predict_main = load_script("predict.py").main
# Two tubes and five nuclei on 16-bit channels (0: nuclei, 1: myosin), and a field with neither.
TUBES = [([(10, 60), (200, 120), (390, 70)], 15), ([(40, 250), (160, 290)], 13)]
NUCLEI = [(60, 76), (200, 120), (330, 85), (100, 270), (300, 250)]
MEASURE = ["--channel", "1", "--nuclei-channel", "0", "--pixel-size", "0.65", "--no-progress"]


def header(path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return next(csv.reader(f))


def rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_field(folder, name: str, tubes=TUBES, nuclei=NUCLEI) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    tifffile.imwrite(
        path, draw_field(320, 400, tubes, nuclei), photometric="minisblack", metadata={"axes": "CYX"}
    )
    return path


def files_of(folder) -> set[str]:
    """What a run wrote, its settings file (config.yaml for a model, annotator.yaml) as one name."""
    names = {p for p in os.listdir(folder) if p != "manifests"}
    return {"SETTINGS" if p in ("config.yaml", "annotator.yaml") else p for p in names}


def csv_headers(folder) -> dict[str, list[str]]:
    return {p: header(os.path.join(folder, p)) for p in sorted(os.listdir(folder)) if p.endswith(".csv")}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model") / "model_final.pth", seed=0)


def test_the_annotator_writes_the_files_and_tables_a_model_writes(tmp_path, checkpoint):
    inputs = tmp_path / "in"
    write_field(inputs, "well.tif")
    model, annotator = tmp_path / "model", tmp_path / "annotator"
    assert (
        predict_main(
            [
                "--config-file",
                TINY_STAGE2,
                "--weights",
                checkpoint,
                "--input",
                str(inputs),
                "--output",
                str(model),
                "--device",
                "cpu",
                "--score-threshold",
                "0",
                *MEASURE,
            ]
        )
        == 0
    )
    assert (
        predict_main(["--method", "annotator", "--input", str(inputs), "--output", str(annotator), *MEASURE])
        == 0
    )

    assert files_of(annotator) == files_of(model)
    assert {
        "well_overlay.png",
        "well_labels.tif",
        "well_coco.json",
        "well_rois.zip",
        "well_measurements.csv",
        "well_nuclei.csv",
        "well_nuclei_labels.tif",
        "summary.csv",
        "predictions_coco.json",
        "batch.json",
        "SETTINGS",
    } <= files_of(annotator)
    assert csv_headers(annotator) == csv_headers(model)
    # Its myotubes, measured in microns: the two tubes, every score 1.0, nuclei counted per tube.
    measured = rows(annotator / "well_measurements.csv")
    assert len(measured) == 2 and {float(r["score"]) for r in measured} == {1.0}
    assert sorted(int(r["nuclei"]) for r in measured) == [1, 3]
    assert max(float(r["length_um"]) for r in measured) == pytest.approx(0.65 * 400, rel=0.1)
    [summary] = rows(annotator / "summary.csv")
    assert (summary["myotubes"], summary["nuclei"], summary["pixel_size_um"], summary["scale"]) == (
        "2",
        "5",
        "0.65",
        "1",
    )
    labels = tifffile.imread(annotator / "well_labels.tif")
    assert labels.shape == (320, 400) and sorted(np.unique(labels)) == [0, 1, 2]
    coco = json.loads((annotator / "predictions_coco.json").read_text())
    assert len(coco["annotations"]) == 2 and {a["score"] for a in coco["annotations"]} == {1.0}
    # No config or weights: the settings file names the method and the annotator's parameters.
    settings = yaml.safe_load((annotator / "annotator.yaml").read_text())
    assert (
        settings["method"] == "annotator"
        and settings["annotator"]["min_length"] == AnnotatorParams().min_length
    )
    assert not (annotator / "config.yaml").exists()
    state = json.loads((annotator / "batch.json").read_text())
    assert state["identity"]["method"] == "classical annotator" and "weights" not in state["identity"]
    assert state["identity"]["annotator"]["reference_size"] == 1500


def test_a_blank_field_gives_every_table_with_its_header_row(tmp_path, checkpoint):
    inputs = tmp_path / "in"
    inputs.mkdir()
    # An empty well: both channels flat (no myosin, no nuclei).
    tifffile.imwrite(
        inputs / "blank.tif",
        np.full((2, 320, 400), 200, np.uint16),
        photometric="minisblack",
        metadata={"axes": "CYX"},
    )
    out = tmp_path / "out"
    assert (
        predict_main(["--method", "annotator", "--input", str(inputs), "--output", str(out), *MEASURE]) == 0
    )
    tables = csv_headers(out)
    assert set(tables) == {"blank_measurements.csv", "blank_nuclei.csv", "summary.csv"}
    assert rows(out / "blank_measurements.csv") == [] and rows(out / "blank_nuclei.csv") == []
    assert tables["blank_measurements.csv"][:4] == ["id", "score", "area_um2", "length_um"]
    [summary] = rows(out / "summary.csv")
    assert (summary["myotubes"], summary["nuclei"], summary["error"]) == ("0", "0", "")
    # The same headers as a model's run on a field with myotubes.
    model = tmp_path / "model"
    write_field(tmp_path / "tubes", "blank.tif")
    assert (
        predict_main(
            [
                "--config-file",
                TINY_STAGE2,
                "--weights",
                checkpoint,
                "--input",
                str(tmp_path / "tubes"),
                "--output",
                str(model),
                "--device",
                "cpu",
                "--score-threshold",
                "0",
                *MEASURE,
            ]
        )
        == 0
    )
    assert csv_headers(model) == tables


def test_each_image_is_annotated_whole_at_its_own_pixels_and_kept_as_the_annotator_found_it():
    image = cv2.GaussianBlur(draw_field(320, 400, TUBES)[1].astype(np.float32), (0, 0), 1.0).astype(np.uint16)
    calls = []

    class Counting(AnnotatorPredictor):
        def __call__(self, tile):
            calls.append(tile.shape)
            return super().__call__(tile)

    # Tiles of 64 px would cut this field in many; the annotator gets it whole, once.
    options = annotator_options(tile_size=64, progress=False)
    found = predict_image(image, Counting(), options)
    assert calls == [(320, 400)]
    expected = annotate_instances(image, AnnotatorParams())
    assert len(found) == len(expected) == 2
    assert np.array_equal(
        np.sort(found.to_instances().masks.reshape(2, -1).sum(1)),
        np.sort(expected.masks.reshape(2, -1).sum(1)),
    )
    assert set(found.to_instances().scores.tolist()) == {1.0}

    # Nothing after the predictor: a speck the model's post-processing (score threshold, minimum
    # area, duplicate removal) would drop stays.
    def specks(tile):
        masks = np.zeros((2, *tile.shape[:2]), bool)
        masks[:, 5:7, 5:7] = True
        return Instances(masks, np.array([0.01, 0.01], np.float32))

    assert len(predict_image(image, specks, options)) == 2


def test_the_reference_pixel_size_sets_the_annotators_scale_per_image():
    predictor = AnnotatorPredictor(AnnotatorParams(reference_pixel_size_um=0.9))
    with predictor.for_image("a.tif", 0.45):
        assert predictor.params_for_image().scale == pytest.approx(2.0)
    assert AnnotatorPredictor().params_for_image() == AnnotatorParams()
    with (
        predictor.for_image("b.tif", None),
        pytest.raises(Exception, match="b.tif: the file does not say its pixel size"),
    ):
        predictor(np.zeros((32, 32), np.uint8))


def test_resume_shards_and_merge_name_the_method_and_its_parameters(tmp_path, capsys, checkpoint):
    inputs = tmp_path / "in"
    for k in range(3):
        write_field(inputs, f"w{k}.tif", tubes=TUBES[k % 2 :], nuclei=NUCLEI[: k + 1])
    args = ["--method", "annotator", "--input", str(inputs), *MEASURE]
    whole, out = tmp_path / "whole", tmp_path / "out"
    assert predict_main([*args, "--output", str(whole)]) == 0
    # Two shards, merged: the files of the one run.
    for k in (1, 2):
        assert predict_main([*args, "--output", str(tmp_path / f"s{k}"), "--shard", f"{k}/2"]) == 0
    assert predict_main(["--merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--output", str(out)]) == 0
    assert_same_predictions(out, whole)
    assert without_column(out / "summary.csv") == without_column(whole / "summary.csv")
    assert (out / "annotator.yaml").read_text() == (whole / "annotator.yaml").read_text()
    # --resume: nothing to redo with the same parameters; other parameters, or a model, are refused by name.
    capsys.readouterr()
    assert predict_main([*args, "--output", str(whole), "--resume"]) == 0
    assert predict_main([*args, "--output", str(whole), "--resume", "--annotator-scale", "0.5"]) == 1
    assert "cannot --resume: annotator: scale is 0.5 here, null in the earlier run" in capsys.readouterr().err
    assert (
        predict_main(
            [
                "--config-file",
                TINY_STAGE2,
                "--weights",
                checkpoint,
                "--input",
                str(inputs),
                "--output",
                str(whole),
                "--resume",
                *MEASURE,
            ]
        )
        == 1
    )
    assert "the method is a model here, classical annotator in the earlier run" in capsys.readouterr().err


def test_a_flag_of_the_other_method_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "x.png").write_bytes(b"")
    for argv, message in (
        (["--method", "annotator", "--weights", "myotube-base"], "--weights is not for --method annotator"),
        (
            ["--method", "annotator", "--tile-size", "256", "--opts", "INFERENCE.MIN_AREA", "3"],
            "--tile-size, --opts are not for --method annotator",
        ),
        (["--method", "model", "--annotator-scale", "1.0"], "--annotator-scale is not for --method model"),
    ):
        assert (
            predict_main([*argv, "--input", str(tmp_path / "x.png"), "--output", str(tmp_path / "out")]) == 1
        )
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_without_method_the_annotator_runs_unless_a_model_flag_is_given(tmp_path):
    from mask2former.commands.predict import build_parser, default_method

    parser = build_parser()
    plain = parser.parse_args(["--input", "x.png", "--output", "out"])
    assert plain.method is None and default_method(parser, plain) == "annotator"
    for flags in (["--weights", "myotube-base"], ["--config-file", "c.yaml"], ["--scale", "0.5"]):
        args = parser.parse_args([*flags, "--input", "x.png", "--output", "out"])
        assert default_method(parser, args) == "model", flags
    cv2.imwrite(str(tmp_path / "blank.png"), np.full((64, 64), 30, np.uint8))
    assert (
        predict_main(
            ["--input", str(tmp_path / "blank.png"), "--output", str(tmp_path / "out"), "--no-progress"]
        )
        == 0
    )
    assert (tmp_path / "out" / "annotator.yaml").is_file() and not (tmp_path / "out" / "config.yaml").exists()
