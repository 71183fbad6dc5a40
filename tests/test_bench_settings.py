"""bench/postprocess_time.py on generated fields laid out like the real data set."""

import argparse
import json

from bench import postprocess_time
from tests.helpers import save_tiny_checkpoint
from tests.test_bench_real import _write_fields


def test_every_setting_post_processes_the_same_prediction(tmp_path):
    data = tmp_path / "fields"
    _write_fields(data, [f"F_XY{k:02d}" for k in range(4)], seed=20)
    weights = save_tiny_checkpoint(
        tmp_path / "model_final.pth",
        opts=("MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", 0.0, "INFERENCE.MIN_AREA", 0),
        input_scale={"factor": 0.5},
    )
    out = tmp_path / "time.json"
    args = argparse.Namespace(
        model=weights,
        data=str(data),
        fields=0,
        setting=[
            ["split", "INFERENCE.SPLIT_DISCONNECTED", "True"],
            ["score", "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", "1.1"],
        ],
        out=str(out),
    )
    postprocess_time.run(args)
    result = json.loads(out.read_text())
    assert result["fields"] == 2  # the held-out half: odd positions
    rows = result["rows"]
    assert list(rows) == ["shipped", "split", "score"]
    assert rows["shipped"]["ratio_to_shipped"] == 1.0
    # The same prediction each time: only the post-processing differs.
    assert rows["shipped"]["instances_per_field"] > 0
    assert rows["split"]["instances_per_field"] >= rows["shipped"]["instances_per_field"]
    assert rows["score"]["instances_per_field"] == 0  # no score reaches 1.1
    for row in rows.values():
        assert row["seconds_per_field"] > row["postprocess_seconds_per_field"] >= 0


def test_the_foreground_ceiling_counts_whole_components_and_outline_pixels_apart():
    import numpy as np

    from bench.foreground_ceiling import error_anatomy

    human = np.zeros((60, 60), bool)
    human[10:20, 5:55] = True  # a tube
    found = human.copy()
    found[9, 5:55] = True  # one row too wide: an outline error
    found[40:46, 20:40] = True  # debris the human mask does not have
    found[10:20, 52:55] = False  # the tube's last 3 px missed: within the band of the found mask
    errors = error_anatomy(found, human)
    assert errors["false_px"] == 50 + 120
    assert errors["false_in_lonely_components"] == 120
    assert errors["false_near_outline"] == 50
    assert errors["missed_px"] == 30
    assert errors["missed_near_outline"] == 30
    assert errors["missed_in_lonely_components"] == 0


def test_a_field_condition_is_its_name_before_the_stage_position():
    from bench.foreground_ceiling import condition_of

    assert condition_of("/data/68M_100_mM_Dex_XY03_myosin.png") == "68M_100_mM_Dex"
    assert condition_of("17M_Control_XY12_myosin.png") == "17M_Control"


def test_a_pixel_classifier_learns_an_outline_drawn_wider_than_the_threshold():
    import cv2
    import numpy as np

    from bench.foreground_ceiling import fit_pixel_classifier, learned_foreground, pixel_features
    from mask2former.annotate import AnnotatorParams
    from mask2former.annotate.foreground import foreground_mask
    from mask2former.data.synthetic import generate_field
    from mask2former.evaluation.metrics import semantic_iou_dice_binary

    scale, wider = 0.5, np.ones((7, 7), np.uint8)

    def field(seed):
        image = generate_field(256, seed=seed, pixel_scale=scale).image
        default = foreground_mask(image, AnnotatorParams(scale=scale)).mask
        return image, default, cv2.dilate(default.astype(np.uint8), wider).astype(bool)  # 3 px wider

    fitted = [(pixel_features(image, scale), human) for image, _, human in map(field, (1, 2))]
    classifier = fit_pixel_classifier(fitted)
    image, default, human = field(3)
    learned = learned_foreground(image, classifier, scale)
    assert learned.sum() > default.sum()
    assert (
        semantic_iou_dice_binary(human, learned)["iou"]
        > semantic_iou_dice_binary(human, default)["iou"] + 0.05
    )


def test_the_foreground_ceiling_scores_the_default_and_a_per_field_best(tmp_path):
    from bench import foreground_ceiling
    from tests.test_bench_real import _write_fields

    data = tmp_path / "fields"
    _write_fields(data, [f"F_XY{k:02d}" for k in range(14)], seed=21)
    out = tmp_path / "ceiling.json"
    foreground_ceiling.main(["--data", str(data), "--out", str(out)])
    result = json.loads(out.read_text())
    for half in ("tuning", "heldout"):
        r = result[half]
        assert r["fields"] > 0
        by_threshold = r["mean_iou_by_relative_threshold"]
        assert r["mean_iou_default"] == by_threshold[str(r["default_relative_threshold"])]
        # The per-field best is at least as good as any one threshold for every field.
        assert r["mean_iou_best_per_field"] >= max(by_threshold.values()) - 1e-12
        assert sum(r["best_relative_threshold_per_field"].values()) == r["fields"]
    # The names carry one condition, so calibrating on all its tuning fields is the one pooled threshold.
    conventions = result["conventions"]
    assert (
        conventions["per_condition"]["F"]["fields"]
        == result["tuning"]["fields"] + result["heldout"]["fields"]
    )
    calibration = conventions["calibration_by_condition"]
    assert calibration["all"]["mean_iou_heldout"] == calibration["one_threshold_for_all"]["mean_iou_heldout"]
    for k in ("1", "2", "3"):
        assert (
            calibration[k]["percentile_5"]
            <= calibration[k]["mean_iou_heldout"]
            <= calibration[k]["percentile_95"]
        )
    learned = result["learned_outline"]
    assert learned["fitted_on_tuning_half"]["fields_fitted"] == result["tuning"]["fields"]
    assert 0 < learned["fitted_on_manual_fields"]["fields_fitted"] < result["tuning"]["fields"]
    for fit in learned.values():
        assert all(0.0 <= v <= 1.0 for k, v in fit.items() if k.startswith("mean_iou"))
