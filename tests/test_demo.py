import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from tests.helpers import REPO_ROOT


@pytest.mark.slow
def test_quick_demo_runs_every_step_end_to_end(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mask2former.demo",
            "--quick",
            "--output",
            str(out),
            "--workers",
            "1",
            "--set",
            "ceiling=true",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "demo_results.json").read_text())
    rows = results["results"]
    assert set(rows) == {
        "Classical annotator",
        "Base model alone (myotube-base, no training)",
        "Stage 1 (annotator labels)",
        "Stage 2 (Stage 1 + manual)",
        "Stage 2 only (manual, from the base)",
        "Stage 2 from scratch (manual, random weights)",
        "Exact labels, same budget (ceiling)",
        "Base model alone (myotube-base, no training), four flips fused (--tta)",
        "Stage 2 (Stage 1 + manual), one pass (--no-tta)",
    }
    # Each model predicts as its config says: the trained ones (the CPU presets) with the four
    # flips fused, the base alone (its pretraining config) in one pass; the extra rows the other way,
    # each at the threshold of its setting.
    one_pass = rows["Stage 2 (Stage 1 + manual), one pass (--no-tta)"]
    assert {name for name, row in rows.items() if row.get("flips") is False} == {
        "Base model alone (myotube-base, no training)",
        "Stage 2 (Stage 1 + manual), one pass (--no-tta)",
    }
    assert sum(bool(row.get("flips")) for row in rows.values()) == len(rows) - 3  # all but the annotator
    assert rows["Stage 2 (Stage 1 + manual)"]["score_threshold"] == 0.4 != one_pass["score_threshold"]
    assert results["score_thresholds"] == {"one pass": 0.7, "four flips fused": 0.4}
    # Stage 1 starts from the shipped base model; the from-scratch comparison from random weights.
    assert "WEIGHTS: myotube-base" in (out / "output_stage1_algorithmic" / "config.yaml").read_text()
    assert "WEIGHTS: ''" in (out / "output_stage2_scratch" / "config.yaml").read_text()
    # The annotator's row, recomputed here from the held-out fields and their ground truth.
    from mask2former.annotate import AnnotatorParams, annotate_instances
    from mask2former.data.coco_records import load_coco_instances, record_masks
    from mask2former.data.io import read_image
    from mask2former.evaluation.metrics import InstanceEvaluator

    heldout = out / "raw" / "heldout"
    evaluator = InstanceEvaluator(score_threshold=0.0)
    for record in load_coco_instances(heldout / "annotations.json", heldout / "images"):
        found = annotate_instances(
            read_image(record["file_name"]), AnnotatorParams(scale=results["plan"]["pixel_scale"])
        )
        evaluator.add(record_masks(record), found)
    again = evaluator.summarize()
    assert (again["AP"], again["f1@0.5"]) == pytest.approx(
        (rows["Classical annotator"]["AP"], rows["Classical annotator"]["f1@0.5"])
    )
    for row in rows.values():
        errors = row["errors"]
        assert (
            sum(v for k, v in errors.items() if k.startswith("gt_"))
            == rows["Classical annotator"]["tp"] + rows["Classical annotator"]["fn"]
        )
    assert rows["Classical annotator"]["images"] == 2
    # The comparison models get the two-stage model's whole budget.
    plan = results["plan"]
    for folder in ("output_stage2_only", "output_stage2_scratch", "output_exact_labels"):
        assert (
            f"MAX_ITER: {plan['stage1_iters'] + plan['stage2_iters']}"
            in (out / folder / "config.yaml").read_text()
        )
    # The ceiling learns from the exact ground truth of the same Stage 1 fields.
    exact = json.loads(
        (out / "myotube_dataset_exact" / "annotations" / "algorithmic_train_annotations.json").read_text()
    )
    algorithmic = json.loads(
        (out / "myotube_dataset" / "annotations" / "algorithmic_train_annotations.json").read_text()
    )
    assert exact["images"] == algorithmic["images"] and exact["annotations"] != algorithmic["annotations"]
    # The fields are crops drawn at the plan's pixel scale; the annotator must be told so.
    annotated = json.loads((out / "annotator_out" / "annotation_summary.json").read_text())
    assert annotated["params"]["scale"] == results["plan"]["pixel_scale"]
    table = (out / "demo_results.md").read_text()
    assert "Stage 2 (Stage 1 + manual)" in table and "merged with another" in table
    assert table.split("\n\n")[0] in proc.stdout
    for name in (
        "demo_overview.png",
        "output_stage1_algorithmic/loss_curve.png",
        "output_stage2_manual/model_final.pth",
        "output_stage2_only/model_final.pth",
        "myotube_dataset/annotations/manual_train_annotations.json",
    ):
        assert (out / name).exists(), name
    predictions = os.listdir(out / "predictions")
    assert any(p.endswith(".png") for p in predictions) and any(p.endswith(".csv") for p in predictions)


@pytest.mark.slow
def test_quick_gpu_plan_runs_the_swin_b_architecture_on_cpu(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mask2former.demo",
            "--plan",
            "gpu",
            "--quick",
            "--output",
            str(out),
            "--workers",
            "1",
            "--set",
            "ceiling=false",
            "stage1_iters=2",
            "stage2_iters=1",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    config = (out / "output_stage2_manual" / "config.yaml").read_text()
    assert "EMBED_DIM: 128" in config and "DEPTHS:\n    - 2\n    - 2\n    - 18\n    - 2" in config  # Swin-B
    results = json.loads((out / "demo_results.json").read_text())
    assert (
        "Exact labels, same budget (ceiling)" not in results["results"]
        and results["plan"]["config_dir"] == "."
    )


def _option(cmd: list[str], key: str) -> str | None:
    return cmd[cmd.index(key) + 1] if key in cmd else None


def test_training_runs_follow_the_plan(tmp_path):
    from mask2former.demo import CEILING, SCRATCH, STAGE1, STAGE2, STAGE2_ONLY, DemoPlan, training_runs

    plan = DemoPlan(stage1_iters=50, stage2_iters=10, stage2_generated=0.5)
    runs = training_runs(plan, "data", str(tmp_path))
    assert [row for row, _, _ in runs] == [STAGE1, STAGE2, STAGE2_ONLY, SCRATCH]
    commands = {row: cmd for row, _, cmd in runs}
    # Stage 2 starts from Stage 1's final weights and alone rehearses generated fields.
    assert _option(commands[STAGE2], "MODEL.WEIGHTS") == str(
        tmp_path / "output_stage1_algorithmic" / "model_final.pth"
    )
    assert _option(commands[STAGE2], "SYNTHETIC.REPLAY") == "0.5"
    assert _option(commands[STAGE1], "SYNTHETIC.REPLAY") is None
    # Stage 2 spends the shipped share of its steps on the Stage 1 fields; the comparisons learn
    # from the manual fields alone.
    assert plan.stage2_mix == 0.5
    assert _option(commands[STAGE2], "DATASETS.TRAIN_SHARES") == "(0.5, 0.5)"
    assert _option(commands[STAGE1], "DATASETS.TRAIN") is None
    for row in (STAGE2_ONLY, SCRATCH):
        assert _option(commands[row], "DATASETS.TRAIN") == "('myotube_manual_train',)"
    # Each comparison gets the two stages' whole budget; the from-scratch row starts from nothing.
    assert _option(commands[STAGE2_ONLY], "SOLVER.MAX_ITER") == "60"
    assert _option(commands[SCRATCH], "MODEL.WEIGHTS") == ""
    assert _option(commands[SCRATCH], "SOLVER.BASE_LR") == str(plan.scratch_lr)

    rows = [row for row, _, _ in training_runs(replace(plan, weights=""), "data", str(tmp_path), "exact")]
    assert rows == [STAGE1, STAGE2, SCRATCH, CEILING]
    assert len(training_runs(replace(plan, comparisons=False), "data", str(tmp_path), "exact")) == 2
