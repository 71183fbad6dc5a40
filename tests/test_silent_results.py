"""No silent wrong results and no stale leftovers, at the command line.

Each case either refuses with exit code 1 and one line naming the file and the problem (no
traceback, inputs unchanged), or succeeds and says in the log what it did about the problem.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from tests.helpers import (
    ENV,
    REPO_ROOT,
    TINY,
    TINY_STAGE2,
    field_image,
    make_unified_dataset,
    one_line_error,
    predict,
    run,
    save_tiny_model,
    snapshot,
    text,
    tiny_cfg,
)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "model_final.pth")


# --------------------------------------------------------------------------- 1. non-finite pixels


def test_nan_pixels_are_replaced_at_read_time_and_said(tmp_path, model):
    image = field_image().astype(np.float32)
    with_nan = image.copy()
    with_nan.reshape(-1)[np.random.default_rng(0).choice(with_nan.size, 100, replace=False)] = np.nan
    inputs = tmp_path / "in"
    inputs.mkdir()
    tifffile.imwrite(inputs / "nan.tif", with_nan)
    cleaned = with_nan.copy()
    cleaned[np.isnan(cleaned)] = np.nanmin(with_nan)
    tifffile.imwrite(tmp_path / "clean.tif", cleaned)
    before = snapshot(inputs)
    out = predict(model, inputs / "nan.tif", tmp_path / "out_nan", cwd=tmp_path)
    assert out.returncode == 0, text(out.stderr)[-2000:]
    assert "nan.tif: 100 of 9216 pixels are NaN or infinite; set to the lowest finite value" in text(
        out.stderr
    )
    assert snapshot(inputs) == before
    clean = predict(model, tmp_path / "clean.tif", tmp_path / "out_clean", cwd=tmp_path)
    assert clean.returncode == 0
    # The same instances as the image with those pixels set by hand (and some instances at all).
    a = tifffile.imread(tmp_path / "out_nan" / "nan_labels.tif")
    b = tifffile.imread(tmp_path / "out_clean" / "clean_labels.tif")
    assert a.max() > 0 and np.array_equal(a, b)


def test_nan_pixels_in_the_annotator_and_in_training(tmp_path):
    from mask2former.annotate import annotate_image
    from mask2former.data.io import read_image
    from mask2former.data.mapper import MyotubeDatasetMapper

    image = field_image(128).astype(np.float32)
    image[10:20, 10:20] = np.nan
    image[0, 0] = np.inf
    tifffile.imwrite(tmp_path / "nan.tif", image)
    read = read_image(tmp_path / "nan.tif")
    assert np.isfinite(read).all()
    assert len(annotate_image(read)) > 0  # the annotator sees the tubes, not a NaN field
    record = {"file_name": str(tmp_path / "nan.tif"), "height": 128, "width": 128, "annotations": []}
    sample = MyotubeDatasetMapper(tiny_cfg())(record, np.random.default_rng(0))
    assert bool(sample["pixel_values"].isfinite().all())
    tifffile.imwrite(tmp_path / "all_nan.tif", np.full((16, 16), np.nan, np.float32))
    from mask2former.errors import ImageReadError

    with pytest.raises(ImageReadError, match="every pixel is NaN"):
        read_image(tmp_path / "all_nan.tif")


# --------------------------------------------------------------------- 2. architecture from the checkpoint


def test_prediction_builds_the_checkpoints_architecture_and_is_deterministic(tmp_path):
    eight = save_tiny_model(tmp_path / "q8.pth", queries=8)
    cv2.imwrite(str(tmp_path / "f.png"), field_image())
    # The tiny preset says 64 queries; the checkpoint has 8: the model is built with 8, and says so.
    first = predict(eight, tmp_path / "f.png", tmp_path / "run1", cwd=tmp_path)
    assert first.returncode == 0, text(first.stderr)[-2000:]
    assert "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES 8 (the config says 64)" in text(first.stderr)
    second = predict(eight, tmp_path / "f.png", tmp_path / "run2", cwd=tmp_path)
    assert (tmp_path / "run1" / "f_labels.tif").read_bytes() == (
        tmp_path / "run2" / "f_labels.tif"
    ).read_bytes()
    assert second.returncode == 0
    # A checkpoint that does not say how it was trained is refused rather than padded with random queries.
    bare = save_tiny_model(tmp_path / "bare.pth", queries=8, with_config=False)
    out = predict(bare, tmp_path / "f.png", tmp_path / "run3", cwd=tmp_path)
    one_line_error(out, "bare.pth", "checkpoint has 8 queries, the config 64")


def test_training_may_still_grow_the_queries(tmp_path):
    from mask2former.modeling.weights import load_model

    eight = save_tiny_model(tmp_path / "q8.pth", queries=8, with_config=False)
    model, _ = load_model(
        tiny_cfg("MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 16), ["myotube"], str(eight), for_training=True
    )
    assert model.model.transformer_module.queries_features.weight.shape[0] == 16


# --------------------------------------------------------------------------- 3. unnamed TIFF axes


def test_a_tiff_without_axes_metadata_needs_channel_or_z_project(tmp_path, model):
    planes = np.stack([field_image(96, seed=s) for s in range(4)]).astype(np.uint16)
    tifffile.imwrite(tmp_path / "q.tif", planes, photometric="minisblack")  # tifffile writes axes "QYX"
    before = snapshot(tmp_path)
    out = predict(model, tmp_path / "q.tif", tmp_path / "o1", cwd=tmp_path)
    assert out.returncode == 1
    line = [x for x in text(out.stderr).splitlines() if "failed:" in x or "error:" in x][0]
    assert "q.tif" in line and "4 planes" in line and "--channel N" in line and "--z-project" in line
    assert "Traceback" not in text(out.stderr)
    from mask2former.data.io import read_image

    assert np.array_equal(read_image(tmp_path / "q.tif", channel=1), planes[1])
    assert np.array_equal(read_image(tmp_path / "q.tif", z_project=True), planes.max(axis=0))
    assert predict(model, tmp_path / "q.tif", tmp_path / "o2", "--channel", "1", cwd=tmp_path).returncode == 0
    assert predict(model, tmp_path / "q.tif", tmp_path / "o3", "--z-project", cwd=tmp_path).returncode == 0
    inputs_after = {k: v for k, v in snapshot(tmp_path).items() if k == b"q.tif"}
    assert inputs_after == {b"q.tif": before[b"q.tif"]}


# --------------------------------------------------------------------------- 4. LabelMe polygons


def test_a_two_point_labelme_polygon_is_named_by_file_and_shape(tmp_path):
    from mask2former.data.importers.labelme import load_labelme

    folder = tmp_path / "labelme"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((40, 60), np.uint8))
    shapes = [
        {"label": "myotube", "shape_type": "polygon", "points": [[1, 1], [30, 20]]},
        {"label": "myotube", "shape_type": "polygon", "points": [[1, 1], [30, 1], [30, 20]]},
    ]
    (folder / "a.json").write_text(
        json.dumps({"imagePath": "a.png", "imageHeight": 40, "imageWidth": 60, "shapes": shapes})
    )
    dataset = load_labelme(str(folder))
    warnings = [w for w in dataset.warnings if "polygon" in w]
    assert warnings == [
        f"{folder / 'a.json'}: shape #0 (label 'myotube') is a polygon of 2 points: "
        "skipped (a polygon needs at least 3)"
    ]
    assert len(dataset.images[0].instances) == 1


def test_counted_notes_use_the_singular_for_one():
    from mask2former.data.importers.base import counted

    assert counted(1, "masks cut at the image border") == "1 mask cut at the image border"
    assert counted(2, "masks cut at the image border") == "2 masks cut at the image border"
    assert (
        counted(1, "label images hold one id over several regions")
        == "1 label image holds one id over several regions"
    )


# --------------------------------------------------------------------------- 5, 6. stale leftovers


def test_the_annotator_refuses_an_earlier_output_and_force_replaces_it_whole(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(3):
        cv2.imwrite(str(raw / f"f{i}.png"), field_image(128, seed=10 + i))
    first = run(
        "utils/batch_myotube_processing.py",
        "--input_dir",
        str(raw),
        "--output_dir",
        "out",
        "--resolution",
        "96",
        "--workers",
        "1",
        "--no-progress",
        cwd=tmp_path,
    )
    assert first.returncode == 0, text(first.stderr)
    (raw / "f2.png").unlink()
    before = snapshot(tmp_path / "out")
    again = run(
        "utils/batch_myotube_processing.py",
        "--input_dir",
        str(raw),
        "--output_dir",
        "out",
        "--resolution",
        "96",
        "--workers",
        "1",
        "--no-progress",
        cwd=tmp_path,
    )
    one_line_error(again, "out", "earlier run", "--force")
    assert snapshot(tmp_path / "out") == before
    forced = run(
        "utils/batch_myotube_processing.py",
        "--input_dir",
        str(raw),
        "--output_dir",
        "out",
        "--resolution",
        "96",
        "--workers",
        "1",
        "--no-progress",
        "--force",
        cwd=tmp_path,
    )
    assert forced.returncode == 0, text(forced.stderr)
    assert sorted(os.listdir(tmp_path / "out" / "images")) == [
        "f0.png",
        "f1.png",
    ]  # f2 of the first run is gone
    names = [
        e["file_name"]
        for split in ("train", "test")
        if (tmp_path / "out" / "annotations" / f"{split}_annotations.json").exists()
        for e in json.loads((tmp_path / "out" / "annotations" / f"{split}_annotations.json").read_text())[
            "images"
        ]
    ]
    assert sorted(names) == ["f0.png", "f1.png"]
    assert not [e for e in os.listdir(tmp_path) if e.startswith(".out")]  # no staging folder left


def test_predict_refuses_an_earlier_output_and_force_replaces_it(tmp_path, model):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a", "b"):
        cv2.imwrite(str(inputs / f"{name}.png"), field_image())
    assert predict(model, inputs, tmp_path / "out", cwd=tmp_path).returncode == 0
    (inputs / "b.png").unlink()
    one_line_error(predict(model, inputs, tmp_path / "out", cwd=tmp_path), "out", "earlier run", "--force")
    forced = predict(model, inputs, tmp_path / "out", "--force", cwd=tmp_path)
    assert forced.returncode == 0, text(forced.stderr)
    left = sorted(os.listdir(tmp_path / "out"))
    assert not [n for n in left if n.startswith("b_")]  # b's results of the first run are gone
    rows = (tmp_path / "out" / "summary.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["a.png"]
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "my_notes.txt").write_text("keep me")
    one_line_error(
        predict(model, inputs, tmp_path / "notes", "--force", cwd=tmp_path),
        "notes",
        "are not prediction results",
    )
    assert (tmp_path / "notes" / "my_notes.txt").read_text() == "keep me"


# --------------------------------------------------------------------------- 8. write failures


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_an_unwritable_output_is_refused_before_the_model_loads(tmp_path, model):
    cv2.imwrite(str(tmp_path / "f.png"), field_image())
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        out = predict(model, tmp_path / "f.png", locked / "out", cwd=tmp_path)
    finally:
        locked.chmod(0o700)
    one_line_error(out, "locked/out", "Permission denied")
    assert "Loaded" not in text(out.stderr)


def test_an_unwritable_output_is_found_before_the_model_loads(tmp_path, model, monkeypatch):
    """The same check as above for a root test run: the probe write is what fails."""
    from mask2former.errors import InputError
    from mask2former.inference import command

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(command.tempfile, "TemporaryFile", refuse)
    loaded = []
    monkeypatch.setattr(
        "mask2former.inference.predictor.MyotubePredictor.__init__", lambda *a, **k: loaded.append(1)
    )
    cv2.imwrite(str(tmp_path / "f.png"), field_image())
    with pytest.raises(InputError, match="cannot write the results here"):
        command.predict_command(
            command.BatchRequest([str(tmp_path / "f.png")], str(tmp_path / "out")),
            TINY_STAGE2,
            weights=str(model),
        )
    assert not loaded


def test_a_full_disk_while_logging_stops_training_with_one_line(tmp_path, monkeypatch):
    from mask2former.data.catalog import register_two_stage_datasets
    from mask2former.engine import events
    from mask2former.engine.trainer import TrainingError, train

    root = make_unified_dataset(str(tmp_path / "ds"), size=64, n_train=2, n_test=1, n_manual=1)
    register_two_stage_datasets(root)
    cfg = tiny_cfg(
        "OUTPUT_DIR",
        str(tmp_path / "run"),
        "SOLVER.MAX_ITER",
        8,
        "SOLVER.CHECKPOINT_PERIOD",
        2,
        "SOLVER.LOG_PERIOD",
        1,
        "INPUT.IMAGE_SIZE",
        64,
    )
    real_write = events.MetricsWriter.write
    calls = {"n": 0}

    def write_until_full(self, record):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(28, "No space left on device")
        real_write(self, record)

    monkeypatch.setattr(events.MetricsWriter, "write", write_until_full)
    with pytest.raises(TrainingError) as err:
        train(cfg)
    message = str(err.value)
    assert (
        "\n" not in message
        and "disk full" in message
        and "model_0000004.pth is kept" in message
        and str(tmp_path / "run") in message
    )


# --------------------------------------------------------------------------- 9. file modes


def test_written_files_follow_the_umask(tmp_path):
    from mask2former.utils.fileio import atomic_write_json, atomic_write_with, replace_folder, staging_folder

    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        atomic_write_with(tmp_path / "b.png", lambda p: cv2.imwrite(p, np.zeros((4, 4), np.uint8)))
        with staging_folder(tmp_path / "folder") as stage:
            replace_folder(stage, tmp_path / "folder")
        os.umask(0o077)
        atomic_write_json(tmp_path / "private.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.json").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "b.png").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "folder").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp_path / "private.json").st_mode) == 0o600


def test_a_trained_model_and_predictions_are_readable_by_the_group(tmp_path, model):
    env = {**ENV}
    cv2.imwrite(str(tmp_path / "f.png"), field_image())
    script = (
        "import os, runpy, sys; os.umask(0o022); sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    data = make_unified_dataset(str(tmp_path / "ds"), size=64, n_train=2, n_test=1, n_manual=1)
    train = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            os.path.join(REPO_ROOT, "train_net.py"),
            "--config-file",
            os.path.join(TINY, "stage1_config.yaml"),
            "--dataset",
            data,
            "SOLVER.MAX_ITER",
            "2",
            "INPUT.IMAGE_SIZE",
            "64",
            "OUTPUT_DIR",
            str(tmp_path / "run"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert train.returncode == 0, text(train.stderr)[-2000:]
    pred = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            os.path.join(REPO_ROOT, "predict.py"),
            "--config-file",
            TINY_STAGE2,
            "--weights",
            str(model),
            "--input",
            str(tmp_path / "f.png"),
            "--output",
            str(tmp_path / "pred"),
            "--no-progress",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert pred.returncode == 0, text(pred.stderr)[-2000:]
    for path in (
        tmp_path / "run" / "model_final.pth",
        tmp_path / "run" / "config.yaml",
        tmp_path / "pred" / "f_labels.tif",
        tmp_path / "pred" / "summary.csv",
    ):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644, path


# --------------------------------------------------------------------------- 10. numbers in --opts


def test_opts_numbers_take_the_keys_type_and_bad_values_blame_opts(tmp_path):
    from mask2former.config import load_config

    assert load_config(TINY_STAGE2, ["SOLVER.BASE_LR", "1"]).SOLVER.BASE_LR == 1.0
    data = make_unified_dataset(str(tmp_path / "ds"), size=64, n_train=2, n_test=1, n_manual=1)
    out = run(
        "train_net.py",
        "--config-file",
        os.path.join(TINY, "stage1_config.yaml"),
        "--dataset",
        data,
        "SOLVER.BASE_LR",
        "-1",
        cwd=tmp_path,
    )
    line = one_line_error(out, "--opts", "SOLVER.BASE_LR must be > 0, got -1.0")
    assert "stage1_config.yaml" not in line


# --------------------------------------------------------------------------- 7. SIGTERM and SIGINT


def _train_until(out: Path, data: str, max_iter: int, at_least: int, *extra: str) -> subprocess.Popen:
    cmd = [
        sys.executable,
        os.path.join(REPO_ROOT, "train_net.py"),
        "--config-file",
        os.path.join(TINY, "stage1_config.yaml"),
        "--dataset",
        data,
        *extra,
        "SOLVER.MAX_ITER",
        str(max_iter),
        "SOLVER.CHECKPOINT_PERIOD",
        "1000",
        "SOLVER.LOG_PERIOD",
        "1",
        "INPUT.IMAGE_SIZE",
        "64",
        "SEED",
        "3",
        "OUTPUT_DIR",
        str(out),
    ]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    metrics = out / "metrics.json"
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= at_least:
            return proc
        time.sleep(0.05)
    raise AssertionError("training ended or stalled before the signal could be sent")


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_saves_a_checkpoint_and_resume_reaches_the_end(tmp_path, sig, code):
    data = make_unified_dataset(str(tmp_path / "ds"), size=64, n_train=3, n_test=1, n_manual=1)
    out = tmp_path / "run"
    max_iter = 400
    proc = _train_until(out, data, max_iter, at_least=3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    err = text(err)
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err
    stopped = [line for line in err.splitlines() if line.startswith("stopped: ")]
    assert len(stopped) == 1 and "continue with: python train_net.py --resume" in stopped[0]
    checkpoints = [n for n in os.listdir(out) if n.startswith("model_0")]
    assert len(checkpoints) == 1 and not (out / "model_final.pth").exists()
    stopped_at = int(checkpoints[0][6:13])
    assert 3 <= stopped_at < max_iter
    resumed = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO_ROOT, "train_net.py"),
            "--resume",
            "--config-file",
            os.path.join(TINY, "stage1_config.yaml"),
            "--dataset",
            data,
            "SOLVER.MAX_ITER",
            str(max_iter),
            "SOLVER.CHECKPOINT_PERIOD",
            "1000",
            "SOLVER.LOG_PERIOD",
            "1",
            "INPUT.IMAGE_SIZE",
            "64",
            "SEED",
            "3",
            "OUTPUT_DIR",
            str(out),
        ],
        env=ENV,
        capture_output=True,
        timeout=600,
    )
    assert resumed.returncode == 0, text(resumed.stderr)[-2000:]
    assert f"resumed at iteration {stopped_at}" in text(resumed.stderr)
    import torch

    assert torch.load(out / "model_final.pth", weights_only=True)["iteration"] == max_iter
    logged = [
        json.loads(x)["iteration"]
        for x in (out / "metrics.json").read_text().splitlines()
        if "total_loss" in x
    ]
    assert logged == list(range(max_iter))


def test_resume_with_nothing_to_resume_says_it_starts_fresh(tmp_path):
    data = make_unified_dataset(str(tmp_path / "ds"), size=64, n_train=2, n_test=1, n_manual=1)
    out = run(
        "train_net.py",
        "--resume",
        "--config-file",
        os.path.join(TINY, "stage1_config.yaml"),
        "--dataset",
        data,
        "SOLVER.MAX_ITER",
        "2",
        "INPUT.IMAGE_SIZE",
        "64",
        "OUTPUT_DIR",
        str(tmp_path / "run"),
        cwd=tmp_path,
    )
    assert out.returncode == 0, text(out.stderr)[-2000:]
    assert "--resume: no checkpoint in" in text(out.stderr) and "starting from the beginning" in text(
        out.stderr
    )


def test_project_errors_cross_process_boundaries_intact():
    """Workers that measure and export send their errors back pickled."""
    import pickle

    from mask2former.errors import ConfigError, ImageReadError, Interrupted

    for err in (
        ImageReadError("/a/b.tif", "cannot read"),
        ConfigError(None, "bad key"),
        Interrupted("stopped", 143),
    ):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err)
    assert pickle.loads(pickle.dumps(Interrupted("stopped", 143))).exit_code == 143
