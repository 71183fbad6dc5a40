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
from mask2former.modeling.zoo import zoo_path
from tests.helpers import ENV, REPO_ROOT, TINY_STAGE1, make_unified_dataset, tiny_cfg

TRAIN_NET = os.path.join(REPO_ROOT, "train_net.py")


def _train_cmd(data, out, max_iter, *extra):
    return [
        sys.executable,
        TRAIN_NET,
        "--config-file",
        TINY_STAGE1,
        "--dataset",
        data,
        *extra,
        "SOLVER.MAX_ITER",
        str(max_iter),
        "SOLVER.CHECKPOINT_PERIOD",
        "4",
        "SOLVER.LOG_PERIOD",
        "1",
        "INPUT.IMAGE_SIZE",
        "64",
        "SEED",
        "5",
        "OUTPUT_DIR",
        out,
    ]


def _logged_iterations(out):
    return [r["iteration"] for r in read_metrics(os.path.join(out, "metrics.json")) if "total_loss" in r]


@pytest.mark.slow
def test_sigkill_at_a_random_moment_then_resume_ends_at_exactly_max_iter(tmp_path):
    data = make_unified_dataset(str(tmp_path / "ds"), size=64, n_train=3, n_test=1, n_manual=1)
    out = str(tmp_path / "run")
    max_iter = 40
    kill_after = random.Random().randint(6, 30)
    proc = subprocess.Popen(
        _train_cmd(data, out, max_iter), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
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

    again = subprocess.run(
        _train_cmd(data, out, max_iter), env=ENV, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 1 and "--resume" in again.stderr  # no silent overwrite
    resumed = subprocess.run(
        _train_cmd(data, out, max_iter, "--resume"), env=ENV, capture_output=True, text=True, timeout=240
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)
    assert final["iteration"] == max_iter
    iterations = _logged_iterations(out)
    assert iterations == list(range(max_iter))  # each iteration logged exactly once
    load_model(
        tiny_cfg("INPUT.IMAGE_SIZE", 64, "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 64),
        ["myotube"],
        os.path.join(out, "model_final.pth"),
    )


def test_full_disk_while_saving_is_reported_and_the_previous_checkpoint_kept(tmp_path, monkeypatch):
    root = make_unified_dataset(str(tmp_path / "ds"), size=64, n_train=2, n_test=1, n_manual=1)
    register_two_stage_datasets(root)
    cfg = tiny_cfg(
        "OUTPUT_DIR",
        str(tmp_path / "run"),
        "SOLVER.MAX_ITER",
        8,
        "SOLVER.CHECKPOINT_PERIOD",
        2,
        "INPUT.IMAGE_SIZE",
        64,
    )
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
def test_two_process_gloo_ddp_runs_both_stages_and_matches_the_single_process_schedule(tmp_path):
    """The guide's `train_two_stage.py --num-gpus 2` with the shipped batch sizes (Stage 2: 1 image)."""
    data = make_unified_dataset(str(tmp_path / "ds"), size=64, n_train=4, n_test=2, n_manual=2)
    common = [
        "--dataset",
        data,
        "--config-dir",
        os.path.join(REPO_ROOT, "configs", "cpu_tiny"),
        "--opts",
        "MODEL.DEVICE",
        "cpu",
        "SOLVER.MAX_ITER",
        "5",
        "SOLVER.LOG_PERIOD",
        "1",
        "INPUT.IMAGE_SIZE",
        "64",
        "SEED",
        "2",
    ]
    script = os.path.join(REPO_ROOT, "train_two_stage.py")
    single = subprocess.run(
        [sys.executable, script, *common, "OUTPUT_DIR", str(tmp_path / "single")],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run(
        [sys.executable, script, "--num-gpus", "2", *common, "OUTPUT_DIR", str(tmp_path / "ddp")],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    # Stage 2's batch of 1 on 2 processes is said once, before Stage 1 starts.
    note = (
        "Stage 2: SOLVER.IMS_PER_BATCH 1 is not divisible by the 2 processes: "
        "each process takes 1 image(s), 2 per step in all"
    )
    assert ddp.stdout.count(note) == 1 and ddp.stdout.index(note) < ddp.stdout.index("== Stage 1")
    assert ddp.stdout.count("Dataset ") == 1  # printed by rank 0 only

    # Stage 1 starts from the shipped base model; Stage 2 from Stage 1's final model.
    start = {
        "output_stage1_algorithmic": torch.load(zoo_path("myotube-base"), weights_only=True)["model"],
        "output_stage2_manual": torch.load(
            tmp_path / "ddp" / "output_stage1_algorithmic" / "model_final.pth", weights_only=True
        )["model"],
    }

    def lines(run, stage):
        return [json.loads(x) for x in (tmp_path / run / stage / "metrics.json").read_text().splitlines()]

    for stage, test_split in (
        ("output_stage1_algorithmic", "myotube_algorithmic_test"),
        ("output_stage2_manual", "myotube_manual_test"),
    ):
        ddp_lines, single_lines = lines("ddp", stage), lines("single", stage)
        ddp_train = [r for r in ddp_lines if "total_loss" in r]
        single_train = [r for r in single_lines if "total_loss" in r]
        assert (
            [r["iteration"] for r in ddp_train] == [r["iteration"] for r in single_train] == list(range(5))
        )  # written once
        assert [r["lr"] for r in ddp_train] == pytest.approx([r["lr"] for r in single_train])
        assert sum(f"{test_split}/AP" in r for r in ddp_lines) == 1  # evaluation once, on rank 0
        evaluated = json.loads((tmp_path / "ddp" / stage / f"eval_{test_split}.json").read_text())
        assert evaluated["images"] == 2  # gathered from both ranks
        # Both runs trained from the same start; each moved the weights away from it.
        trained = {
            run: torch.load(tmp_path / run / stage / "model_final.pth", weights_only=True)["model"]
            for run in ("ddp", "single")
        }
        key = "model.transformer_module.queries_features.weight"
        assert not torch.equal(trained["ddp"][key], start[stage][key]) and not torch.equal(
            trained["single"][key], start[stage][key]
        )
        assert not (tmp_path / "ddp" / stage / ".rank0_token").exists()  # the shared-folder check cleans up
    assert (
        open(tmp_path / "ddp" / "output_stage1_algorithmic" / "config.yaml").read().count("IMS_PER_BATCH: 2")
        == 1
    )


def _shared_folder_worker(rank: int, init_file: str, folders: list[str], results: str) -> None:
    import torch.distributed as dist

    from mask2former.engine.trainer import TrainingError, check_shared_output_dir

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        os.makedirs(folders[rank], exist_ok=True)
        check_shared_output_dir(folders[rank])
        outcome = "ok"
    except TrainingError as err:
        outcome = str(err)
    finally:
        dist.destroy_process_group()
    with open(os.path.join(results, f"rank{rank}.txt"), "w") as f:
        f.write(outcome)


@pytest.mark.parametrize("shared", [True, False])
def test_every_rank_must_see_rank0s_output_folder(tmp_path, shared):
    """Two machines without a shared file system: each process writes into its own folder of that name."""
    import torch.multiprocessing as mp

    folders = (
        [str(tmp_path / "out")] * 2
        if shared
        else [str(tmp_path / "machine0" / "out"), str(tmp_path / "machine1" / "out")]
    )
    mp.spawn(
        _shared_folder_worker, args=(str(tmp_path / "init"), folders, str(tmp_path)), nprocs=2, join=True
    )
    outcomes = [(tmp_path / f"rank{r}.txt").read_text() for r in range(2)]
    if shared:
        assert outcomes == ["ok", "ok"]
    else:
        # Both ranks stop with the same one line (neither waits forever for the other).
        # (Each process names its own folder here, as each machine would see the same path.)
        for outcome, folder in zip(outcomes, folders):
            assert outcome.startswith(f"OUTPUT_DIR {folder} is not shared: rank 1 on") and "\n" not in outcome
            assert "file system every machine mounts" in outcome
