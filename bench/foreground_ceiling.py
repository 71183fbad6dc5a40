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
  not have, or within 3 px of the other mask's outline.

    python -m bench.foreground_ceiling                # bench/results/foreground_ceiling.json
"""

from __future__ import annotations

import argparse
import os

import cv2
import numpy as np
from tqdm import tqdm

from bench.common import REPO_ROOT, write_results
from bench.real_two_stage import DEFAULT_DATA, REFERENCE_SIZE, RealPlan, list_fields, load_field, split_fields

RELATIVE_THRESHOLDS = (0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.10, 0.12, 0.14)
BAND = 3  # px: a wrong pixel this close to the other mask's outline is an outline error


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
    write_results(args.out, result, with_torch=False)


if __name__ == "__main__":
    main()
