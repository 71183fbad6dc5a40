"""A learned reference for the annotator: how far a supervised pixel classifier gets on real fields.

The annotator's foreground rule has two tuned numbers. This asks whether many more numbers, learned
from the human masks themselves, would do much better: a gradient-boosted pixel classifier (the
ilastik recipe) on multi-scale filter responses of the myosin channel (optionally also the DAPI
channel), trained on pixels of the tuning half of the real fields (even positions, as for the
annotator) and scored on the held-out half, next to the annotator on the same fields at the same
resolution. Classifier masks get the annotator's clean-up (hole filling, debris removal).

Needs scikit-learn, which the toolkit does not depend on:

    pip install scikit-learn
    python -m bench.annotator_learned_reference [--data DIR] [--resolution 750]

Three feature sets: the myosin channel alone; plus the DAPI channel (<field>_dapi.png); and myosin
plus per-field statistics (bright level, noise, covered fraction of a first mask) on every pixel,
which let the classifier tell the tuning fields apart and learn each one's threshold.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import cv2
import numpy as np
from scipy import ndimage as ndi

from bench.annotator import DEFAULT_DATA, real_fields
from bench.common import write_results
from mask2former.annotate.foreground import (
    fill_small_holes,
    foreground_mask,
    normalize_intensity,
    remove_non_myotube_components,
)
from mask2former.annotate.params import AnnotatorParams
from mask2former.data.io import read_image

PIXELS_PER_FIELD = 20_000
N_NUCLEI = 4  # DAPI feature columns
N_FIELD = 3  # per-field statistic columns


def pixel_features(image: np.ndarray, nuclei: np.ndarray | None, field_features: bool) -> np.ndarray:
    """(H, W, F) float32: contrast in absolute and field-relative units at several scales, Hessian
    eigenvalues (tube-ness), gradient, local-maximum ratios and local spread."""
    from skimage.feature import hessian_matrix, hessian_matrix_eigvals

    params = AnnotatorParams()
    x = normalize_intensity(image)
    s = max(x.shape) / params.reference_size
    smooth = cv2.GaussianBlur(x, (0, 0), params.smoothing_sigma * s)
    c = smooth - np.median(smooth[::4, ::4])
    bright = max(float(np.percentile(c[::2, ::2], params.contrast_percentile)), 1e-4)
    threshold = params.min_contrast + params.relative_threshold * bright
    feats = [c * 255, c / bright, (c - threshold) * 255]
    for sigma in (4, 8, 16, 32, 64):
        g = cv2.GaussianBlur(c, (0, 0), sigma * s)
        feats += [g * 255, g / bright]
    for sigma in (6, 12, 24):
        eig = hessian_matrix_eigvals(
            hessian_matrix(c, sigma=sigma * s, order="rc", use_gaussian_derivatives=False)
        )
        feats += [eig[0] / bright * (sigma * s) ** 2, eig[1] / bright * (sigma * s) ** 2]
    g = cv2.GaussianBlur(c, (0, 0), 4 * s)
    feats.append(np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)) / bright)
    for window in (30, 82):
        peak = ndi.maximum_filter(cv2.GaussianBlur(c, (0, 0), 2 * s), size=int(window * s) | 1)
        feats += [c / np.maximum(peak, 1e-4), peak / bright]
    mean = cv2.GaussianBlur(c, (0, 0), 16 * s)
    feats.append(np.sqrt(np.maximum(cv2.GaussianBlur(c * c, (0, 0), 16 * s) - mean * mean, 0)) / bright)
    if nuclei is not None:
        d = normalize_intensity(nuclei)
        d = d - np.median(d)
        d_bright = max(float(np.percentile(d, 99.5)), 1e-4)
        feats += [cv2.GaussianBlur(d, (0, 0), sigma * s) / d_bright for sigma in (2, 8, 24, 60)]
    if field_features:
        noise = float(np.median(np.abs(x - smooth)[::2, ::2])) * 1.4826
        feats += [np.full_like(c, v) for v in (bright * 255, noise * 255, float((c > threshold).mean()))]
    return np.stack(feats, -1).astype(np.float32)


def load_field(
    path: str, resolution: int, nuclei: bool, field_features: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, human mask, annotator foreground) of one field at ``resolution``."""

    def resized(p: str, interpolation: int) -> np.ndarray:
        img = read_image(p)
        img = img.max(axis=2) if img.ndim == 3 else img
        return cv2.resize(img, (resolution, resolution), interpolation=interpolation)

    image = resized(path, cv2.INTER_AREA)
    human = resized(path.replace("_myosin.png", "_myotube_mask.png"), cv2.INTER_NEAREST) > 0
    dapi = resized(path.replace("_myosin.png", "_dapi.png"), cv2.INTER_AREA) if nuclei else None
    return pixel_features(image, dapi, field_features), human, foreground_mask(image).mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--resolution", type=int, default=750)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default="bench/results/annotator_learned_reference.json")
    args = parser.parse_args(argv)
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier
    except ImportError:
        print("this benchmark needs scikit-learn: pip install scikit-learn", file=sys.stderr)
        return 2
    paths = real_fields(args.data)
    if not paths:
        print(f"no real fields in {args.data}: skipped")
        return 0
    with ProcessPoolExecutor(args.workers) as pool:
        fields = list(
            pool.map(partial(load_field, resolution=args.resolution, nuclei=True, field_features=True), paths)
        )
    fields = [f for f in fields if f[1].any()]
    tuning, held_out = fields[0::2], fields[1::2]
    n_all = fields[0][0].shape[-1]
    myosin = list(range(n_all - N_NUCLEI - N_FIELD))
    feature_sets = {
        "myosin": myosin,
        "myosin + DAPI": myosin + list(range(len(myosin), len(myosin) + N_NUCLEI)),
        "myosin + per-field statistics": myosin + list(range(n_all - N_FIELD, n_all)),
    }
    params, scale = AnnotatorParams(), args.resolution / AnnotatorParams().reference_size
    results: dict = {"resolution": args.resolution, "fields": len(fields), "classifier": {}}
    for name, part in (("tuning_half", tuning), ("held_out_half", held_out)):
        results[f"annotator_{name}_mean_iou"] = float(np.mean([iou(fg, human) for _, human, fg in part]))
    for set_name, columns in feature_sets.items():
        rng = np.random.default_rng(0)
        xs, ys = [], []
        for feats, human, _ in tuning:
            idx = rng.choice(human.size, PIXELS_PER_FIELD, replace=False)
            xs.append(feats.reshape(-1, n_all)[idx][:, columns])
            ys.append(human.ravel()[idx])
        clf = HistGradientBoostingClassifier(
            max_iter=100, max_leaf_nodes=15, min_samples_leaf=2000, random_state=0
        )
        clf.fit(np.concatenate(xs), np.concatenate(ys))
        scores = {}
        for name, part in (("tuning_half", tuning), ("held_out_half", held_out)):
            ious = []
            for feats, human, _ in part:
                prob = clf.predict_proba(feats.reshape(-1, n_all)[:, columns])[:, 1].reshape(human.shape)
                mask = remove_non_myotube_components(
                    fill_small_holes(prob > 0.5, params.fill_holes_area * scale**2), params, scale
                )
                ious.append(iou(mask, human))
            scores[f"{name}_mean_iou"] = float(np.mean(ious))
        results["classifier"][set_name] = scores
    print(f"mean IoU at {args.resolution} px | tuning half | held-out half")
    print(
        f"annotator | {results['annotator_tuning_half_mean_iou']:.3f} | "
        f"{results['annotator_held_out_half_mean_iou']:.3f}"
    )
    for set_name, scores in results["classifier"].items():
        print(
            f"classifier, {set_name} | {scores['tuning_half_mean_iou']:.3f} | "
            f"{scores['held_out_half_mean_iou']:.3f}"
        )
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
