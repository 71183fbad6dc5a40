"""Where a Stage 1 model differs from its teacher, the classical annotator, on real fields.

Stage 1 learns from the annotator's labels, yet on the very fields it trains on its foreground is
further from the human masks than the annotator's (``bench/real_two_stage.py``, tuning half). This
benchmark splits that gap into its parts, field by field, at the working resolution of
``bench/real_two_stage.py`` (the same fields, split and prediction path):

- agreement: mean IoU of the model's foreground with the annotator's, and of each with the human mask;
- the annotator's pixels the model lacks: in annotator instances it misses (less than half of the
  instance covered), in a band of ``BAND`` px either side of the annotator's outline, or elsewhere
  inside its instances; and how many of them the human mask holds;
- the model's pixels the annotator lacks: in model instances outside the annotator's foreground
  (less than half inside), in the band, or elsewhere; and how many of them the human mask holds.

    python -m bench.student_teacher output_bench/real_s1_8k_base/stage1 [--part pool|heldout]
"""

from __future__ import annotations

import argparse
import os

import cv2
import numpy as np

from bench.common import exit_on_sigterm, write_results
from bench.real_two_stage import (
    DEFAULT_DATA,
    REFERENCE_SIZE,
    RealPlan,
    field_predictor,
    list_fields,
    load_field,
    split_fields,
)
from mask2former.evaluation.metrics import semantic_iou_dice_binary

BAND = 3  # px either side of the annotator's outline, at the working resolution (750 px fields)
COVERED = 0.5  # an instance is found (or inside the other's foreground) above this share of it


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return semantic_iou_dice_binary(a, b)["iou"]


def _outside(instances: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, int]:
    """The instances of which less than COVERED lies in ``other``: their pixels outside ``other``,
    and how many they are."""
    out, count = np.zeros(other.shape, bool), 0
    for mask in instances:
        if (mask & other).sum() < COVERED * mask.sum():
            out |= mask & ~other
            count += 1
    return out, count


def _n(mask: np.ndarray) -> int:
    return int(mask.sum())


def field_parts(human: np.ndarray, teacher: np.ndarray, student: np.ndarray) -> dict:
    """Pixel counts of the disagreement between two instance stacks on one field (see the module)."""
    shape = human.shape
    t_fg = teacher.any(0) if len(teacher) else np.zeros(shape, bool)
    s_fg = student.any(0) if len(student) else np.zeros(shape, bool)
    kernel = np.ones((2 * BAND + 1, 2 * BAND + 1), np.uint8)
    t8 = t_fg.astype(np.uint8)
    band = cv2.dilate(t8, kernel).astype(bool) & ~cv2.erode(t8, kernel).astype(bool)
    (missed, n_missed), (extra, _) = _outside(teacher, s_fg), _outside(student, t_fg)
    lacks, adds = t_fg & ~s_fg, s_fg & ~t_fg
    return {
        "iou_model_annotator": _iou(s_fg, t_fg),
        "iou_model_human": _iou(s_fg, human),
        "iou_annotator_human": _iou(t_fg, human),
        "annotator_instances": int(len(teacher)),
        "annotator_instances_missed": n_missed,
        "pixels": {
            "human": _n(human),
            "annotator": _n(t_fg),
            "model": _n(s_fg),
            "model_lacks": _n(lacks),
            "model_lacks_missed_instances": _n(missed),
            "model_lacks_band": _n(lacks & band & ~missed),
            "model_lacks_human": _n(lacks & human),
            "model_adds": _n(adds),
            "model_adds_extra_instances": _n(extra),
            "model_adds_band": _n(adds & band & ~extra),
            "model_adds_human": _n(adds & human),
        },
    }


def summarize(rows: list[dict]) -> tuple[dict, dict]:
    """Mean IoUs and instance counts over the fields, and the pixel counts summed, with each part of
    the disagreement as a share of its whole (what the model lacks, what it adds)."""
    totals = {k: sum(r["pixels"][k] for r in rows) for k in rows[0]["pixels"]} if rows else {}
    summary: dict = {
        k: round(float(np.mean([r[k] for r in rows])), 4)
        for k in ("iou_model_annotator", "iou_model_human", "iou_annotator_human")
    }
    summary["annotator_instances"] = sum(r["annotator_instances"] for r in rows)
    summary["annotator_instances_missed"] = sum(r["annotator_instances_missed"] for r in rows)
    for whole in ("model_lacks", "model_adds"):
        for key in [k for k in totals if k.startswith(whole + "_")]:
            summary["share_" + key.removeprefix("model_")] = (
                round(totals[key] / totals[whole], 3) if totals[whole] else 0.0
            )
    return summary, totals


def run(args: argparse.Namespace) -> None:
    from mask2former.annotate import AnnotatorParams, annotate_instances
    from mask2former.inference.image_pipeline import predict_image

    plan = RealPlan(pixel_scale=args.pixel_scale)
    paths = split_fields(list_fields(args.data), plan)[args.part][: args.fields or None]
    side = round(REFERENCE_SIZE * plan.pixel_scale)
    predictor, options = field_predictor(args.model, "cpu")
    rows = []
    for path in paths:
        image, human = load_field(path, side)
        teacher = annotate_instances(image, AnnotatorParams(scale=plan.pixel_scale)).masks
        student = predict_image(image, predictor, options).to_instances().masks
        rows.append(
            {
                "field": os.path.basename(path).replace("_myosin.png", ""),
                **field_parts(human, teacher, student),
            }
        )
        print(
            f"  {rows[-1]['field']}: IoU with the annotator {rows[-1]['iou_model_annotator']:.3f}", flush=True
        )
    summary, totals = summarize(rows)
    write_results(
        args.out,
        {
            "model": args.model,
            "part": args.part,
            "pixel_scale": args.pixel_scale,
            "first_fields": args.fields,
            "fields": len(rows),
            "band_px": BAND,
            "summary": summary,
            "pixels": totals,
            "per_field": rows,
        },
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("model", help="a Stage 1 output folder (model_final.pth) or a checkpoint")
    parser.add_argument("--part", choices=("pool", "heldout"), default="pool")
    parser.add_argument(
        "--pixel-scale",
        type=float,
        default=RealPlan().pixel_scale,
        help="the working scale the model trained at",
    )
    parser.add_argument("--fields", type=int, default=0, help="the first N fields of the part (0: all)")
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder of *_myosin.png + *_myotube_mask.png")
    parser.add_argument("--out", default="bench/results/real_student_teacher.json")
    exit_on_sigterm()
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
