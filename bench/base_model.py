"""The base model's learning curve on held-out generated fields, next to the classical annotator.

A pretraining run (``configs/base/myotube_base.yaml``) keeps a checkpoint every
SOLVER.CHECKPOINT_PERIOD iterations. This benchmark scores each of them on a fixed held-out set of
generated fields with exact labels, the same fields for every run and every backbone, and the
annotator on the same fields:

- held-out set: 45 fields of 256 px drawn with the ``realistic`` preset at pixel scale 0.5 (the
  base's training scale), sparse / medium / dense in turn, seeds apart from the training stream;
- columns: COCO mask AP, AP50, F1@0.5 at the model's score threshold, semantic IoU, and the
  error breakdown's "merged" true tubes;
- CPU time: the sum of the run's logged step times up to the checkpoint (metrics.json), so a
  resumed run counts only the time it trained.

F1@0.5 and the merge count are scored on what predict.py keeps: the candidates above the score
threshold, after its post-processing (duplicate and contained removal, minimum area). AP ranks all
candidates.

``--calibrate`` chooses the two settings a model is published with, the score threshold and the
duplicate IoU (``INFERENCE.DUPLICATE_IOU``, 0 = off): F1@0.5 on a grid of both on 30 *validation*
fields (other seeds than the held-out set, which never takes part in a choice).

    python -m bench.base_model --runs output_base/swin_tiny [output_base/resnet ...] [--every 1000]
    python -m bench.base_model --calibrate output_base/swin_tiny/model_final.pth   # score threshold
    python -m bench.base_model --score output_base/resnet_tiny/model_final.pth 0.7 0.5   # at chosen settings
    python -m bench.base_model --named myotube-base [--tta]   # the shipped model, as predict.py runs it
    python -m bench.base_model --table              # markdown from bench/results/base_model/*.json
    python -m bench.base_model --plot docs/images/base_learning_curve.png
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys

from bench.common import REPO_ROOT, write_results
from mask2former.utils.run_files import FINAL

RESULTS = os.path.join(REPO_ROOT, "bench", "results", "base_model")
HELDOUT = dict(num_images=45, size=256, pixel_scale=0.5, seed=1000, density=("sparse", "medium", "dense"))
VALIDATION = dict(HELDOUT, num_images=30, seed=2000)
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DUPLICATE_IOUS = (0.0, 0.5, 0.3)
CHECKPOINT = re.compile(r"model_(\d{7})\.pth$")


def heldout_dataset(folder: str, plan: dict = HELDOUT) -> tuple[str, str]:
    """(annotations.json, images folder) of the held-out (or validation) fields, written once into
    ``folder``."""
    from mask2former.data.synthetic import REALISTIC
    from mask2former.synthetic_datasets import write_synthetic_dataset

    gt = os.path.join(folder, "annotations.json")
    if not os.path.isfile(gt):
        write_synthetic_dataset(folder, params=REALISTIC, progress=False, **plan)
    return gt, os.path.join(folder, "images")


def score_annotator(records: list[dict]) -> dict:
    from mask2former.demo import score_annotator as annotator_summary

    return _keep(annotator_summary(records, HELDOUT["pixel_scale"]))


def _keep(result: dict) -> dict:
    keys = ("AP", "AP50", "AP75", "f1@0.5", "precision@0.5", "recall@0.5", "semantic_iou", "PQ", "images")
    out = {k: result[k] for k in keys if k in result}
    out["gt_merged"] = result.get("errors", {}).get("gt_merged")
    out["gt_total"] = result.get("tp", 0) + result.get("fn", 0)
    return out


def cpu_seconds(run: str, iteration: int) -> float:
    """Logged step time of ``run`` up to ``iteration`` (each metrics.json row averages LOG_PERIOD steps)."""
    rows = []
    with open(os.path.join(run, "metrics.json"), encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if "time" in row and "total_loss" in row:
                rows.append((row["iteration"], row["time"]))
    total, previous = 0.0, -1
    for it, seconds in sorted(rows):
        if it >= iteration:
            break
        total += seconds * (it - previous)
        previous = it
    return total


def continued_from(run: str) -> tuple[str, int, float] | None:
    """(earlier run, its iterations, its CPU seconds) when ``run`` started from the final model of
    another pretraining run (its MODEL.WEIGHTS), so that its curve continues that one's; the
    earlier run's own predecessors are counted in."""
    import yaml

    with open(os.path.join(run, "config.yaml"), encoding="utf-8") as f:
        weights = (yaml.safe_load(f).get("MODEL") or {}).get("WEIGHTS") or ""
    earlier = os.path.dirname(weights)
    if os.path.basename(weights) != FINAL or not os.path.isfile(os.path.join(earlier, "metrics.json")):
        return None
    iterations = checkpoint_iteration(weights)
    seconds = cpu_seconds(earlier, iterations)
    before = continued_from(earlier)  # a chain of phases counts every phase before it
    if before:
        iterations, seconds = iterations + before[1], seconds + before[2]
    return os.path.basename(os.path.normpath(earlier)), iterations, seconds


def checkpoint_iteration(path: str) -> int:
    """The iteration a project checkpoint (or a named model) was saved at, read memory-mapped."""
    from mask2former.modeling.weights import read_checkpoint

    return int(read_checkpoint(path).get("iteration", 0))


def checkpoints(run: str, every: int) -> list[tuple[int, str]]:
    found = []
    for path in glob.glob(os.path.join(run, "model_*.pth")):
        m = CHECKPOINT.search(path)
        if m and int(m.group(1)) % every == 0:
            found.append((int(m.group(1)), path))
    final = os.path.join(run, FINAL)
    if os.path.isfile(final):
        found.append((checkpoint_iteration(final), final))
    return sorted(set(found))


def _predictor(
    path: str, threshold: float | None = None, duplicate_iou: float | None = None, tta: bool = False
):
    from mask2former.inference.predictor import MyotubePredictor
    from mask2former.modeling.weights import checkpoint_config

    cfg = checkpoint_config(path)
    cfg.MODEL.DEVICE = "cpu"
    if threshold is not None:
        cfg.MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD = threshold
    if duplicate_iou is not None:
        cfg.INFERENCE.DUPLICATE_IOU = duplicate_iou
    cfg.TEST.AUG.ENABLED = tta
    cfg.freeze()
    # The fields are drawn at the training scale: predict them at their own pixels.
    return cfg, MyotubePredictor(cfg, weights=path, device="cpu", input_scale=1.0)


def score_checkpoint(
    path: str,
    records: list[dict],
    threshold: float | None = None,
    duplicate_iou: float | None = None,
    tta: bool = False,
) -> dict:
    """Held-out metrics of one checkpoint, at its own settings or at the ones given; ``tta``: with
    test-time augmentation (TEST.AUG)."""
    from mask2former.evaluation.evaluator import evaluate_predictor

    cfg, predictor = _predictor(path, threshold, duplicate_iou, tta)
    return _keep(evaluate_predictor(predictor, records, cfg, desc=os.path.basename(path)))


def score_at_threshold(path: str, threshold: float, duplicate_iou: float, work: str) -> dict:
    """A checkpoint on the held-out fields at the settings its validation fields chose."""
    from mask2former.data.coco_records import load_coco_instances

    gt, images = heldout_dataset(os.path.join(work, "heldout"))
    row = score_checkpoint(path, load_coco_instances(gt, images), threshold, duplicate_iou)
    run = os.path.basename(os.path.dirname(os.path.abspath(path)))
    stem = os.path.splitext(os.path.basename(path))[0].replace("model_", "")
    out = os.path.join(RESULTS, f"{run}_{stem}_threshold{str(threshold).replace('.', '')}.json")
    write_results(
        out,
        {
            "checkpoint": os.path.relpath(path, REPO_ROOT),
            "score_threshold": threshold,
            "duplicate_iou": duplicate_iou,
            "heldout": HELDOUT,
            "row": row,
        },
    )
    print(
        f"{path} at score threshold {threshold}, duplicate IoU {duplicate_iou}: "
        f"AP {row['AP']:.1f} F1 {row['f1@0.5']:.3f}"
    )
    return row


def calibrate(path: str, work: str) -> dict:
    """F1@0.5 on the validation fields for each score threshold and duplicate IoU; the best pair."""
    from dataclasses import replace

    from mask2former.data.coco_records import load_coco_instances, record_masks
    from mask2former.data.io import read_image
    from mask2former.evaluation.metrics import InstanceEvaluator
    from mask2former.inference.filters import PostprocessParams

    gt, images = heldout_dataset(os.path.join(work, "validation"), VALIDATION)
    cfg, predictor = _predictor(path)
    fields = []
    for record in load_coco_instances(gt, images):
        image = read_image(record["file_name"])
        fields.append((record_masks(record), predictor.predict_all(image), image))
    configured = PostprocessParams.from_cfg(cfg)
    f1: dict[str, dict[str, float]] = {}
    for duplicate_iou in DUPLICATE_IOUS:
        f1[str(duplicate_iou)] = {}
        for threshold in THRESHOLDS:
            params = replace(configured, score_threshold=threshold, duplicate_iou=duplicate_iou)
            evaluator = InstanceEvaluator(score_threshold=threshold)
            for truth, candidates, image in fields:
                evaluator.add(truth, candidates, kept=predictor.kept(candidates, params, image))
            f1[str(duplicate_iou)][str(threshold)] = round(evaluator.summarize()["f1@0.5"], 4)
    best_iou, best_threshold = max(
        ((d, t) for d in DUPLICATE_IOUS for t in THRESHOLDS), key=lambda p: f1[str(p[0])][str(p[1])]
    )
    result = {
        "checkpoint": os.path.relpath(path, REPO_ROOT),
        "validation": VALIDATION,
        "f1_by_duplicate_iou_and_threshold": f1,
        "best_threshold": best_threshold,
        "best_duplicate_iou": best_iou,
    }
    run = os.path.basename(os.path.dirname(os.path.abspath(path)))
    write_results(os.path.join(RESULTS, f"calibration_{run}.json"), {"calibration": result})
    print(
        f"F1@0.5 on {len(fields)} validation fields by duplicate IoU and score threshold: {f1}; "
        f"best threshold {best_threshold}, duplicate IoU {best_iou}"
    )
    return result


def evaluate_runs(runs: list[str], every: int, work: str) -> None:
    from mask2former.data.coco_records import load_coco_instances

    gt, images = heldout_dataset(os.path.join(work, "heldout"))
    records = load_coco_instances(gt, images)
    annotator_path = os.path.join(RESULTS, "annotator.json")
    if not os.path.isfile(annotator_path):
        write_results(
            annotator_path, {"heldout": HELDOUT, "preset": "realistic", "annotator": score_annotator(records)}
        )
    for run in runs:
        name = os.path.basename(os.path.normpath(run))
        out_path = os.path.join(RESULTS, f"{name}.json")
        done = {}
        if os.path.isfile(out_path):
            with open(out_path, encoding="utf-8") as f:
                done = {row["iteration"]: row for row in json.load(f)["curve"]}
        with open(os.path.join(run, "config.yaml"), encoding="utf-8") as f:
            config_text = f.read()
        # A run that continues another counts its iterations and CPU time on top of that one's.
        earlier = continued_from(run)
        _, offset_iterations, offset_seconds = earlier or ("", 0, 0.0)
        for iteration, path in checkpoints(run, every):
            if iteration == 0 or offset_iterations + iteration in done:
                continue
            total_seconds = offset_seconds + cpu_seconds(run, iteration)
            row = {
                "iteration": offset_iterations + iteration,
                "cpu_hours": round(total_seconds / 3600, 3),
                **score_checkpoint(path, records),
            }
            done[row["iteration"]] = row
            print(
                f"{name} {row['iteration']}: AP {row['AP']:.1f} F1 {row['f1@0.5']:.3f} "
                f"merged {row['gt_merged']}",
                flush=True,
            )
            write_results(
                out_path,
                {
                    "run": name,
                    "heldout": HELDOUT,
                    "preset": "realistic",
                    "config": config_text,
                    "continues": earlier[0] if earlier else None,
                    "curve": [done[k] for k in sorted(done)],
                },
            )


def score_named(name: str, work: str, tta: bool = False) -> dict:
    """The model shipped as ``name``, as it is published (its own score threshold), on the held-out
    fields; ``tta``: as ``predict.py --tta`` runs it."""
    from mask2former.data.coco_records import load_coco_instances
    from mask2former.modeling.zoo import zoo_models

    gt, images = heldout_dataset(os.path.join(work, "heldout"))
    row = score_checkpoint(name, load_coco_instances(gt, images), tta=tta)
    row.update(iteration=checkpoint_iteration(name), sha256=zoo_models()[name].sha256)
    write_results(
        os.path.join(RESULTS, f"named_{name}{'_tta' if tta else ''}.json"),
        {"named": name, "tta": tta, "heldout": HELDOUT, "row": row},
    )
    print(f"{name}: AP {row['AP']:.1f} F1 {row['f1@0.5']:.3f} merged {row['gt_merged']}")
    return row


def load_results() -> tuple[dict | None, dict[str, list[dict]]]:
    annotator, curves = None, {}
    for path in sorted(glob.glob(os.path.join(RESULTS, "*.json"))):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if "annotator" in data:
            annotator = data["annotator"]
        elif "calibration" in data or "named" in data or "score_threshold" in data:
            continue
        elif "curve" in data:
            curves[data["run"]] = data["curve"]
    return annotator, curves


def table() -> str:
    annotator, curves = load_results()
    lines = [
        "| model | iterations | CPU hours | AP | AP50 | F1@0.5 | sem. IoU | tubes merged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if annotator:
        lines.append(
            f"| classical annotator | - | - | {annotator['AP']:.1f} | {annotator['AP50']:.1f} | "
            f"{annotator['f1@0.5']:.3f} | "
            f"{annotator['semantic_iou']:.3f} | {annotator['gt_merged']} of {annotator['gt_total']} |"
        )
    for name, rows in curves.items():
        for r in rows:
            lines.append(
                f"| `{name}` | {r['iteration']} | {r['cpu_hours']:.2f} | {r['AP']:.1f} | {r['AP50']:.1f} | "
                f"{r['f1@0.5']:.3f} | "
                f"{r['semantic_iou']:.3f} | {r['gt_merged']} of {r['gt_total']} |"
            )
    return "\n".join(lines)


def plot(path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    annotator, curves = load_results()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    for ax, key, label in ((axes[0], "AP", "held-out mask AP"), (axes[1], "f1@0.5", "held-out F1@0.5")):
        for name, rows in curves.items():
            ax.plot([r["cpu_hours"] for r in rows], [r[key] for r in rows], marker="o", label=name)
        if annotator:
            ax.axhline(annotator[key], color="k", linestyle="--", label="classical annotator")
        ax.set_xlabel("CPU hours of training (2 cores)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", nargs="*", default=[], help="pretraining output folders to score")
    parser.add_argument(
        "--every", type=int, default=1000, help="score checkpoints whose iteration is a multiple of this"
    )
    parser.add_argument(
        "--work", default=os.path.join(REPO_ROOT, "output_base"), help="folder for the held-out fields"
    )
    parser.add_argument(
        "--calibrate",
        metavar="CHECKPOINT",
        help="choose the score threshold and duplicate IoU on the validation fields",
    )
    parser.add_argument(
        "--named", metavar="NAME", help="score a model shipped with the package, as published"
    )
    parser.add_argument("--tta", action="store_true", help="--named: with test-time augmentation (TEST.AUG)")
    parser.add_argument(
        "--score",
        nargs=3,
        metavar=("CHECKPOINT", "THRESHOLD", "DUPLICATE_IOU"),
        help="score a checkpoint at a chosen score threshold and duplicate IoU",
    )
    parser.add_argument("--table", action="store_true", help="print the markdown table of all results")
    parser.add_argument("--plot", metavar="PNG", help="draw the learning curves")
    args = parser.parse_args(argv)
    if args.runs:
        evaluate_runs(args.runs, args.every, args.work)
    if args.calibrate:
        calibrate(args.calibrate, args.work)
    if args.named:
        score_named(args.named, args.work, args.tta)
    if args.score:
        score_at_threshold(args.score[0], float(args.score[1]), float(args.score[2]), args.work)
    if args.table:
        print(table())
    if args.plot:
        plot(args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
