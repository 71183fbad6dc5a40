import json
import os
import subprocess
import sys

import pytest
import torch

from mask2former.data.catalog import register_two_stage_datasets
from mask2former.engine import trainer as trainer_module
from mask2former.engine.checkpoint import list_checkpoints
from mask2former.engine.events import read_metrics
from mask2former.engine.optim import lr_factor
from mask2former.engine.trainer import TrainingError, train
from mask2former.modeling.weights import load_model
from tests.helpers import REPO_ROOT, make_unified_dataset, tiny_cfg


@pytest.fixture
def dataset(tmp_path):
    root = make_unified_dataset(str(tmp_path / "ds"), size=96, n_train=3, n_test=1, n_manual=2)
    register_two_stage_datasets(root)
    return root


def _cfg(out, *opts):
    return tiny_cfg("OUTPUT_DIR", out, "SEED", 3, "SOLVER.LOG_PERIOD", 1, "INPUT.IMAGE_SIZE", 96, *opts)


def test_lr_schedule_warms_up_then_decays_to_zero():
    cfg = tiny_cfg("SOLVER.MAX_ITER", 100, "SOLVER.WARMUP_ITERS", 10, "SOLVER.WARMUP_FACTOR", 0.01)
    factors = [lr_factor(cfg, i) for i in range(100)]
    assert factors[0] == pytest.approx(0.01)
    assert factors[10] == pytest.approx((1 - 10 / 100) ** 0.9)
    assert all(a <= b for a, b in zip(factors[:10], factors[1:11]))
    assert all(a > b for a, b in zip(factors[10:], factors[11:]))
    assert lr_factor(cfg, 100) == 0.0


def test_resume_continues_to_exactly_max_iter_on_the_same_schedule(dataset, tmp_path):
    n = 8
    full = _cfg(str(tmp_path / "full"), "SOLVER.MAX_ITER", n, "SOLVER.CHECKPOINT_PERIOD", 3)
    train(full)
    split = _cfg(str(tmp_path / "split"), "SOLVER.MAX_ITER", n, "SOLVER.CHECKPOINT_PERIOD", 3)
    assert train(split, stop_after=n // 2) is None
    assert not os.path.exists(tmp_path / "split" / "model_final.pth")
    assert [os.path.basename(p) for p in list_checkpoints(str(tmp_path / "split"))] == [
        "model_0000003.pth",
        "model_0000004.pth",
    ]
    with pytest.raises(TrainingError, match="--resume"):
        train(split)  # an existing run's checkpoints are never silently overwritten
    assert train(split, resume=True).endswith("model_final.pth")

    def schedule(path):
        return {
            r["iteration"]: r["lr"] for r in read_metrics(os.path.join(path, "metrics.json")) if "lr" in r
        }

    uninterrupted, resumed = schedule(tmp_path / "full"), schedule(tmp_path / "split")
    assert sorted(resumed) == sorted(uninterrupted) == list(range(n))
    for it in range(n):
        assert resumed[it] == pytest.approx(uninterrupted[it], rel=1e-9)
    final = torch.load(tmp_path / "split" / "model_final.pth", weights_only=True)
    assert final["iteration"] == n
    # a second --resume finds the finished run and does nothing
    logged = len(read_metrics(os.path.join(tmp_path / "split", "metrics.json")))
    assert train(split, resume=True).endswith("model_final.pth")
    assert len(read_metrics(os.path.join(tmp_path / "split", "metrics.json"))) == logged


def test_resume_skips_a_corrupt_newest_checkpoint(dataset, tmp_path, caplog):
    cfg = _cfg(str(tmp_path / "run"), "SOLVER.MAX_ITER", 6, "SOLVER.CHECKPOINT_PERIOD", 2)
    train(cfg, stop_after=4)
    newest = list_checkpoints(cfg.OUTPUT_DIR)[-1]
    with open(newest, "r+b") as f:
        f.truncate(100)
    with caplog.at_level("WARNING"):
        assert train(cfg, resume=True).endswith("model_final.pth")
    assert "unreadable" in caplog.text and "model_0000002.pth" in caplog.text


def test_non_finite_loss_stops_with_the_loss_names_and_keeps_the_checkpoint(dataset, tmp_path, monkeypatch):
    cfg = _cfg(str(tmp_path / "nan"), "SOLVER.MAX_ITER", 6, "SOLVER.CHECKPOINT_PERIOD", 2)
    real = trainer_module.loss_terms
    calls = {"n": 0}

    def poisoned(model, out, batch):
        losses = real(model, out, batch)
        calls["n"] += 1
        if calls["n"] == 4:
            losses["loss_dice"] = losses["loss_dice"] * float("nan")
        return losses

    monkeypatch.setattr(trainer_module, "loss_terms", poisoned)
    with pytest.raises(TrainingError, match=r"iteration 3 \(loss_dice=nan\)"):
        train(cfg)
    assert [os.path.basename(p) for p in list_checkpoints(cfg.OUTPUT_DIR)] == ["model_0000002.pth"]


@pytest.mark.slow
def test_two_stage_cli_end_to_end(tmp_path):
    data = make_unified_dataset(str(tmp_path / "myotube_dataset"), size=96, n_train=3, n_test=1, n_manual=2)
    work = tmp_path / "work"
    work.mkdir()
    cmd = [
        sys.executable,
        os.path.join(REPO_ROOT, "train_two_stage.py"),
        "--dataset",
        data,
        "--config-dir",
        os.path.join(REPO_ROOT, "configs", "cpu_tiny"),
        "--opts",
        "SOLVER.MAX_ITER",
        "6",
        "INPUT.IMAGE_SIZE",
        "96",
        "SEED",
        "1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "myotube_algorithmic_train" in proc.stdout and "3 images" in proc.stdout  # counts from the JSON
    s1, s2 = work / "output_stage1_algorithmic", work / "output_stage2_manual"
    for out in (s1, s2):
        for name in ("model_final.pth", "log.txt", "metrics.json", "config.yaml", "loss_curve.png"):
            assert (out / name).is_file(), out / name
        lines = [json.loads(x) for x in (out / "metrics.json").read_text().splitlines()]
        train_lines = [r for r in lines if "total_loss" in r]
        assert train_lines[-1]["iteration"] == 5
        assert {"total_loss", "loss_ce", "loss_mask", "loss_dice", "lr", "time", "data_time"} <= set(
            train_lines[0]
        )
    assert (s1 / "eval_myotube_algorithmic_test.json").is_file()
    assert (s2 / "eval_myotube_manual_test.json").is_file()
    # Stage 1 starts from the shipped base model, Stage 2 from Stage 1's final weights
    assert (
        "myotube-base" in (s1 / "config.yaml").read_text() and "myotube-base" in (s1 / "log.txt").read_text()
    )
    stage2_cfg = (s2 / "config.yaml").read_text()
    assert "output_stage1_algorithmic/model_final.pth" in stage2_cfg
    assert "output_stage1_algorithmic/model_final.pth" in (s2 / "log.txt").read_text()
    cfg2 = tiny_cfg(
        "MODEL.WEIGHTS", str(s1 / "model_final.pth"), "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 64, stage=2
    )  # the presets' queries
    start, _ = load_model(cfg2, ["myotube"])
    stage1 = torch.load(s1 / "model_final.pth", weights_only=True)["model"]
    assert all(torch.equal(v, start.state_dict()[k]) for k, v in stage1.items())
    stage2 = torch.load(s2 / "model_final.pth", weights_only=True)["model"]
    assert any(not torch.equal(stage1[k], stage2[k]) for k in stage1)  # and then it trained
    # Each model records the pixel scale of its training fields for predict.py (96 px fields at 96 px);
    # Stage 2 trains on the 2 manual fields and rehearses the 3 Stage 1 fields.
    for out, fields in ((s1, 3), (s2, 5)):
        scale = torch.load(out / "model_final.pth", weights_only=True)["input_scale"]
        assert scale["factor"] == 1.0 and scale["fields"] == fields


def test_stage2_alone_without_stage1_says_to_run_stage1(tmp_path):
    data = make_unified_dataset(str(tmp_path / "ds"), size=64, n_train=1, n_test=1, n_manual=1)
    cmd = [
        sys.executable,
        os.path.join(REPO_ROOT, "train_two_stage.py"),
        "--stage",
        "2",
        "--dataset",
        data,
        "--config-dir",
        os.path.join(REPO_ROOT, "configs", "cpu_tiny"),
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "run Stage 1 first" in proc.stderr and "Traceback" not in proc.stderr
