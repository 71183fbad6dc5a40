"""Joining pieces of one tube (``INFERENCE.JOIN_PIECES``) on generated fields with exact labels.

A model cuts long tubes into pieces; :mod:`mask2former.inference.joining` joins pieces that
continue each other end to end. On real fields only the pieces can be counted; here every piece
has a known tube, so each join is either a fixed split (all its pieces on one true tube) or a
wrong join (pieces of two tubes). Fields of ``--size`` px (larger than the 256 px model input,
so they are tiled as predict.py tiles them), drawn at the base model's training scale with the
realistic preset, seeds apart from the base's training stream and its held-out set.

    python -m bench.joining                          # the shipped base model
    python -m bench.joining --weights output_stage2_manual/model_final.pth
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

import numpy as np

from bench.common import REPO_ROOT, write_results

FIELDS = dict(num_images=20, size=640, pixel_scale=0.5, seed=3000, density=("sparse", "medium", "dense"))


def piece_owner(piece, truth: np.ndarray) -> int:
    """The true tube holding most of a piece's pixels (-1: mostly background)."""
    window = piece.window
    inside = (
        np.array(
            [
                piece.mask[truth[k, window[0] : window[2], window[1] : window[3]]].sum()
                for k in range(len(truth))
            ]
        )
        if len(truth)
        else []
    )
    if not len(inside) or inside.max() < 0.5 * piece.area:
        return -1
    return int(np.argmax(inside))


def score(weights: str, work: str, max_gap: float | None = None, max_angle: float | None = None) -> dict:
    from mask2former.data.coco_records import load_coco_instances, record_masks
    from mask2former.data.io import read_image
    from mask2former.data.synthetic import REALISTIC
    from mask2former.evaluation.metrics import InstanceEvaluator
    from mask2former.inference.filters import postprocess
    from mask2former.inference.image_pipeline import predict_image
    from mask2former.inference.joining import join_groups
    from mask2former.inference.options import PredictOptions
    from mask2former.inference.predictor import MyotubePredictor
    from mask2former.modeling.weights import checkpoint_config
    from mask2former.synthetic_datasets import write_synthetic_dataset

    folder = os.path.join(work, "joining_fields")
    gt = os.path.join(folder, "annotations.json")
    if not os.path.isfile(gt):
        write_synthetic_dataset(folder, params=REALISTIC, progress=False, **FIELDS)
    cfg = checkpoint_config(weights)
    cfg.MODEL.DEVICE = "cpu"
    predictor = MyotubePredictor(cfg, weights=weights, device="cpu", input_scale=1.0)
    options = PredictOptions.from_cfg(cfg, progress=False)
    without = replace(options, post=replace(options.post, join_pieces=False))
    with_join = replace(options.post, join_pieces=True)
    if max_gap is not None:
        with_join = replace(with_join, join_max_gap=max_gap)
    if max_angle is not None:
        with_join = replace(with_join, join_max_angle=max_angle)
    evaluators = {
        "without": InstanceEvaluator(score_threshold=0.0),
        "with": InstanceEvaluator(score_threshold=0.0),
    }
    joins = {"fixed_splits": 0, "wrong_joins": 0, "pieces_joined": 0}
    for record in load_coco_instances(gt, os.path.join(folder, "images")):
        truth = record_masks(record)
        image = read_image(record["file_name"])
        kept = predict_image(image, predictor, without)
        evaluators["without"].add(truth, kept.to_instances())
        joined = postprocess(kept, with_join, image)
        evaluators["with"].add(truth, joined.to_instances())
        for group in join_groups(kept, with_join.join_max_gap, with_join.join_max_angle):
            if len(group) < 2:
                continue
            owners = {piece_owner(kept[k], truth) for k in group}
            joins["pieces_joined"] += len(group)
            joins["fixed_splits" if len(owners) == 1 and -1 not in owners else "wrong_joins"] += 1
    rows = {}
    for name, evaluator in evaluators.items():
        s = evaluator.summarize()
        rows[name] = {
            "f1@0.5": s["f1@0.5"],
            "tp": s["tp"],
            "fp": s["fp"],
            "fn": s["fn"],
            "gt_split": s["errors"]["gt_split"],
            "gt_merged": s["errors"]["gt_merged"],
            "pred_fragment": s["errors"]["pred_fragment"],
        }
    return {
        "weights": weights,
        "fields": FIELDS,
        "tile_size": options.tile_size,
        "without_joining": rows["without"],
        "with_joining": rows["with"],
        "joins": joins,
        "settings": {"max_gap": with_join.join_max_gap, "max_angle": with_join.join_max_angle},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", default="myotube-base", help="model_final.pth or a shipped model's name")
    parser.add_argument(
        "--work", default=os.path.join(REPO_ROOT, "output_bench"), help="folder for the generated fields"
    )
    parser.add_argument(
        "--max-gap", type=float, default=None, help="INFERENCE.JOIN_MAX_GAP (default: the model's config)"
    )
    parser.add_argument(
        "--max-angle", type=float, default=None, help="INFERENCE.JOIN_MAX_ANGLE (default: the model's config)"
    )
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "bench", "results", "joining.json"))
    args = parser.parse_args(argv)
    result = score(args.weights, args.work, args.max_gap, args.max_angle)
    write_results(args.out, result)
    for name in ("without_joining", "with_joining"):
        print(name, result[name])
    print("joins", result["joins"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
