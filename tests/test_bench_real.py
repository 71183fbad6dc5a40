"""bench/real_two_stage.py end to end on generated fields laid out like the real data set."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from mask2former.data.synthetic import generate_field
from tests.tiny import REPO_ROOT


def _write_fields(folder, names, seed):
    os.makedirs(folder, exist_ok=True)
    for k, name in enumerate(names):
        field = generate_field(300, seed=seed + k, density="medium", pixel_scale=0.2)
        cv2.imwrite(os.path.join(folder, f"{name}_myosin.png"), field.image)
        cv2.imwrite(os.path.join(folder, f"{name}_myotube_mask.png"), field.masks.any(axis=0).astype(np.uint8) * 255)


@pytest.mark.slow
def test_quick_real_two_stage_trains_scores_and_keeps_every_model(tmp_path):
    data, extra = tmp_path / "fields", tmp_path / "extra"
    _write_fields(data, [f"F_XY{k:02d}" for k in range(4)], seed=10)
    _write_fields(extra, ["E_XY01"], seed=50)
    cv2.imwrite(str(data / "EMPTY_XY09_myosin.png"), np.zeros((300, 300), np.uint8))  # no human mask: not a field
    out_json = tmp_path / "result.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    cmd = [sys.executable, "-m", "bench.real_two_stage", "--quick", "--data", str(data), "--heldout", str(extra),
           "--work", str(tmp_path / "work"), "--output", str(tmp_path / "models"), "--out", str(out_json), "--score-pool"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out_json.read_text())
    # Even positions tune, odd positions are held out; the manual field comes from the tuning half.
    assert result["splits"]["heldout"] == ["F_XY01_myosin.png"]
    assert result["splits"]["manual"][0] in ("F_XY00_myosin.png", "F_XY02_myosin.png")
    assert result["splits"]["pool"] and not set(result["splits"]["pool"]) & set(result["splits"]["manual"])
    for part in (result["heldout"], result["pool"], *result["extra_heldout"].values()):
        assert set(part) == {"annotator", "threshold", "base", "stage1", "stage2", "stage2_replay", "stage2_only", "stage2_scratch"}
        for row in part.values():
            assert 0.0 <= row["mean_iou"] <= 1.0 and 0.0 <= row["mean_dice"] <= 1.0
    # The threshold's union is the blurred foreground: on clean generated fields it finds most of it.
    assert result["heldout"]["threshold"]["mean_iou"] > 0.5
    for method in ("stage1", "stage2", "stage2_replay", "stage2_only", "stage2_scratch"):
        for name in ("model_final.pth", "config.yaml"):
            assert (tmp_path / "models" / method / name).is_file()
    # Stage 1 and Stage 2 only start from the shipped base model, the from-scratch row from random weights.
    assert "WEIGHTS: myotube-base" in (tmp_path / "models" / "stage1" / "config.yaml").read_text()
    assert "WEIGHTS: myotube-base" in (tmp_path / "models" / "stage2_only" / "config.yaml").read_text()
    assert "WEIGHTS: ''" in (tmp_path / "models" / "stage2_scratch" / "config.yaml").read_text()
    figures = os.listdir(tmp_path / "work" / "figures")
    assert len([f for f in figures if f.endswith(".png")]) == 9  # one per method, and all of them side by side
    assert "| Stage 2 (Stage 1 + 5 manual) |" in result["markdown"]

    # The kept model records its scale (fields resized from 300 to 375 px) and bench/real_model.py
    # predicts raw fields at it, and at the raw pixels for comparison.
    real_json = tmp_path / "real_model.json"
    cmd = [sys.executable, "-m", "bench.real_model", "--model", str(tmp_path / "models" / "stage1"), "--data", str(data), "--out", str(real_json),
           "--preset", "quick"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    scored = json.loads(real_json.read_text())["results"]
    assert scored["training_scale"]["scale"] == pytest.approx(375 / 300, rel=0.01) and "recorded" in scored["training_scale"]["why"]
    assert scored["native_pixels"]["scale"] == 1.0
    assert all(0.0 <= r["mean_iou"] <= 1.0 and r["fields"] == 1 for r in scored.values())


def test_components_and_instance_proxy_count_matches_and_pieces():
    from bench.real_two_stage import components, instance_proxy

    mask = np.zeros((40, 40), bool)
    mask[5:9, 2:38] = True  # an isolated tube
    mask[20:24, 2:38] = True  # another
    tubes = components(mask, min_area=10)
    assert len(tubes) == 2
    halves = np.zeros((2, 40, 40), bool)
    halves[0, 20:24, 2:20], halves[1, 20:24, 20:38] = True, True
    found = np.concatenate([tubes[:1], halves])  # the first tube whole, the second in two pieces
    proxy = instance_proxy(tubes, found)
    assert proxy == {"tubes": 2, "matched": 1, "pieces": 3}
