"""Test-time augmentation (``TEST.AUG``, ``predict.py --tta``): what fusing the four flips gives,
and the settings it ships with.

Scores models on validation fields that no table of the demo uses (60 fields drawn like the demo's
held-out fields, with another seed), next to the classical annotator on the same fields:

- without augmentation, at each score threshold;
- with the four flips fused, for each ``TEST.AUG.FUSE_IOU`` and score threshold;
- the model's seconds per field (the candidates of one field, without post-processing), with and
  without the flips, measured in the same run.

The shipped ``TEST.AUG.FUSE_IOU`` and ``TEST.AUG.OBJECT_MASK_THRESHOLD`` are the pair with the best
mean F1@0.5 over the models given. Models: the shipped base (``myotube-base``) and demo runs
(folders with ``output_stage1_algorithmic`` and ``output_stage2_manual``).

    python -m bench.tta myotube-base RUN_FOLDER [RUN_FOLDER ...] [--out bench/results/tta_validation.json]
    python -m bench.tta RUN_FOLDER ... --fuse-ious 0.5 --out bench/results/demo_recipes_tta.json
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

from bench.common import REPO_ROOT, write_results
from mask2former.utils.run_files import FINAL

VALIDATION_SEED = 5
VALIDATION_FIELDS = 60
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
FUSE_IOUS = (0.3, 0.5)
STAGE_FOLDERS = {"Stage 1": "output_stage1_algorithmic", "Stage 2": "output_stage2_manual"}


def validation_fields(folder: str) -> list[dict]:
    """The demo's held-out fields' plan with another seed, written once into ``folder``."""
    from mask2former.data.coco_records import load_coco_instances
    from mask2former.data.synthetic import generator_params
    from mask2former.demo import DemoPlan
    from mask2former.synthetic_datasets import write_synthetic_dataset

    plan = DemoPlan()
    gt = os.path.join(folder, "annotations.json")
    if not os.path.isfile(gt):
        write_synthetic_dataset(
            folder,
            VALIDATION_FIELDS,
            seed=VALIDATION_SEED,
            size=plan.size,
            pixel_scale=plan.pixel_scale,
            density=plan.density,
            progress=False,
            params=generator_params(plan.generator),
        )
    return load_coco_instances(gt, os.path.join(folder, "images"))


def models_of(sources: list[str]) -> dict[str, str]:
    """Row name → weights: named models and files as they are, demo runs as their two stages."""
    models = {}
    for source in sources:
        if not os.path.isdir(source):
            models[source] = source
            continue
        for stage, folder in STAGE_FOLDERS.items():
            models[f"{os.path.relpath(source, REPO_ROOT)} {stage}"] = os.path.join(source, folder, FINAL)
    return models


def score_annotator(records: list[dict]) -> dict:
    from mask2former.demo import DemoPlan
    from mask2former.demo import score_annotator as annotator_summary

    s = annotator_summary(records, DemoPlan().pixel_scale)
    return {"AP": round(s["AP"], 2), "f1@0.5": round(s["f1@0.5"], 4), "tp": s["tp"], "fp": s["fp"]}


def score_model(weights: str, records: list[dict], fuse_iou: float | None) -> dict:
    """AP, and F1@0.5 (tp, fp) at each threshold; ``fuse_iou`` None: without augmentation."""
    from mask2former.data.coco_records import record_masks
    from mask2former.data.io import read_image
    from mask2former.evaluation.metrics import InstanceEvaluator
    from mask2former.inference.filters import PostprocessParams
    from mask2former.inference.predictor import MyotubePredictor
    from mask2former.modeling.weights import checkpoint_config

    cfg = checkpoint_config(weights)
    cfg.MODEL.DEVICE = "cpu"
    cfg.TEST.AUG.ENABLED = fuse_iou is not None
    cfg.TEST.AUG.FUSE_IOU = fuse_iou or cfg.TEST.AUG.FUSE_IOU
    cfg.freeze()
    predictor = MyotubePredictor(cfg, weights=weights, device="cpu")
    images = [read_image(r["file_name"]) for r in records]
    start = time.perf_counter()
    candidates = [predictor.predict_all(image) for image in images]
    seconds = (time.perf_counter() - start) / len(images)
    fields = [(record_masks(r), c, image) for r, c, image in zip(records, candidates, images)]
    configured = PostprocessParams.from_cfg(cfg)
    row: dict = {"f1": {}, "predict_seconds_per_field": round(seconds, 4)}
    for threshold in THRESHOLDS:
        evaluator = InstanceEvaluator(score_threshold=threshold)
        for truth, candidates, image in fields:
            kept = predictor.kept(candidates, replace(configured, score_threshold=threshold), image)
            evaluator.add(truth, candidates, kept=kept)
        s = evaluator.summarize()
        row["AP"] = round(s["AP"], 2)
        row["f1"][str(threshold)] = [round(s["f1@0.5"], 4), s["tp"], s["fp"]]
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="+", help="myotube-base, a model_final.pth, or a demo output folder")
    parser.add_argument("--work", default=os.path.join(REPO_ROOT, "output_bench", "tta"))
    parser.add_argument("--fuse-ious", nargs="+", type=float, default=list(FUSE_IOUS), metavar="IOU")
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "bench", "results", "tta_validation.json"))
    args = parser.parse_args(argv)
    records = validation_fields(os.path.join(args.work, "validation"))
    results = {"Classical annotator": score_annotator(records)}
    for name, weights in models_of(args.models).items():
        results[name] = {"plain": score_model(weights, records, None)}
        for fuse_iou in args.fuse_ious:
            results[name][f"flips, fuse IoU {fuse_iou}"] = score_model(weights, records, fuse_iou)
        print(name, results[name], flush=True)
    models = [r for n, r in results.items() if n != "Classical annotator"]
    mean_f1 = {
        (fuse_iou, t): sum(r[f"flips, fuse IoU {fuse_iou}"]["f1"][str(t)][0] for r in models) / len(models)
        for fuse_iou in args.fuse_ious
        for t in THRESHOLDS
    }
    best_iou, best_threshold = max(mean_f1, key=mean_f1.get)
    write_results(
        args.out,
        {
            "fields": {"count": VALIDATION_FIELDS, "seed": VALIDATION_SEED, "plan": "the demo's held-out"},
            "results": results,
            "mean_f1_with_flips": {f"{i}/{t}": round(v, 4) for (i, t), v in mean_f1.items()},
            "best_fuse_iou": best_iou,
            "best_threshold": best_threshold,
        },
    )
    print(f"best with flips: fuse IoU {best_iou}, score threshold {best_threshold}; wrote {args.out}")


if __name__ == "__main__":
    main()
