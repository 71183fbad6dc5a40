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
- whether the best threshold belongs to the condition or to something a rule can see: per
  condition (donor age and treatment, from the field's name), the threshold calibrated on 1, 2, 3 or all of a
  condition's tuning fields and applied to its held-out fields, and rank correlations with
  whole-field statistics (``conventions``);
- whether the human outline can be learned instead: a logistic-regression pixel classifier on the
  field's contrast at five scales (``learned_foreground``), fitted once on the 5 manual fields of
  the two-stage recipe (what Stage 2 sees) and once on the whole tuning half (eight times as many
  hand-drawn fields), each scored on the held-out half.

    python -m bench.foreground_ceiling                # bench/results/foreground_ceiling.json
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np
from tqdm import tqdm

from bench.common import REPO_ROOT, write_results
from bench.real_two_stage import DEFAULT_DATA, REFERENCE_SIZE, RealPlan, list_fields, load_field, split_fields
from mask2former.annotate import AnnotatorParams

# 0.01 (near the contrast floor) to 0.29: the fields of the real halves are best anywhere in it.
RELATIVE_THRESHOLDS = tuple(round(0.01 * k, 2) for k in range(1, 30))
DEFAULT = RELATIVE_THRESHOLDS.index(AnnotatorParams().relative_threshold)  # its column in a curve
CALIBRATION_FIELDS = (1, 2, 3)  # fields per condition a user might draw by hand
CALIBRATION_DRAWS = 200
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

    from mask2former.annotate.foreground import remove_non_myotube_components

    params = AnnotatorParams(scale=scale)
    mask = ndi.binary_fill_holes(probability > 0.5)
    return remove_non_myotube_components(mask, params, params.pixel_scale(*mask.shape))


def learned_foreground(image: np.ndarray, classifier: PixelClassifier, scale: float) -> np.ndarray:
    """The classifier's foreground of ``image`` (:func:`cleaned_foreground`)."""
    return cleaned_foreground(classifier.probability(pixel_features(image, scale)), scale)


def fit_classifiers(
    splits: dict[str, list[str]], side: int, scale: float
) -> tuple[dict[str, list[str]], dict[str, PixelClassifier]]:
    """The pixel classifier fitted on the manual fields and on the whole tuning half: (the fields of
    each fit, each fit's classifier)."""
    fits = {
        "fitted_on_manual_fields": sorted(splits["manual"]),
        "fitted_on_tuning_half": sorted(splits["pool"] + splits["manual"]),
    }

    def training(paths):
        for path in paths:
            image, human = load_field(path, side)
            yield pixel_features(image, scale), human

    return fits, {name: fit_pixel_classifier(training(paths)) for name, paths in fits.items()}


def learned_ious(
    image: np.ndarray, human: np.ndarray, classifiers: dict[str, PixelClassifier], scale: float
) -> dict[str, float]:
    """One field: the IoU of each classifier's foreground against ``human`` (features computed once)."""
    from mask2former.evaluation.metrics import semantic_iou_dice_binary

    features = pixel_features(image, scale)
    return {
        name: semantic_iou_dice_binary(human, cleaned_foreground(classifier.probability(features), scale))[
            "iou"
        ]
        for name, classifier in classifiers.items()
    }


def learned_outline(
    fits: dict[str, list[str]], splits: dict[str, list[str]], scores: dict[str, dict[str, float]]
) -> dict:
    """Mean IoU of each classifier against the human masks on the fields it was fitted on and on
    the held-out half, next to the default threshold on the same fields. ``scores``: per scored
    field, ``"default"`` and each fit's IoU."""

    def mean_iou(paths, key):
        return float(np.mean([scores[p][key] for p in sorted(paths) if p in scores]))

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


def threshold_curve(image: np.ndarray, human: np.ndarray, scale: float) -> tuple[np.ndarray, dict]:
    """One field: the IoU of the annotator's foreground against ``human`` at each of
    ``RELATIVE_THRESHOLDS`` (the contrast image computed once), the default foreground's error
    anatomy, and statistics of the field that a rule could choose a threshold from."""
    from skimage.filters import threshold_otsu

    from mask2former.annotate.foreground import cleaned, thresholded
    from mask2former.evaluation.metrics import semantic_iou_dice_binary

    params = AnnotatorParams(scale=scale)
    fg = thresholded(image, params)
    bright = max(fg.bright_level, 1e-6)
    ious = []
    for r in RELATIVE_THRESHOLDS:
        found = cleaned(fg.contrast > params.min_contrast + r * bright, params)
        ious.append(semantic_iou_dice_binary(human, found)["iou"])
        if r == RELATIVE_THRESHOLDS[DEFAULT]:
            anatomy = error_anatomy(found, human)
    below = fg.contrast[fg.contrast < np.median(fg.contrast)]
    statistics = {
        "bright_level": bright,
        "background_noise": float(1.4826 * np.median(np.abs(below - np.median(below)))),
        "otsu_over_bright": float(threshold_otsu(fg.contrast[::2, ::2]) / bright),
        "share_above_default": float((fg.contrast > fg.threshold).mean()),
    }
    return np.array(ious), {"anatomy": anatomy, "statistics": statistics}


def condition_of(path: str) -> str:
    """A QA-skMCs field's condition (donor age and treatment): its name before the stage position
    (``_XY``)."""
    return re.split(r"_XY\d", os.path.basename(path))[0]


def score_half(curves: np.ndarray, extras: list[dict]) -> dict:
    """The mean IoU of each threshold over one half's fields (``curves``: fields x thresholds), the
    best of each field on its own, and where the default's wrong pixels lie."""
    best = curves.argmax(axis=1)
    anatomy: dict[str, int] = {}
    for extra in extras:
        for k, v in extra["anatomy"].items():
            anatomy[k] = anatomy.get(k, 0) + v
    return {
        "fields": len(curves),
        "mean_iou_by_relative_threshold": {
            str(r): float(curves[:, k].mean()) for k, r in enumerate(RELATIVE_THRESHOLDS)
        },
        "default_relative_threshold": RELATIVE_THRESHOLDS[DEFAULT],
        "mean_iou_default": float(curves[:, DEFAULT].mean()),
        "mean_iou_best_per_field": float(curves.max(axis=1).mean()),
        "best_relative_threshold_per_field": {
            str(r): int((best == k).sum()) for k, r in enumerate(RELATIVE_THRESHOLDS) if (best == k).any()
        },
        "default_errors": anatomy,
    }


def conventions(
    paths: dict[str, list[str]], curves: dict[str, np.ndarray], extras: dict[str, list[dict]]
) -> dict:
    """Is each field's best threshold a property of its condition, or of something a rule can see?

    - per condition (donor age and treatment, from the field's name): the median best threshold and
      the mean IoU of the default and of each field's own best;
    - calibration by condition: the threshold that fits ``k`` fields of the tuning half of a
      condition best, applied to the held-out fields of that condition (``CALIBRATION_DRAWS`` random
      draws of the ``k`` fields; ``all``: every tuning field of the condition);
    - Spearman correlations between the best threshold and whole-field statistics, per half.
    """
    from scipy.stats import spearmanr

    grid = np.array(RELATIVE_THRESHOLDS)
    conditions = {half: np.array([condition_of(p) for p in ps]) for half, ps in paths.items()}
    per_condition = {}
    for name in sorted(set(conditions["tuning"]) | set(conditions["heldout"])):
        rows = np.concatenate([curves[h][conditions[h] == name] for h in ("tuning", "heldout")])
        per_condition[name] = {
            "fields": len(rows),
            "median_best_relative_threshold": float(np.median(grid[rows.argmax(axis=1)])),
            "mean_iou_default": float(rows[:, DEFAULT].mean()),
            "mean_iou_best_per_field": float(rows.max(axis=1).mean()),
        }
    rng = np.random.default_rng(0)
    tuning, heldout = curves["tuning"], curves["heldout"]
    calibration: dict = {"draws": CALIBRATION_DRAWS}
    for k in (*CALIBRATION_FIELDS, "all"):
        draws = 1 if k == "all" else CALIBRATION_DRAWS
        means = []
        for _ in range(draws):
            scores = []
            for name in sorted(set(conditions["heldout"])):
                own = np.flatnonzero(conditions["tuning"] == name)
                if k != "all":
                    own = rng.choice(own, min(k, len(own)), replace=False)
                pick = tuning[own].mean(axis=0).argmax() if len(own) else tuning.mean(axis=0).argmax()
                scores.extend(heldout[conditions["heldout"] == name, pick])
            means.append(np.mean(scores))
        calibration[str(k)] = {
            "mean_iou_heldout": float(np.mean(means)),
            "percentile_5": float(np.percentile(means, 5)),
            "percentile_95": float(np.percentile(means, 95)),
        }
    pooled = tuning.mean(axis=0).argmax()
    calibration["one_threshold_for_all"] = {
        "relative_threshold": RELATIVE_THRESHOLDS[pooled],
        "mean_iou_heldout": float(heldout[:, pooled].mean()),
    }
    correlations = {}
    for half in ("tuning", "heldout"):
        best = grid[curves[half].argmax(axis=1)]
        correlations[half] = {
            key: float(spearmanr([e["statistics"][key] for e in extras[half]], best).statistic)
            for key in extras[half][0]["statistics"]
        }
    return {
        "per_condition": per_condition,
        "calibration_by_condition": calibration,
        "spearman_best_threshold_vs_field_statistics": correlations,
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
    fits, classifiers = fit_classifiers(splits, side, plan.pixel_scale)
    # Each field is read once: its threshold curve and each classifier's IoU.
    paths, curves, extras, learned = {}, {}, {}, {}
    for name, half in halves.items():
        paths[name] = sorted(half)[: args.fields] if args.fields else sorted(half)
        described = []
        for path in tqdm(paths[name], desc=name, leave=False):
            image, human = load_field(path, side)
            described.append(threshold_curve(image, human, plan.pixel_scale))
            learned[path] = {"default": float(described[-1][0][DEFAULT])}
            learned[path].update(learned_ious(image, human, classifiers, plan.pixel_scale))
        curves[name] = np.array([curve for curve, _ in described])
        extras[name] = [extra for _, extra in described]
        result[name] = score_half(curves[name], extras[name])
        r = result[name]
        print(
            f"{name}: default {r['mean_iou_default']:.3f}, best per field {r['mean_iou_best_per_field']:.3f}",
            flush=True,
        )
    result["conventions"] = conventions(paths, curves, extras)
    result["learned_outline"] = learned_outline(fits, splits, learned)
    write_results(args.out, result, with_torch=False)


if __name__ == "__main__":
    main()
