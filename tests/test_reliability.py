"""Crash safety and scale-out: SIGKILL + --resume, full disk, 2-process DDP on CPU (gloo)."""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from mask2former.data.catalog import register_two_stage_datasets
from mask2former.engine import checkpoint as checkpoint_module
from mask2former.engine.checkpoint import CheckpointError, list_checkpoints
from mask2former.engine.events import read_metrics
from mask2former.engine.trainer import train
from mask2former.modeling.weights import load_model
from tests.fixtures import make_unified_dataset
from tests.tiny import REPO_ROOT, TINY_STAGE1, tiny_cfg

TRAIN_NET = os.path.join(REPO_ROOT, "train_net.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _train_cmd(data, out, max_iter, *extra):
    return [sys.executable, TRAIN_NET, "--config-file", TINY_STAGE1, "--dataset", data, *extra,
            "SOLVER.MAX_ITER", str(max_iter), "SOLVER.CHECKPOINT_PERIOD", "4", "SOLVER.LOG_PERIOD", "1",
            "INPUT.IMAGE_SIZE", "64", "SEED", "5", "OUTPUT_DIR", out]


def _logged_iterations(out):
    return [r["iteration"] for r in read_metrics(os.path.join(out, "metrics.json")) if "total_loss" in r]


@pytest.mark.slow
def test_sigkill_at_a_random_moment_then_resume_ends_at_exactly_max_iter(tmp_path):
    data = make_unified_dataset(str(tmp_path / "ds"), size=64, n_train=3, n_test=1, n_manual=1)
    out = str(tmp_path / "run")
    max_iter = 40
    kill_after = random.Random().randint(6, 30)
    proc = subprocess.Popen(_train_cmd(data, out, max_iter), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        done = _logged_iterations(out) if os.path.exists(os.path.join(out, "metrics.json")) else []
        if done and done[-1] >= kill_after:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(os.path.join(out, "model_final.pth"))
    # Nothing half-written is ever named like a checkpoint.
    assert all(not f.endswith(".tmp") or f.startswith(".") for f in os.listdir(out))

    again = subprocess.run(_train_cmd(data, out, max_iter), env=ENV, capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "--resume" in again.stderr  # no silent overwrite
    resumed = subprocess.run(_train_cmd(data, out, max_iter, "--resume"), env=ENV, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)
    assert final["iteration"] == max_iter
    iterations = _logged_iterations(out)
    assert iterations == list(range(max_iter))  # each iteration logged exactly once
    load_model(tiny_cfg("INPUT.IMAGE_SIZE", 64), ["myotube"], os.path.join(out, "model_final.pth"))


def test_full_disk_while_saving_is_reported_and_the_previous_checkpoint_kept(tmp_path, monkeypatch):
    root = make_unified_dataset(str(tmp_path / "ds"), size=64, n_train=2, n_test=1, n_manual=1)
    register_two_stage_datasets(root)
    cfg = tiny_cfg("OUTPUT_DIR", str(tmp_path / "run"), "SOLVER.MAX_ITER", 8, "SOLVER.CHECKPOINT_PERIOD", 2, "INPUT.IMAGE_SIZE", 64)
    real_save = torch.save
    calls = {"n": 0}

    def save_until_disk_is_full(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(checkpoint_module.torch, "save", save_until_disk_is_full)
    with pytest.raises(CheckpointError, match="disk full") as err:
        train(cfg)
    assert "\n" not in str(err.value)
    assert [os.path.basename(p) for p in list_checkpoints(cfg.OUTPUT_DIR)] == ["model_0000002.pth"]
    assert open(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")).read() == "model_0000002.pth"
    assert not [f for f in os.listdir(cfg.OUTPUT_DIR) if f.endswith(".tmp")]  # the partial file is cleaned up


@pytest.mark.slow
def test_two_process_gloo_ddp_matches_the_single_process_schedule(tmp_path):
    data = make_unified_dataset(str(tmp_path / "ds"), size=64, n_train=4, n_test=2, n_manual=1)
    common = ["--stage", "1", "--dataset", data, "--config-dir", os.path.join(REPO_ROOT, "configs", "cpu_tiny"), "--opts",
              "MODEL.DEVICE", "cpu", "SOLVER.MAX_ITER", "5", "SOLVER.LOG_PERIOD", "1", "INPUT.IMAGE_SIZE", "64", "SEED", "2"]
    script = os.path.join(REPO_ROOT, "train_two_stage.py")
    single = subprocess.run([sys.executable, script, *common, "OUTPUT_DIR", str(tmp_path / "single")], env=ENV, capture_output=True, text=True, timeout=240)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run([sys.executable, script, "--num-gpus", "2", *common, "OUTPUT_DIR", str(tmp_path / "ddp")], env=ENV, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]

    def lines(run):
        return [json.loads(x) for x in (tmp_path / run / "metrics.json").read_text().splitlines()]

    ddp_lines, single_lines = lines("ddp"), lines("single")
    ddp_train = [r for r in ddp_lines if "total_loss" in r]
    single_train = [r for r in single_lines if "total_loss" in r]
    assert [r["iteration"] for r in ddp_train] == [r["iteration"] for r in single_train] == list(range(5))  # written once
    assert [r["lr"] for r in ddp_train] == pytest.approx([r["lr"] for r in single_train])
    assert sum("myotube_algorithmic_test/AP" in r for r in ddp_lines) == 1  # evaluation once, on rank 0
    evaluated = json.loads((tmp_path / "ddp" / "eval_myotube_algorithmic_test.json").read_text())
    assert evaluated["images"] == 2  # gathered from both ranks
    assert open(tmp_path / "ddp" / "config.yaml").read().count("IMS_PER_BATCH: 2") == 1
    model, _ = load_model(tiny_cfg("INPUT.IMAGE_SIZE", 64), ["myotube"], str(tmp_path / "ddp" / "model_final.pth"))
    assert sum(p.numel() for p in model.parameters()) > 0
