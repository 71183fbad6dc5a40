"""Instance-segmentation metrics on boolean mask stacks.

COCO mask AP comes from pycocotools with ``maxDets`` raised to the number of predictions (COCO's
default of 100 caps recall on dense fields). The threshold-based metrics (F1, PQ, semantic IoU)
compare two mask stacks after the caller has applied its score threshold.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from scipy.optimize import linear_sum_assignment

from ..structures import Instances


def _encode(masks: np.ndarray) -> list[dict]:
    return [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in masks]


def mask_iou_matrix(gt_masks: np.ndarray, pred_masks: np.ndarray) -> np.ndarray:
    """IoU of every (gt, pred) pair, shape (G, P); overlapping masks are fine."""
    if len(gt_masks) == 0 or len(pred_masks) == 0:
        return np.zeros((len(gt_masks), len(pred_masks)), np.float64)
    iscrowd = [0] * len(gt_masks)
    return np.asarray(mask_utils.iou(_encode(pred_masks), _encode(gt_masks), iscrowd), np.float64).T


def _match(iou: np.ndarray, iou_threshold: float) -> list[tuple[int, int]]:
    """One-to-one matches with IoU > threshold. Above 0.5 matches are unique anyway; below it the
    Hungarian assignment keeps them one-to-one."""
    if iou.size == 0:
        return []
    rows, cols = linear_sum_assignment(-iou)
    return [(r, c) for r, c in zip(rows, cols) if iou[r, c] > iou_threshold]


def instance_f1(gt_masks: np.ndarray, pred_masks: np.ndarray, iou_threshold: float = 0.5) -> dict:
    """Precision, recall and F1 of one-to-one matches at IoU > ``iou_threshold``."""
    iou = mask_iou_matrix(gt_masks, pred_masks)
    tp = len(_match(iou, iou_threshold))
    fp = len(pred_masks) - tp
    fn = len(gt_masks) - tp
    return _prf(tp, fp, fn)


def _prf(tp: int, fp: int, fn: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else (1.0 if fn == 0 else 0.0)
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 1.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def semantic_iou_dice(gt_masks: np.ndarray, pred_masks: np.ndarray, shape: tuple[int, int] | None = None) -> dict:
    """IoU and Dice of the union of all instances (foreground vs background)."""
    shape = shape or (gt_masks.shape[1:] if len(gt_masks) else pred_masks.shape[1:])
    gt = gt_masks.any(axis=0) if len(gt_masks) else np.zeros(shape, bool)
    pred = pred_masks.any(axis=0) if len(pred_masks) else np.zeros(shape, bool)
    return semantic_iou_dice_binary(gt, pred)


def semantic_iou_dice_binary(gt: np.ndarray, pred: np.ndarray) -> dict:
    inter = float(np.logical_and(gt, pred).sum())
    union = float(np.logical_or(gt, pred).sum())
    total = float(gt.sum() + pred.sum())
    return {
        "iou": inter / union if union else 1.0,
        "dice": 2 * inter / total if total else 1.0,
        "intersection": inter,
        "union": union,
        "sum": total,
    }


def panoptic_quality(gt_masks: np.ndarray, pred_masks: np.ndarray) -> dict:
    """PQ = SQ x RQ for one 'thing' class, matches at IoU > 0.5 (unique by construction)."""
    iou = mask_iou_matrix(gt_masks, pred_masks)
    matches = _match(iou, 0.5)
    tp = len(matches)
    fp = len(pred_masks) - tp
    fn = len(gt_masks) - tp
    iou_sum = float(sum(iou[r, c] for r, c in matches))
    return _pq(iou_sum, tp, fp, fn)


def _pq(iou_sum: float, tp: int, fp: int, fn: int) -> dict:
    if tp + fp + fn == 0:
        return {"pq": 1.0, "sq": 1.0, "rq": 1.0}
    sq = iou_sum / tp if tp else 0.0
    rq = tp / (tp + 0.5 * fp + 0.5 * fn)
    return {"pq": sq * rq, "sq": sq, "rq": rq}


def coco_mask_ap(gts: Sequence[np.ndarray], preds: Sequence[Instances], max_dets: int | None = None) -> dict:
    """COCO mask AP, AP50, AP75 (percent) over a set of images.

    ``gts[i]`` is the (G, H, W) ground truth of image i, ``preds[i]`` its predictions (all of them:
    AP ranks by score, so do not threshold first). ``max_dets`` defaults to the largest number of
    predictions or ground-truth instances in any image, at least 100.
    """
    if len(gts) != len(preds):
        raise ValueError(f"{len(gts)} ground-truth images but {len(preds)} prediction sets")
    images, annotations, results = [], [], []
    most = 100
    for image_id, (gt, pred) in enumerate(zip(gts, preds), start=1):
        h, w = gt.shape[1:] if gt.ndim == 3 else pred.image_size
        images.append({"id": image_id, "height": int(h), "width": int(w)})
        for rle, m in zip(_encode(gt), gt):
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "segmentation": rle,
                 "area": float(m.sum()), "bbox": list(mask_utils.toBbox(rle)), "iscrowd": 0}
            )
        for rle, score in zip(_encode(pred.masks), pred.scores):
            results.append({"image_id": image_id, "category_id": 1, "segmentation": rle, "score": float(score)})
        most = max(most, len(gt), len(pred))
    max_dets = max_dets or most
    if not annotations:
        # No ground truth anywhere: AP is undefined; report 0 unless there are also no predictions.
        value = 100.0 if not results else 0.0
        return {"AP": value, "AP50": value, "AP75": value, "max_dets": max_dets}
    if not results:
        return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "max_dets": max_dets}
    gt_api = COCO()
    gt_api.dataset = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "myotube"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt_api.createIndex()
        dt_api = gt_api.loadRes(results)
        evaluator = COCOeval(gt_api, dt_api, iouType="segm")
        evaluator.params.maxDets = [1, 10, max_dets]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"][:, :, 0, 0, -1]  # [iou, recall], area 'all', max_dets

    def ap(rows: slice | int) -> float:
        p = precision[rows]
        p = p[p > -1]
        return float(p.mean() * 100) if p.size else 0.0

    return {"AP": ap(slice(None)), "AP50": ap(0), "AP75": ap(5), "max_dets": max_dets}


def evaluate_instances(
    gts: Sequence[np.ndarray], preds: Sequence[Instances], score_threshold: float = 0.5, max_dets: int | None = None
) -> dict:
    """All metrics over a set of images, pooled the way each metric is defined.

    AP uses every prediction; F1, PQ and semantic IoU/Dice use predictions with score >= threshold.
    Counts (TP/FP/FN, intersections/unions) are pooled over images, not averaged per image.
    """
    result = {k: v for k, v in coco_mask_ap(gts, preds, max_dets).items()}
    tp = fp = fn = 0
    inter = union = total = iou_sum = 0.0
    per_image_iou = []
    for gt, pred in zip(gts, preds):
        kept = pred.masks[pred.scores >= score_threshold]
        iou = mask_iou_matrix(gt, kept)
        matches = _match(iou, 0.5)
        tp += len(matches)
        fp += len(kept) - len(matches)
        fn += len(gt) - len(matches)
        iou_sum += float(sum(iou[r, c] for r, c in matches))
        sem = semantic_iou_dice(gt, kept, shape=pred.image_size)
        inter += sem["intersection"]
        union += sem["union"]
        total += sem["sum"]
        per_image_iou.append(sem["iou"])
    prf = _prf(tp, fp, fn)
    result.update({f"{k}@0.5": v for k, v in prf.items() if k in ("precision", "recall", "f1")})
    result.update({"tp": tp, "fp": fp, "fn": fn})
    result.update(_pq(iou_sum, tp, fp, fn))
    result["semantic_iou"] = inter / union if union else 1.0
    result["semantic_dice"] = 2 * inter / total if total else 1.0
    result["mean_image_semantic_iou"] = float(np.mean(per_image_iou)) if per_image_iou else 1.0
    result["images"] = len(gts)
    result["score_threshold"] = score_threshold
    return result
