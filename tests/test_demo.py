import json
import os
import subprocess
import sys

import pytest

from tests.tiny import REPO_ROOT


@pytest.mark.slow
def test_quick_demo_runs_every_step_end_to_end(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-m", "mask2former.demo", "--quick", "--output", str(out), "--workers", "1"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "demo_results.json").read_text())
    rows = results["results"]
    assert set(rows) == {"Classical annotator", "Stage 1 (annotator labels)", "Stage 2 (Stage 1 + manual)", "Stage 2 only (manual, no Stage 1)"}
    for row in rows.values():
        assert 0.0 <= row["AP"] <= 100.0 and 0.0 <= row["semantic_iou"] <= 1.0
    assert rows["Classical annotator"]["images"] == 2
    # The fields are crops drawn at the plan's pixel scale; the annotator must be told so.
    annotated = json.loads((out / "annotator_out" / "annotation_summary.json").read_text())
    assert annotated["params"]["scale"] == results["plan"]["pixel_scale"]
    table = (out / "demo_results.md").read_text()
    assert "Stage 2 (Stage 1 + manual)" in table and table in proc.stdout + "\n"
    for name in ("demo_overview.png", "output_stage1_algorithmic/loss_curve.png", "output_stage2_manual/model_final.pth",
                 "output_stage2_only/model_final.pth", "myotube_dataset/annotations/manual_train_annotations.json"):
        assert (out / name).exists(), name
    predictions = os.listdir(out / "predictions")
    assert any(p.endswith(".png") for p in predictions) and any(p.endswith(".csv") for p in predictions)
