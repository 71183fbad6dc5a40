import numpy as np
import pytest

from mask2former.evaluation.metrics import (
    InstanceEvaluator,
    coco_mask_ap,
    error_breakdown,
    evaluate_instances,
    instance_f1,
    panoptic_quality,
    semantic_iou_dice,
)
from mask2former.structures import Instances
from tests.helpers import draw_tube_masks


@pytest.fixture
def truth():
    rng = np.random.default_rng(1)
    return [np.stack(draw_tube_masks(rng, 80, 4)) for _ in range(3)]


def test_perfect_predictions_score_100(truth):
    res = evaluate_instances(truth, [Instances(g, np.linspace(0.9, 0.6, len(g))) for g in truth])
    assert res["AP"] == pytest.approx(100.0) and res["AP50"] == pytest.approx(100.0)
    assert res["f1@0.5"] == 1.0 and res["pq"] == pytest.approx(1.0) and res["semantic_iou"] == 1.0


def test_empty_predictions_score_zero(truth):
    res = evaluate_instances(truth, [Instances.empty(80, 80) for _ in truth])
    assert res["AP"] == 0.0 and res["f1@0.5"] == 0.0 and res["semantic_iou"] == 0.0
    assert res["fn"] == sum(len(g) for g in truth)


def test_half_the_instances_found(truth):
    preds = [Instances(g[: len(g) // 2], np.ones(len(g) // 2)) for g in truth]
    res = evaluate_instances(truth, preds)
    assert res["recall@0.5"] == pytest.approx(0.5) and res["precision@0.5"] == 1.0
    assert 30 < res["AP"] < 70


def test_overlapping_instances_are_matched_one_to_one():
    a = np.zeros((1, 50, 50), bool)
    a[0, 20:25, :] = True
    b = np.zeros((1, 50, 50), bool)
    b[0, :, 20:25] = True
    gt = np.concatenate([a, b])  # a cross: the two tubes share a 5x5 patch
    assert instance_f1(gt, gt)["f1"] == 1.0
    merged = gt.any(0, keepdims=True)  # one blob for both tubes is one match at most
    f = instance_f1(gt, merged)
    assert f["tp"] <= 1 and f["fn"] >= 1
    assert semantic_iou_dice(gt, merged)["iou"] == 1.0
    assert panoptic_quality(gt, gt)["pq"] == pytest.approx(1.0)


def test_max_dets_is_raised_for_dense_fields():
    rng = np.random.default_rng(0)
    masks = np.zeros((150, 64, 64), bool)
    for i in range(150):
        y, x = divmod(i, 12)
        masks[i, y * 5 : y * 5 + 4, x * 5 : x * 5 + 4] = True
    masks = masks[masks.reshape(150, -1).any(1)]
    pred = Instances(masks, rng.uniform(0.5, 1, len(masks)))
    res = coco_mask_ap([masks], [pred])
    assert res["max_dets"] >= len(masks)
    assert res["AP"] == pytest.approx(100.0)  # COCO's default maxDets=100 would cap recall below 1


def test_evaluator_state_merges_like_a_single_pass(truth):
    preds = [Instances(g[:3], np.ones(3)) for g in truth]
    one = evaluate_instances(truth, preds)
    parts = [InstanceEvaluator(), InstanceEvaluator()]
    for i, (g, p) in enumerate(zip(truth, preds)):
        parts[i % 2].add(g, p)
    parts[0].merge(parts[1].state())
    merged = parts[0].summarize()
    for key in ("AP", "f1@0.5", "pq", "semantic_iou", "tp", "fp", "fn"):
        assert merged[key] == pytest.approx(one[key])


def _bar(y0, y1, x0, x1, size=64):
    m = np.zeros((size, size), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_error_breakdown_names_each_kind_of_mistake():
    horizontal, vertical = _bar(10, 14, 0, 64), _bar(0, 64, 30, 34)  # two tubes crossing
    cut, missed, found = _bar(30, 34, 0, 64), _bar(40, 44, 0, 64), _bar(50, 54, 0, 64)
    gt = np.stack([horizontal, vertical, cut, missed, found])
    pred = np.stack(
        [
            # one instance for the crossing pair: IoU 0.52 with the horizontal tube, merges the vertical one
            horizontal | vertical,
            _bar(30, 34, 0, 20),
            _bar(30, 34, 22, 42),
            _bar(30, 34, 44, 64),  # the third tube in three pieces
            found,
            _bar(50, 54, 0, 40),  # found, plus a duplicate piece of it
            _bar(58, 62, 0, 64),  # on background
        ]
    )
    errors = error_breakdown(gt, pred)
    assert (
        errors["gt_matched"] == 2
        and errors["gt_merged"] == 1
        and errors["gt_split"] == 1
        and errors["gt_missed"] == 1
    )
    assert (
        errors["pred_matched"] == 2
        and errors["pred_fragment"] == 3
        and errors["pred_duplicate"] == 1
        and errors["pred_background"] == 1
    )
    assert sum(v for k, v in errors.items() if k.startswith("gt_")) == len(gt)
    assert sum(v for k, v in errors.items() if k.startswith("pred_")) == len(pred)


def test_error_breakdown_counts_a_prediction_joining_two_unmatched_tubes_as_a_merge():
    a, b = _bar(10, 14, 0, 64), _bar(16, 20, 0, 64)  # two tubes side by side
    joined = _bar(10, 20, 0, 64)
    errors = error_breakdown(np.stack([a, b]), joined[None])
    assert errors["gt_merged"] == 2 and errors["pred_merge"] == 1 and errors["gt_matched"] == 0


def test_error_breakdown_accepts_rles_and_is_pooled_by_the_evaluator(truth):
    from mask2former.evaluation.metrics import _encode

    pred = truth[0][:2]
    assert error_breakdown(_encode(truth[0]), _encode(pred)) == error_breakdown(truth[0], pred)
    ev = InstanceEvaluator(score_threshold=0.5)
    for g in truth:
        ev.add(g, Instances(g[:2], np.ones(2)))
    errors = ev.summarize()["errors"]
    assert errors["gt_matched"] == 6 and errors["gt_missed"] == sum(len(g) for g in truth) - 6


def test_f1_scores_the_kept_instances_and_ap_every_candidate(truth):
    gts = truth[0]
    doubled = Instances(
        np.concatenate([gts, gts]), np.concatenate([np.full(len(gts), 0.9), np.full(len(gts), 0.8)])
    )
    raw = InstanceEvaluator(score_threshold=0.5)
    raw.add(gts, doubled)
    after = InstanceEvaluator(score_threshold=0.5)
    after.add(gts, doubled, kept=doubled.subset(np.arange(len(gts))))
    raw_result, kept_result = raw.summarize(), after.summarize()
    assert raw_result["precision@0.5"] == pytest.approx(0.5) and kept_result["precision@0.5"] == 1.0
    assert kept_result["f1@0.5"] == 1.0 and kept_result["errors"]["pred_duplicate"] == 0
    assert kept_result["AP"] == pytest.approx(raw_result["AP"])  # AP ranks the same candidates either way
