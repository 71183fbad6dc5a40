"""bench/real_two_stage.py end to end on generated fields laid out like the real data set."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from bench.real_two_stage import LABELS, MODELS
from mask2former.data.synthetic import generate_field
from tests.helpers import REPO_ROOT


def _write_fields(folder, names, seed):
    os.makedirs(folder, exist_ok=True)
    for k, name in enumerate(names):
        field = generate_field(300, seed=seed + k, density="medium", pixel_scale=0.2)
        cv2.imwrite(os.path.join(folder, f"{name}_myosin.png"), field.image)
        cv2.imwrite(
            os.path.join(folder, f"{name}_myotube_mask.png"), field.masks.any(axis=0).astype(np.uint8) * 255
        )


@pytest.mark.slow
def test_quick_real_two_stage_trains_scores_and_keeps_every_model(tmp_path):
    data, extra = tmp_path / "fields", tmp_path / "extra"
    _write_fields(data, [f"F_XY{k:02d}" for k in range(4)], seed=10)
    _write_fields(extra, ["E_XY01"], seed=50)
    cv2.imwrite(
        str(data / "EMPTY_XY09_myosin.png"), np.zeros((300, 300), np.uint8)
    )  # no human mask: not a field
    out_json = tmp_path / "result.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    cmd = [
        sys.executable,
        "-m",
        "bench.real_two_stage",
        "--quick",
        "--data",
        str(data),
        "--heldout",
        str(extra),
        "--work",
        str(tmp_path / "work"),
        "--output",
        str(tmp_path / "models"),
        "--out",
        str(out_json),
        "--score-pool",
    ]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out_json.read_text())
    # Even positions tune, odd positions are held out; the manual field comes from the tuning half.
    assert result["splits"]["heldout"] == ["F_XY01_myosin.png"]
    assert result["splits"]["manual"][0] in ("F_XY00_myosin.png", "F_XY02_myosin.png")
    assert result["splits"]["pool"] and not set(result["splits"]["pool"]) & set(result["splits"]["manual"])
    for part in (result["heldout"], result["pool"], *result["extra_heldout"].values()):
        assert set(part) == {
            "annotator",
            "threshold",
            "base",
            "stage1",
            "stage2",
            "stage2_manual_only",
            "stage2_only",
            "stage2_scratch",
        }
        for row in part.values():
            assert 0.0 <= row["mean_iou"] <= 1.0 and 0.0 <= row["mean_dice"] <= 1.0
    # The threshold's union is the blurred foreground: on clean generated fields it finds most of it.
    assert result["heldout"]["threshold"]["mean_iou"] > 0.5
    for method in ("stage1", "stage2", "stage2_manual_only", "stage2_only", "stage2_scratch"):
        for name in ("model_final.pth", "config.yaml"):
            assert (tmp_path / "models" / method / name).is_file()
    # Stage 1 and Stage 2 only start from the shipped base model, the from-scratch row from random weights.
    assert "WEIGHTS: myotube-base" in (tmp_path / "models" / "stage1" / "config.yaml").read_text()
    assert "WEIGHTS: myotube-base" in (tmp_path / "models" / "stage2_only" / "config.yaml").read_text()
    assert "WEIGHTS: ''" in (tmp_path / "models" / "stage2_scratch" / "config.yaml").read_text()
    # Stage 2 spends half its steps on the Stage 1 fields (the shipped recipe); the rows before it
    # and the comparisons learn from the manual fields alone.
    from mask2former.config import load_config

    datasets = {m: load_config(str(tmp_path / "models" / m / "config.yaml")).DATASETS for m in MODELS}
    assert datasets["stage2"].TRAIN == ("myotube_manual_train", "myotube_algorithmic_train")
    assert tuple(datasets["stage2"].TRAIN_SHARES) == (0.5, 0.5)
    for method in ("stage2_manual_only", "stage2_only", "stage2_scratch"):
        assert datasets[method].TRAIN == ("myotube_manual_train",) and not datasets[method].TRAIN_SHARES
    figures = os.listdir(tmp_path / "work" / "figures")
    assert (
        len([f for f in figures if f.endswith(".png")]) == 9
    )  # one per method, and all of them side by side
    assert f"| {LABELS['stage2']} |" in result["markdown"]

    # Stage 2 from that Stage 1 on the human masks of the manual field, and of the whole tuning half.
    human_json = tmp_path / "human_fields.json"
    cmd = [sys.executable, "-m", "bench.human_fields", "--quick", "--iters", "4", "--data", str(data)]
    cmd += [
        "--stage1",
        str(tmp_path / "work" / "stage1"),
        "--work",
        str(tmp_path / "human"),
        "--out",
        str(human_json),
    ]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    human = json.loads(human_json.read_text())
    assert human["fields"] == {"manual_fields": 1, "tuning_half": 2}
    for setting in ("as_shipped", "own_outlines"):
        assert set(human["heldout"][setting]) == {"annotator", "threshold", "manual_fields", "tuning_half"}
    manual = tmp_path.glob("human/dataset-*/annotations/manual_train_annotations.json")
    assert sorted(len(json.loads(path.read_text())["images"]) for path in manual) == [1, 2]

    # The kept model records its scale (fields resized from 300 to 375 px) and bench/real_model.py
    # predicts raw fields at it, and at the raw pixels for comparison.
    real_json = tmp_path / "real_model.json"
    cmd = [
        sys.executable,
        "-m",
        "bench.real_model",
        "--model",
        str(tmp_path / "models" / "stage1"),
        "--data",
        str(data),
        "--out",
        str(real_json),
        "--preset",
        "quick",
    ]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    scored = json.loads(real_json.read_text())["results"]
    assert (
        scored["training_scale"]["scale"] == pytest.approx(375 / 300, rel=0.01)
        and "recorded" in scored["training_scale"]["why"]
    )
    assert scored["native_pixels"]["scale"] == 1.0
    assert all(0.0 <= r["mean_iou"] <= 1.0 and r["fields"] == 1 for r in scored.values())


def test_components_and_instance_proxy_count_matches_and_pieces():
    from bench.real_two_stage import components
    from bench.seams import instance_proxy

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


def test_more_hand_drawn_fields_add_evenly_spaced_pool_fields_to_the_manual_ones():
    from bench.human_fields import hand_drawn

    pool = [f"P{k:02d}" for k in range(35)]
    splits = {"manual": ["M0", "M1", "M2", "M3", "M4"], "pool": pool[::-1]}
    ten = hand_drawn(splits, 10)
    assert len(ten) == 10 and set(splits["manual"]) <= set(ten) and ten == sorted(ten)
    assert {"P00", "P34"} <= set(ten)  # from the first pool field to the last
    twenty = [int(name[1:]) for name in hand_drawn(splits, 20) if name.startswith("P")]
    assert len(twenty) == 15 and max(np.diff(twenty)) <= 3  # no stretch of the pool left out


def test_unmatched_isolated_tubes_are_missed_merged_split_or_outlined():
    from bench.seams import unmatched_causes

    tubes = np.zeros((5, 60, 60), bool)
    for k in range(5):
        tubes[k, 4 + 11 * k : 8 + 11 * k, 5:55] = True  # five tubes, 4 x 50 px, 7 px apart
    found = np.zeros((7, 60, 60), bool)
    found[0] = tubes[0]  # matched
    found[1, 15:19, 5:20] = True  # 60 of its 200 px: tube 1 is missed
    found[2, 26:36, 5:55] = True  # tube 2 and the gap below it: merged
    for piece, (x0, x1) in enumerate(((5, 22), (22, 38), (38, 55))):
        found[3 + piece, 37:41, x0:x1] = True  # tube 3 in three pieces: split
    found[6, 48:52, 5:35] = found[6, 52:55, 5:35] = True  # tube 4: 120 px in, 90 out: the outline fails
    causes = unmatched_causes(tubes, found)
    assert causes == {"missed": 1, "merged": 1, "split": 1, "outline": 1}
    assert unmatched_causes(tubes, found[:0]) == {"missed": 5, "merged": 0, "split": 0, "outline": 0}


def test_seam_breakdown_tells_cuts_on_a_tile_border_from_cuts_inside_a_tile():
    from bench.seams import seam_breakdown, tile_edges

    # Tiles of 64 px with overlap 0.25 on a 112 px field: inner borders at 48 and 64 along each axis;
    # the field's own edges are none.
    edges = tile_edges((112, 112), 64, 0.25)
    assert edges[:, 46:51].all() and edges[46:51, :].all()
    assert not edges[20:40, 30].any() and not edges[20:40, 0].any() and not edges[80:, 111].any()
    tubes = np.zeros((3, 112, 112), bool)
    tubes[0, 10:18, 5:105] = True  # cut where the tiles meet
    tubes[1, 50:58, 5:105] = True  # cut in the middle of a tile
    tubes[2, 90:98, 5:105] = True  # found whole
    pieces = np.zeros((5, 112, 112), bool)
    pieces[0, 10:18, 5:48], pieces[1, 10:18, 48:105] = True, True
    pieces[2, 50:58, 5:30], pieces[3, 50:58, 30:105] = True, True
    pieces[4] = tubes[2]
    seams = seam_breakdown(tubes, pieces, edges)
    assert (seams["cut_tubes"], seams["cut_at_tile_border"]) == (2, 1)
    # Pieces 0 and 1 end on a border: part of the outlines lies on tile borders, most does not.
    assert 0 < seams["outline_on_tile_border_px"] < seams["outline_px"]
    whole = seam_breakdown(tubes[2:], pieces[4:], edges)
    assert whole["cut_tubes"] == 0


def test_student_teacher_parts_split_the_disagreement_by_where_it_lies():
    from bench.student_teacher import BAND, field_parts, summarize

    def box(y0, y1, x0, x1):
        m = np.zeros((80, 80), bool)
        m[y0:y1, x0:x1] = True
        return m

    tube_a, tube_b = box(10, 20, 5, 75), box(40, 50, 5, 75)
    teacher = np.stack([tube_a, tube_b])
    # The model finds tube A one pixel narrower on each long side, misses tube B, and adds a blob.
    narrow_a, blob = box(11, 19, 5, 75), box(62, 72, 30, 40)
    human = tube_a | blob
    parts = field_parts(human, teacher, np.stack([narrow_a, blob]))
    px = parts["pixels"]
    assert parts["annotator_instances"] == 2 and parts["annotator_instances_missed"] == 1
    assert px["model_lacks_missed_instances"] == tube_b.sum()
    assert px["model_lacks_band"] == 2 * 70  # the two rows A lost lie on its outline
    assert px["model_lacks"] == tube_b.sum() + 2 * 70
    assert px["model_adds"] == px["model_adds_extra_instances"] == blob.sum() == px["model_adds_human"]
    assert px["model_adds_band"] == 0 and BAND >= 1
    assert px["model_lacks_human"] == 2 * 70  # tube B is not in the human mask
    assert parts["iou_model_annotator"] == pytest.approx(narrow_a.sum() / (tube_a | tube_b | blob).sum())
    summary, totals = summarize([parts, parts])
    assert totals["model_lacks"] == 2 * px["model_lacks"]
    assert summary["share_lacks_missed_instances"] == round(tube_b.sum() / px["model_lacks"], 3)
    assert summary["share_adds_extra_instances"] == 1.0 and summary["annotator_instances_missed"] == 2
