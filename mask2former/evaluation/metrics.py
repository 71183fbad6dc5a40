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

from ..data.coco import CATEGORIES
from ..structures import Instances

ERROR_KINDS_GT = ("matched", "merged", "split", "missed", "poor_mask")
ERROR_KINDS_PRED = ("matched", "merge", "fragment", "duplicate", "background", "other")


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


def semantic_iou_dice(
    gt_masks: np.ndarray, pred_masks: np.ndarray, shape: tuple[int, int] | None = None
) -> dict:
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
    evaluator = InstanceEvaluator(max_dets=max_dets)
    for gt, pred in zip(gts, preds):
        evaluator.add_ap_only(gt, pred)
    return evaluator.coco_ap()


class InstanceEvaluator:
    """Accumulates images one at a time (only RLEs and counts are kept, not full masks).

    AP uses every prediction; F1, PQ and semantic IoU/Dice use predictions with
    score >= ``score_threshold``. Counts (TP/FP/FN, intersections/unions) are pooled over images.
    ``state()``/``merge()`` let distributed ranks combine their parts.
    """

    def __init__(self, score_threshold: float = 0.5, max_dets: int | None = None):
        self.score_threshold = score_threshold
        self.max_dets = max_dets
        self.images: list[dict] = []
        self.gt_rles: list[list[dict]] = []
        self.dt: list[tuple[list[dict], list[float]]] = []
        self.counts = {
            "tp": 0,
            "fp": 0,
            "fn": 0,
            "iou_sum": 0.0,
            "intersection": 0.0,
            "union": 0.0,
            "sum": 0.0,
        }
        self.errors = {f"gt_{k}": 0 for k in ERROR_KINDS_GT} | {f"pred_{k}": 0 for k in ERROR_KINDS_PRED}
        self.per_image: list[dict] = []

    def add_ap_only(self, gt_masks: np.ndarray, pred: Instances) -> None:
        h, w = gt_masks.shape[1:] if gt_masks.ndim == 3 else pred.image_size
        self.images.append({"height": int(h), "width": int(w)})
        self.gt_rles.append(_encode(gt_masks))
        self.dt.append((_encode(pred.masks), [float(s) for s in pred.scores]))

    def add(
        self, gt_masks: np.ndarray, pred: Instances, name: str = "", kept: Instances | None = None
    ) -> dict:
        """Add one image; returns its own threshold-based metrics.

        AP ranks every candidate of ``pred``. The other metrics score ``kept``, the instances a user
        gets (after post-processing); by default the candidates with score >= ``score_threshold``.
        """
        self.add_ap_only(gt_masks, pred)
        kept = pred.masks[pred.scores >= self.score_threshold] if kept is None else kept.masks
        iou = mask_iou_matrix(gt_masks, kept)
        matches = _match(iou, 0.5)
        tp, fp, fn = len(matches), len(kept) - len(matches), len(gt_masks) - len(matches)
        sem = semantic_iou_dice(gt_masks, kept, shape=pred.image_size)
        c = self.counts
        c["tp"] += tp
        c["fp"] += fp
        c["fn"] += fn
        c["iou_sum"] += float(sum(iou[r, k] for r, k in matches))
        c["intersection"] += sem["intersection"]
        c["union"] += sem["union"]
        c["sum"] += sem["sum"]
        errors = error_breakdown(gt_masks, kept)
        for k, v in errors.items():
            self.errors[k] += v
        image = {
            "name": name,
            "gt": int(len(gt_masks)),
            "pred": int(len(kept)),
            **_prf(tp, fp, fn),
            "semantic_iou": sem["iou"],
        }
        self.per_image.append(image)
        return image

    def state(self) -> dict:
        return {
            "images": self.images,
            "gt_rles": self.gt_rles,
            "dt": self.dt,
            "counts": self.counts,
            "errors": self.errors,
            "per_image": self.per_image,
        }

    def merge(self, state: dict) -> None:
        self.images += state["images"]
        self.gt_rles += state["gt_rles"]
        self.dt += state["dt"]
        self.per_image += state["per_image"]
        for k, v in state["counts"].items():
            self.counts[k] += v
        for k, v in state["errors"].items():
            self.errors[k] += v

    def coco_ap(self) -> dict:
        most = max([100] + [len(g) for g in self.gt_rles] + [len(d[0]) for d in self.dt])
        max_dets = self.max_dets or most
        images, annotations, results = [], [], []
        for image_id, (img, gts, (dts, scores)) in enumerate(
            zip(self.images, self.gt_rles, self.dt), start=1
        ):
            images.append({"id": image_id, **img})
            for rle in gts:
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": 1,
                        "segmentation": rle,
                        "area": float(mask_utils.area(rle)),
                        "bbox": list(mask_utils.toBbox(rle)),
                        "iscrowd": 0,
                    }
                )
            for rle, score in zip(dts, scores):
                results.append({"image_id": image_id, "category_id": 1, "segmentation": rle, "score": score})
        if not annotations:
            # No ground truth anywhere: AP is undefined; 100 only if nothing was predicted either.
            value = 100.0 if not results else 0.0
            return {"AP": value, "AP50": value, "AP75": value, "max_dets": max_dets}
        if not results:
            return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "max_dets": max_dets}
        gt_api = COCO()
        gt_api.dataset = {"images": images, "annotations": annotations, "categories": CATEGORIES}
        with contextlib.redirect_stdout(io.StringIO()):
            gt_api.createIndex()
            dt_api = gt_api.loadRes(results)
            evaluator = COCOeval(gt_api, dt_api, iouType="segm")
            evaluator.params.maxDets = [1, 10, max_dets]
            evaluator.evaluate()
            evaluator.accumulate()
        precision = evaluator.eval["precision"][:, :, 0, 0, -1]  # [iou, recall] for area 'all', max_dets

        def ap(rows: slice | int) -> float:
            p = precision[rows]
            p = p[p > -1]
            return float(p.mean() * 100) if p.size else 0.0

        return {"AP": ap(slice(None)), "AP50": ap(0), "AP75": ap(5), "max_dets": max_dets}

    def summarize(self) -> dict:
        c = self.counts
        result = self.coco_ap()
        prf = _prf(c["tp"], c["fp"], c["fn"])
        result.update({"precision@0.5": prf["precision"], "recall@0.5": prf["recall"], "f1@0.5": prf["f1"]})
        result.update({"tp": c["tp"], "fp": c["fp"], "fn": c["fn"]})
        result.update(_pq(c["iou_sum"], c["tp"], c["fp"], c["fn"]))
        result["semantic_iou"] = c["intersection"] / c["union"] if c["union"] else 1.0
        result["semantic_dice"] = 2 * c["intersection"] / c["sum"] if c["sum"] else 1.0
        ious = [p["semantic_iou"] for p in self.per_image]
        result["mean_image_semantic_iou"] = float(np.mean(ious)) if ious else 1.0
        result["images"] = len(self.images)
        result["score_threshold"] = self.score_threshold
        result["errors"] = dict(self.errors)
        return result


def evaluate_instances(
    gts: Sequence[np.ndarray],
    preds: Sequence[Instances],
    score_threshold: float = 0.5,
    max_dets: int | None = None,
) -> dict:
    """All metrics over a set of images (see :class:`InstanceEvaluator`)."""
    evaluator = InstanceEvaluator(score_threshold, max_dets)
    for gt, pred in zip(gts, preds):
        evaluator.add(gt, pred)
    return evaluator.summarize()


def _intersections(a_rles: list[dict], b_rles: list[dict]) -> np.ndarray:
    """Pixel counts of every (a, b) intersection, from RLEs (no full-size arrays)."""
    if not a_rles or not b_rles:
        return np.zeros((len(a_rles), len(b_rles)))
    iou = np.asarray(mask_utils.iou(b_rles, a_rles, [0] * len(a_rles)), np.float64).T
    area_a = mask_utils.area(a_rles).astype(np.float64)
    area_b = mask_utils.area(b_rles).astype(np.float64)
    # iou = I / (A + B - I)  =>  I = iou (A + B) / (1 + iou)
    return np.rint(iou * (area_a[:, None] + area_b[None, :]) / (1.0 + iou))


def error_breakdown(
    gt_masks: np.ndarray | list[dict], pred_masks: np.ndarray | list[dict], cover: float = 0.5
) -> dict:
    """Why each true and each predicted instance is or is not a one-to-one match at IoU > 0.5.

    Masks are (N, H, W) bool stacks or lists of COCO RLEs. A true instance that no prediction
    matches is
      - ``missed``: all predictions together cover less than ``cover`` of it;
      - ``merged``: a prediction covers ``cover`` of it and of another true instance too
        (two tubes joined at a crossing or along a contact);
      - ``split``: no prediction covers ``cover`` of it, but two or more predictions lying mostly
        inside it do together (a tube cut into pieces);
      - ``poor_mask``: the rest (a prediction on it, but its outline is off).
    A prediction that matches nothing is a ``merge`` (covers ``cover`` of two true instances), a
    ``duplicate`` (lies mostly inside a true instance another prediction matched), a ``fragment``
    (lies mostly inside an unmatched true instance), ``background`` (lies mostly outside every
    true instance) or ``other``. Returns counts ``gt_<kind>`` and ``pred_<kind>``.
    """
    gt = gt_masks if isinstance(gt_masks, list) else _encode(np.asarray(gt_masks, bool))
    pred = pred_masks if isinstance(pred_masks, list) else _encode(np.asarray(pred_masks, bool))
    counts = {f"gt_{k}": 0 for k in ERROR_KINDS_GT} | {f"pred_{k}": 0 for k in ERROR_KINDS_PRED}
    inter = _intersections(gt, pred)  # (G, P)
    gt_area = mask_utils.area(gt).astype(np.float64) if gt else np.zeros(0)
    pred_area = mask_utils.area(pred).astype(np.float64) if pred else np.zeros(0)
    union = gt_area[:, None] + pred_area[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    gt_matched = np.zeros(len(gt), bool)
    pred_matched = np.zeros(len(pred), bool)
    for g, p in _match(iou, 0.5):
        gt_matched[g] = pred_matched[p] = True
    covers = inter >= cover * np.maximum(gt_area[:, None], 1)  # prediction p covers true g
    inside = inter >= cover * np.maximum(pred_area[None, :], 1)  # prediction p lies mostly inside g
    merging = covers.sum(0) >= 2
    for kind in _true_instance_errors(gt, pred, gt_area, gt_matched, covers, inside, merging, cover):
        counts[f"gt_{kind}"] += 1
    for kind in _prediction_errors(gt, pred, pred_area, pred_matched, gt_matched, inside, merging, cover):
        counts[f"pred_{kind}"] += 1
    return counts


def _true_instance_errors(
    gt: list[dict],
    pred: list[dict],
    gt_area: np.ndarray,
    gt_matched: np.ndarray,
    covers: np.ndarray,
    inside: np.ndarray,
    merging: np.ndarray,
    cover: float,
) -> list[str]:
    """The ERROR_KINDS_GT kind of each true instance (see error_breakdown)."""
    all_pred = [mask_utils.merge(pred)] if pred else []
    covered_by_all = _intersections(gt, all_pred)[:, 0] if pred else np.zeros(len(gt))
    kinds = []
    for g in range(len(gt)):
        pieces = [pred[p] for p in np.flatnonzero(inside[g])]
        if gt_matched[g]:
            kind = "matched"
        elif covered_by_all[g] < cover * gt_area[g]:
            kind = "missed"
        elif (covers[g] & merging).any():
            kind = "merged"
        elif (
            not covers[g].any()
            and len(pieces) >= 2
            and _intersections([gt[g]], [mask_utils.merge(pieces)])[0, 0] >= cover * gt_area[g]
        ):
            kind = "split"
        else:
            kind = "poor_mask"
        kinds.append(kind)
    return kinds


def _prediction_errors(
    gt: list[dict],
    pred: list[dict],
    pred_area: np.ndarray,
    pred_matched: np.ndarray,
    gt_matched: np.ndarray,
    inside: np.ndarray,
    merging: np.ndarray,
    cover: float,
) -> list[str]:
    """The ERROR_KINDS_PRED kind of each prediction (see error_breakdown)."""
    all_gt = [mask_utils.merge(gt)] if gt else []
    on_gt = _intersections(pred, all_gt)[:, 0] if gt else np.zeros(len(pred))
    kinds = []
    for p in range(len(pred)):
        if pred_matched[p]:
            kind = "matched"
        elif merging[p]:
            kind = "merge"
        elif on_gt[p] < cover * pred_area[p]:
            kind = "background"
        elif (inside[:, p] & gt_matched).any():
            kind = "duplicate"
        elif (inside[:, p] & ~gt_matched).any():
            kind = "fragment"
        else:
            kind = "other"
        kinds.append(kind)
    return kinds
