"""How well can any outline taken from the classical annotator's threshold fit the human masks?

With ``INFERENCE.SNAP_REACH`` a model's instances take their outlines from the field's foreground
threshold (the annotator's), so the mean IoU of their union against the human masks is bounded by
how well that threshold fits the masks. This bench measures the bound on the real fields of
``bench/real_two_stage.py`` (same halves, same 750 px working scale), without any model:

- the annotator's foreground (``foreground_mask``) at a grid of relative thresholds: the mean IoU
  of each setting, so the default can be compared with the best single value;
- the best threshold of each field on its own (an oracle: it needs the human mask), which says how
  much a per-field choice could add;
- where the default foreground's errors lie: wrong pixels in whole components the other mask does
  not have, or within 3 px of the other mask's outline;
- whether the human outline can be learned instead: a logistic-regression pixel classifier on the
  field's contrast at five scales (``learned_foreground``), fitted once on the 5 manual fields of
  the two-stage recipe (what Stage 2 sees) and once on the whole tuning half (eight times as many
  hand-drawn fields), each scored on the held-out half.

    python -m bench.foreground_ceiling                # bench/results/foreground_ceiling.json
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np
from tqdm import tqdm

from bench.common import REPO_ROOT, write_results
from bench.real_two_stage import DEFAULT_DATA, REFERENCE_SIZE, RealPlan, list_fields, load_field, split_fields

RELATIVE_THRESHOLDS = (0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.10, 0.12, 0.14)
BAND = 3  # px: a wrong pixel this close to the other mask's outline is an outline error
SAMPLES_PER_FIELD = 100_000  # pixels each training field gives the pixel classifier


def error_anatomy(found: np.ndarray, human: np.ndarray) -> dict[str, int]:
    """Wrong pixels of ``found`` against ``human``: in components the other mask barely touches
    (under 20 % of the component), or within ``BAND`` px of the other mask."""
    kernel = np.ones((2 * BAND + 1, 2 * BAND + 1), np.uint8)
    out = {}
    for name, mask, other in (("false", found, human), ("missed", human, found)):
        wrong = mask & ~other
        n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        shared = np.bincount(labels.ravel(), weights=other.ravel(), minlength=n)
        lonely = (shared / np.maximum(np.bincount(labels.ravel(), minlength=n), 1)) < 0.2
        near = cv2.dilate(other.astype(np.uint8), kernel).astype(bool)
        out[f"{name}_px"] = int(wrong.sum())
        out[f"{name}_in_lonely_components"] = int((wrong & lonely[labels]).sum())
        out[f"{name}_near_outline"] = int((wrong & near & ~lonely[labels]).sum())
    return out


def pixel_features(image: np.ndarray, scale: float) -> np.ndarray:
    """(H, W, F) float32: the field's contrast in units of its own foreground threshold (so that
    fields of any brightness share one scale), with its smoothed value, gradient and curvature at
    five scales from 1 to 16 px, and its logarithm."""
    from skimage.feature import multiscale_basic_features

    from mask2former.annotate import AnnotatorParams
    from mask2former.annotate.foreground import thresholded

    fg = thresholded(image, AnnotatorParams(scale=scale))
    contrast = fg.contrast / max(fg.threshold, 1e-6)
    scales = multiscale_basic_features(contrast, sigma_min=1, sigma_max=16, num_sigma=5)
    log_contrast = np.log1p(np.clip(contrast, 0, None))[..., None]
    return np.concatenate([scales, log_contrast], axis=-1).astype(np.float32)


@dataclass
class PixelClassifier:
    """Logistic regression on standardised :func:`pixel_features`."""

    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    bias: float

    def probability(self, features: np.ndarray) -> np.ndarray:
        z = ((features - self.mean) / self.std) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def fit_pixel_classifier(
    fields: Iterable[tuple[np.ndarray, np.ndarray]], seed: int = 0, ridge: float = 1e-3, steps: int = 20
) -> PixelClassifier:
    """Newton's method (iteratively reweighted least squares) on ``SAMPLES_PER_FIELD`` pixels of
    each (features, human mask) pair, taken as the pairs come so that one field's features are in
    memory at a time; ``ridge`` keeps the system well conditioned."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for features, human in fields:
        pick = rng.choice(human.size, min(SAMPLES_PER_FIELD, human.size), replace=False)
        xs.append(features.reshape(-1, features.shape[-1])[pick])
        ys.append(human.ravel()[pick])
    x, y = np.concatenate(xs).astype(np.float64), np.concatenate(ys).astype(np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    x = np.hstack([(x - mean) / std, np.ones((len(x), 1))])
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -30, 30)))
        hessian = (x * (p * (1 - p))[:, None]).T @ x + ridge * len(x) * np.eye(x.shape[1])
        w -= np.linalg.solve(hessian, x.T @ (p - y) + ridge * len(x) * w)
    as32 = np.float32
    return PixelClassifier(mean.astype(as32), std.astype(as32), w[:-1].astype(as32), float(w[-1]))


def cleaned_foreground(probability: np.ndarray, scale: float) -> np.ndarray:
    """Probability above one half, cleaned as the annotator cleans its threshold: holes filled,
    debris and round cells dropped."""
    from scipy import ndimage as ndi

    from mask2former.annotate import AnnotatorParams
    from mask2former.annotate.foreground import remove_non_myotube_components

    params = AnnotatorParams(scale=scale)
    mask = ndi.binary_fill_holes(probability > 0.5)
    return remove_non_myotube_components(mask, params, params.pixel_scale(*mask.shape))


def learned_foreground(image: np.ndarray, classifier: PixelClassifier, scale: float) -> np.ndarray:
    """The classifier's foreground of ``image`` (:func:`cleaned_foreground`)."""
    return cleaned_foreground(classifier.probability(pixel_features(image, scale)), scale)


def learned_outline(splits: dict[str, list[str]], side: int, scale: float) -> dict:
    """Mean IoU of the pixel classifier against the human masks, fitted on the manual fields and
    on the whole tuning half, next to the default threshold on the same fields. Each field is read
    and described once for the scores; the fits read their fields once more."""
    from mask2former.annotate import AnnotatorParams
    from mask2former.annotate.foreground import foreground_mask
    from mask2former.evaluation.metrics import semantic_iou_dice_binary

    fits = {
        "fitted_on_manual_fields": sorted(splits["manual"]),
        "fitted_on_tuning_half": sorted(splits["pool"] + splits["manual"]),
    }

    def training(paths):
        for path in paths:
            image, human = load_field(path, side)
            yield pixel_features(image, scale), human

    classifiers = {name: fit_pixel_classifier(training(paths)) for name, paths in fits.items()}
    # Per field: the default threshold's IoU and each classifier's.
    scores: dict[str, dict[str, float]] = {}
    for path in tqdm(sorted(set(sum(splits.values(), []))), desc="fields", leave=False):
        image, human = load_field(path, side)
        features = pixel_features(image, scale)
        found = {"default": foreground_mask(image, AnnotatorParams(scale=scale)).mask}
        for name, classifier in classifiers.items():
            found[name] = cleaned_foreground(classifier.probability(features), scale)
        scores[path] = {k: semantic_iou_dice_binary(human, mask)["iou"] for k, mask in found.items()}

    def mean_iou(paths, key):
        return float(np.mean([scores[p][key] for p in sorted(paths)]))

    out = {}
    for name, fit_on in fits.items():
        out[name] = {
            "fields_fitted": len(fit_on),
            "mean_iou_fitted_fields": mean_iou(fit_on, name),
            "mean_iou_fitted_fields_default_threshold": mean_iou(fit_on, "default"),
            "mean_iou_heldout": mean_iou(splits["heldout"], name),
        }
        print(f"{name}: held-out {out[name]['mean_iou_heldout']:.3f}", flush=True)
    manual = "fitted_on_manual_fields"
    out[manual]["mean_iou_tuning_pool"] = mean_iou(splits["pool"], manual)
    return out


def score_half(paths: list[str], side: int, scale: float) -> dict:
    from mask2former.annotate import AnnotatorParams
    from mask2former.annotate.foreground import foreground_mask
    from mask2former.evaluation.metrics import semantic_iou_dice_binary

    default = AnnotatorParams().relative_threshold
    per_setting = {r: [] for r in RELATIVE_THRESHOLDS}
    anatomy: dict[str, int] = {}
    for path in tqdm(paths, desc="fields", leave=False):
        image, human = load_field(path, side)
        for r in RELATIVE_THRESHOLDS:
            found = foreground_mask(image, AnnotatorParams(scale=scale, relative_threshold=r)).mask
            per_setting[r].append(semantic_iou_dice_binary(human, found)["iou"])
            if r == default:
                for k, v in error_anatomy(found, human).items():
                    anatomy[k] = anatomy.get(k, 0) + v
    table = np.array([per_setting[r] for r in RELATIVE_THRESHOLDS])  # (settings, fields)
    best = table.argmax(axis=0)
    return {
        "fields": len(paths),
        "mean_iou_by_relative_threshold": {str(r): float(np.mean(v)) for r, v in per_setting.items()},
        "default_relative_threshold": default,
        "mean_iou_default": float(np.mean(per_setting[default])),
        "mean_iou_best_per_field": float(table.max(axis=0).mean()),
        "best_relative_threshold_per_field": {
            str(r): int((best == k).sum()) for k, r in enumerate(RELATIVE_THRESHOLDS)
        },
        "default_errors": anatomy,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder of *_myosin.png + *_myotube_mask.png")
    parser.add_argument("--fields", type=int, default=0, help="score only the first N fields of each half")
    parser.add_argument(
        "--out",
        default=os.path.join(REPO_ROOT, "bench", "results", "foreground_ceiling.json"),
        help="result file",
    )
    args = parser.parse_args(argv)
    fields = list_fields(args.data)
    if not fields:
        print(f"no real fields under {args.data}: skipped")
        return
    plan = RealPlan()
    splits = split_fields(fields, plan)
    halves = {"tuning": splits["pool"] + splits["manual"], "heldout": splits["heldout"]}
    side = round(REFERENCE_SIZE * plan.pixel_scale)
    result = {"data": os.path.abspath(args.data), "side": side}
    for name, paths in halves.items():
        paths = sorted(paths)[: args.fields] if args.fields else sorted(paths)
        result[name] = score_half(paths, side, plan.pixel_scale)
        r = result[name]
        print(
            f"{name}: default {r['mean_iou_default']:.3f}, best per field {r['mean_iou_best_per_field']:.3f}",
            flush=True,
        )
    result["learned_outline"] = learned_outline(splits, side, plan.pixel_scale)
    write_results(args.out, result, with_torch=False)


if __name__ == "__main__":
    main()
