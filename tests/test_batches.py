"""Long batches of predict.py and the annotator: a real SIGTERM then --resume, shards and their
merge, the lock on an output folder, and --resume refusing other settings or weights."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mask2former.errors import InputError
from mask2former.utils.resumable import LOCK_FILE, Shard, continue_command
from tests.helpers import (
    ENV,
    REPO_ROOT,
    assert_same_predictions,
    load_script,
    predict_args,
    save_tiny_checkpoint,
    snapshot,
    write_fields,
)

PREDICT = os.path.join(REPO_ROOT, "predict.py")
ANNOTATE = os.path.join(REPO_ROOT, "utils", "batch_myotube_processing.py")

predict_main = load_script("predict.py").main
annotate_main = load_script("utils/batch_myotube_processing.py").main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model") / "model_final.pth", seed=0)


def annotate_args(inputs, output, *extra: str) -> list[str]:
    return [
        "--input_dir",
        str(inputs),
        "--output_dir",
        str(output),
        "--test_fraction",
        "0.3",
        "--seed",
        "5",
        "--no-progress",
        *extra,
    ]


def assert_same_annotations(out: Path, reference: Path) -> None:
    for split in ("train", "test"):
        name = os.path.join("annotations", f"{split}_annotations.json")
        assert json.loads((reference / name).read_text())["annotations"]
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    images = sorted(os.listdir(reference / "images"))
    assert images == sorted(os.listdir(out / "images"))
    for name in images:
        assert (out / "images" / name).read_bytes() == (reference / "images" / name).read_bytes(), name


def sealed(manifests: Path) -> list[str]:
    return [n for n in os.listdir(manifests) if not n.startswith(".")]  # not a manifest being written


def signal_after(proc: subprocess.Popen, manifests: Path, count: int, sig: int) -> None:
    """Send ``sig`` once ``count`` images are sealed. The run is frozen (SIGSTOP) the moment they
    are seen, so it cannot finish the batch before the signal lands."""
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if manifests.is_dir() and len(sealed(manifests)) >= count:
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                assert proc.poll() is None, "the batch ended before it could be signalled"
                os.kill(proc.pid, sig)
            finally:
                os.kill(proc.pid, signal.SIGCONT)
            return
        time.sleep(0.005)
    raise AssertionError(
        f"the batch ended or stalled before {count} images were done: {proc.communicate()[1][-2000:]}"
    )


def stopped_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("stopped: ")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


# --------------------------------------------------------------------------- SIGTERM, then --resume


@pytest.mark.slow
def test_predict_stopped_by_sigterm_resumes_to_the_files_of_an_uninterrupted_run(tmp_path, checkpoint):
    inputs = tmp_path / "in"
    write_fields(inputs, 12, size=128)
    whole = tmp_path / "whole"
    assert predict_main(predict_args(checkpoint, inputs, whole)) == 0

    out = tmp_path / "out"
    args = predict_args(checkpoint, inputs, out, "--workers", "1")
    proc = subprocess.Popen(
        [sys.executable, PREDICT, *args],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    signal_after(proc, out / "manifests", 5, signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-3000:]
    line = stopped_line(err)
    done = len(sealed(out / "manifests"))
    assert 5 <= done < 12
    assert f"SIGTERM received: {done} of 12 images done in {out}; continue with: " in line
    command = shlex.split(line.split("continue with: ", 1)[1])
    assert command == ["python", PREDICT, "--resume", *args]
    assert not (out / LOCK_FILE).exists()

    # Two images done before the signal are damaged afterwards: a missing file, a changed one.
    (out / "f00_labels.tif").unlink()
    with open(out / "f01_overlay.png", "ab") as f:
        f.write(b"\0")
    resumed = subprocess.run(
        [sys.executable, *command[1:]], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"--resume: {done - 2} of 12 images are complete" in resumed.stderr
    assert_same_predictions(out, whole)


@pytest.mark.slow
def test_annotator_stopped_by_sigterm_resumes_to_the_files_of_an_uninterrupted_run(tmp_path):
    inputs = tmp_path / "raw"
    write_fields(inputs, 12, size=768, seed=40)
    whole = tmp_path / "whole"
    assert annotate_main(annotate_args(inputs, whole, "--resolution", "768", "--workers", "1")) == 0

    out = tmp_path / "out"
    args = annotate_args(inputs, out, "--resolution", "768", "--workers", "2")
    proc = subprocess.Popen(
        [sys.executable, ANNOTATE, *args],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    signal_after(proc, out / "manifests", 5, signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-3000:]
    line = stopped_line(err)
    done = len(sealed(out / "manifests"))
    assert 5 <= done < 12 and not (out / "annotations").exists()
    assert f"SIGTERM received: {done} of 12 images done in {out}; continue with: " in line
    command = shlex.split(line.split("continue with: ", 1)[1])
    assert command == ["python", ANNOTATE, "--resume", *args]

    resumed = subprocess.run(
        [sys.executable, *command[1:]], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"--resume: {done} of 12 images are complete" in resumed.stderr
    assert_same_annotations(out, whole)


# --------------------------------------------------------------------------- shards and --merge


@pytest.mark.slow
def test_three_predict_shards_merge_into_the_files_of_one_run_and_bad_sets_are_refused(
    tmp_path, checkpoint, capsys
):
    inputs = tmp_path / "in"
    write_fields(inputs, 7, size=96, seed=3)
    whole = tmp_path / "whole"
    assert predict_main(predict_args(checkpoint, inputs, whole)) == 0
    shards = [tmp_path / f"shard_{k}" for k in (1, 2, 3)]
    for k, folder in enumerate(shards, start=1):
        assert predict_main(predict_args(checkpoint, inputs, folder, "--shard", f"{k}/3")) == 0
    # Every third input of the sorted list; image ids those of the whole batch.
    assert sorted(p.name for p in shards[1].glob("*_labels.tif")) == ["f01_labels.tif", "f04_labels.tif"]
    assert [e["id"] for e in json.loads((shards[1] / "predictions_coco.json").read_text())["images"]] == [
        2,
        5,
    ]

    merged = tmp_path / "merged"
    assert (
        predict_main(["--merge", str(shards[2]), str(shards[0]), str(shards[1]), "--output", str(merged)])
        == 0
    )
    assert_same_predictions(merged, whole)

    def refused(*folders: Path, problem: str) -> None:
        target = tmp_path / "refused"
        assert predict_main(["--merge", *map(str, folders), "--output", str(target)]) == 1
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1 and problem in lines[0] and "Traceback" not in err, err
        assert not target.exists()

    shutil.copytree(shards[0], tmp_path / "copy_of_1")
    refused(
        *shards,
        tmp_path / "copy_of_1",
        problem=f"shards overlap: f00.png is in {shards[0]} (shard 1/3) and in {tmp_path / 'copy_of_1'}",
    )
    refused(shards[0], shards[2], problem="missing shards: 2/3")
    (shards[1] / "f04_labels.tif").write_bytes(b"damaged")
    refused(*shards, problem=f"{shards[1]}: shard 2/3 is incomplete: 1 of 2 images done (f04 is not)")


def test_annotator_shards_merge_into_the_split_of_one_run_and_bad_sets_are_refused(tmp_path, capsys):
    inputs = tmp_path / "raw"
    write_fields(inputs, 7, size=160, seed=60)
    whole = tmp_path / "whole"
    assert annotate_main(annotate_args(inputs, whole, "--resolution", "128", "--workers", "1")) == 0
    shards = [tmp_path / f"shard_{k}" for k in (1, 2, 3)]
    for k, folder in enumerate(shards, start=1):
        assert (
            annotate_main(
                annotate_args(inputs, folder, "--resolution", "128", "--workers", "1", "--shard", f"{k}/3")
            )
            == 0
        )
        assert sorted(os.listdir(folder / "images")) == [f"f{i:02d}.png" for i in range(k - 1, 7, 3)]
        assert not (folder / "annotations").exists()  # the split needs every shard
    capsys.readouterr()
    merged = tmp_path / "merged"
    assert annotate_main(["--merge", *map(str, shards), "--output_dir", str(merged)]) == 0
    assert "Annotated 7/7 images" in capsys.readouterr().out
    assert_same_annotations(merged, whole)

    assert (
        annotate_main(["--merge", str(shards[0]), str(shards[1]), "--output_dir", str(tmp_path / "m2")]) == 1
    )
    assert "missing shards: 3/3" in capsys.readouterr().err
    other = tmp_path / "other_seed"
    assert (
        annotate_main(
            [
                "--input_dir",
                str(inputs),
                "--output_dir",
                str(other),
                "--resolution",
                "128",
                "--workers",
                "1",
                "--test_fraction",
                "0.3",
                "--seed",
                "6",
                "--shard",
                "3/3",
                "--no-progress",
            ]
        )
        == 0
    )
    assert (
        annotate_main(
            ["--merge", str(shards[0]), str(shards[1]), str(other), "--output_dir", str(tmp_path / "m3")]
        )
        == 1
    )
    assert "seed is 6 here, 5 in" in capsys.readouterr().err


def test_shards_split_the_sorted_list_the_same_way_every_time():
    assert [list(Shard.parse(f"{k}/3").positions(7)) for k in (1, 2, 3)] == [[0, 3, 6], [1, 4], [2, 5]]
    assert list(Shard.parse(None).positions(3)) == [0, 1, 2]
    for bad in ("0/3", "4/3", "3", "a/b", "1/0"):
        with pytest.raises(InputError, match="--shard"):
            Shard.parse(bad)
    assert (
        continue_command("predict.py", ["--input", "my fields/*.tif", "--output", "o", "--force"])
        == "python predict.py --resume --input 'my fields/*.tif' --output o"
    )


# --------------------------------------------------------------------------- one writer per folder


def write_lock(folder: Path, pid: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_FILE).write_text(
        json.dumps({"pid": pid, "host": socket.gethostname(), "started": "2024-01-01 00:00:00"})
    )


def test_a_live_writer_keeps_the_folder_and_a_dead_ones_lock_is_reported_then_taken_over(
    tmp_path, checkpoint, capsys
):
    write_fields(tmp_path / "in", 1, size=96)
    out = tmp_path / "out"
    holder = subprocess.Popen(["sleep", "60"])
    try:
        write_lock(out, holder.pid)
        before = (out / LOCK_FILE).read_text()
        assert predict_main(predict_args(checkpoint, tmp_path / "in", out)) == 1
        assert f"another run is writing here: process {holder.pid}" in capsys.readouterr().err
        assert annotate_main(annotate_args(tmp_path / "in", out, "--resolution", "96", "--workers", "1")) == 1
        assert f"another run is writing here: process {holder.pid}" in capsys.readouterr().err
        assert (out / LOCK_FILE).read_text() == before and os.listdir(out) == [LOCK_FILE]
    finally:
        holder.kill()
        holder.wait()

    # The holder is gone: its lock is reported with what to do, and --resume takes it over.
    assert predict_main(predict_args(checkpoint, tmp_path / "in", out)) == 1
    err = capsys.readouterr().err
    assert f"{out / LOCK_FILE}: was left by process {holder.pid}" in err and "no longer running" in err
    assert "--resume" in err and f"remove {out / LOCK_FILE}" in err
    assert predict_main(predict_args(checkpoint, tmp_path / "in", out, "--resume")) == 0
    assert (out / "f00_labels.tif").is_file() and not (out / LOCK_FILE).exists()


# --------------------------------------------------------------------------- --resume refuses another run


def test_resume_refuses_other_settings_or_weights_and_skips_complete_images(
    tmp_path, checkpoint, capsys, caplog
):
    write_fields(tmp_path / "in", 2, size=96)
    out = tmp_path / "out"
    args = predict_args(checkpoint, tmp_path / "in", out)
    assert predict_main(args) == 0
    before = snapshot(out)
    labels_mtime = os.stat(out / "f00_labels.tif").st_mtime_ns
    capsys.readouterr()

    def refused(argv: list[str], *fragments: str) -> None:
        assert predict_main(argv) == 1
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1 and "Traceback" not in err, err
        for fragment in fragments:
            assert fragment in lines[0], (fragment, lines[0])
        assert snapshot(out) == before

    refused(
        [*args, "--resume", "--opts", "INFERENCE.MIN_AREA", "300"],
        "cannot --resume",
        "INFERENCE.MIN_AREA is 300 here",
    )
    other = save_tiny_checkpoint(tmp_path / "other.pth", seed=1)
    refused(
        [*predict_args(other, tmp_path / "in", out), "--resume"],
        "cannot --resume: weights:",
        f"{other} (sha256",
        f"{checkpoint} (sha256",
    )
    write_fields(tmp_path / "in", 3, size=96)
    refused([*args, "--resume"], "inputs differ: 1 new (f02.png)")
    os.remove(tmp_path / "in" / "f02.png")
    refused(args, "holds an earlier run's prediction results", "--resume to continue it")

    with caplog.at_level("INFO"):
        assert predict_main([*args, "--resume"]) == 0
    assert "--resume: 2 of 2 images are complete" in caplog.text
    assert os.stat(out / "f00_labels.tif").st_mtime_ns == labels_mtime  # kept, not predicted again
