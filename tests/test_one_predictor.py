"""One predictor builder: predict.py, the napari widget's core and the benches (and the Python API)
find the same myotubes in the same file with the same weights, at the same scale."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import tifffile

from mask2former.data.synthetic import generate_field
from mask2former.structures import label_image
from tests.helpers import ENV, REPO_ROOT, save_tiny_checkpoint


def test_predict_py_the_napari_core_and_the_bench_give_the_same_labels(tmp_path):
    from mask2former.inference.command import build_predictor, prediction_config
    from mask2former.inference.image_pipeline import predict_file
    from mask2former.napari.core import predict_instances

    # The model records 0.6 um per model pixel; the field says 0.45 um per pixel: resized by 0.75,
    # not by the recorded training factor 0.5.
    weights = save_tiny_checkpoint(
        tmp_path / "model_final.pth",
        opts=("MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", 0.0),
        input_scale={"factor": 0.5, "pixel_size_um": 0.6},
    )
    field = tmp_path / "field.tif"
    image = generate_field(224, seed=4, pixel_scale=0.7).image
    tifffile.imwrite(field, image, imagej=True, resolution=(1 / 0.45, 1 / 0.45), metadata={"unit": "um"})

    out = tmp_path / "predicted"
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO_ROOT, "predict.py"),
            "--weights",
            weights,
            "--input",
            str(field),
            "--output",
            str(out),
            "--device",
            "cpu",
            "--no-progress",
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    from_cli = tifffile.imread(out / "field_labels.tif")
    assert from_cli.max() > 0

    from_napari = label_image(predict_instances(image, str(field), None, weights))
    cfg = prediction_config(None, weights, ["MODEL.DEVICE", "cpu"])
    cfg.freeze()
    predictor, options = build_predictor(cfg, progress=False)
    from_bench = label_image(predict_file(str(field), predictor, options))
    assert np.array_equal(from_napari, from_cli)
    assert np.array_equal(from_bench, from_cli)


def test_tta_gives_the_same_labels_in_predict_py_and_the_napari_core(tmp_path):
    from mask2former.napari.core import predict_instances

    weights = save_tiny_checkpoint(
        tmp_path / "model_final.pth",
        opts=("MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", 0.0, "TEST.AUG.OBJECT_MASK_THRESHOLD", 0.0),
    )
    field = tmp_path / "field.tif"
    image = generate_field(160, seed=5, pixel_scale=0.7).image
    tifffile.imwrite(field, image)
    out = tmp_path / "predicted"
    done = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "predict.py"), "--weights", weights, "--input", str(field),
         "--output", str(out), "--device", "cpu", "--no-progress", "--tta"],
        env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    from_cli = tifffile.imread(out / "field_labels.tif")
    assert from_cli.max() > 0
    from_napari = label_image(predict_instances(image, str(field), None, weights, tta=True))
    assert np.array_equal(from_napari, from_cli)
    without = label_image(predict_instances(image, str(field), None, weights))
    assert not np.array_equal(without, from_cli)


def test_the_python_api_example_of_the_docs_runs_as_written(tmp_path, monkeypatch):
    import re

    with open(os.path.join(REPO_ROOT, "docs", "predict.md"), encoding="utf-8") as f:
        text = f.read()
    example = re.search(r"## Python API\n+```python\n(.*?)```", text, re.DOTALL).group(1)
    image = generate_field(256, seed=2, pixel_scale=0.7).image
    tifffile.imwrite(tmp_path / "field.tif", image)
    (tmp_path / "plate1").mkdir()
    tifffile.imwrite(tmp_path / "plate1" / "well_a1.tif", image)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(example, "docs/predict.md (Python API)", "exec"), namespace)
    assert namespace["report"].ok
    # The file predicted alone and the same pixels in the folder's run: the same myotubes.
    labels = tifffile.imread(tmp_path / "plate1_pred" / "well_a1_labels.tif")
    assert np.array_equal(label_image(namespace["instances"]), labels)


def test_a_field_without_candidates_keeps_nothing_instead_of_failing():
    from mask2former.inference.predictor import MyotubePredictor
    from mask2former.structures import Instances
    from tests.helpers import tiny_cfg

    predictor = MyotubePredictor(tiny_cfg("MODEL.DEVICE", "cpu"), weights="", device="cpu")
    kept = predictor.kept(Instances.empty(64, 48))
    assert len(kept) == 0 and kept.image_size == (64, 48)
