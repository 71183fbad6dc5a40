"""`make demo`: the whole two-stage story on generated data, in minutes on a laptop CPU.

1. generate synthetic fields: a pool for Stage 1 (its ground truth is thrown away), a few fields
   whose ground truth plays the manual annotations, and a held-out test set;
2. label the Stage 1 pool with the classical annotator and organize the unified dataset;
3. check it with setup_two_stage.py and train both stages with the tiny CPU preset, plus a
   Stage-2-only model (manual data without Stage 1) for comparison;
4. evaluate the annotator and the three models on the held-out set, print one table;
5. predict two held-out images with predict.py; pictures and the table go to the output folder.

Each step runs the same command a user would run, printed before it runs. Every number in the
table comes from this run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO_ROOT, "configs", "cpu_tiny")


@dataclass
class DemoPlan:
    """Sizes of the demo; ``quick`` shrinks everything for the test suite."""

    size: int = 256
    pixel_scale: float = 0.5
    stage1_images: int = 60
    manual_images: int = 6
    heldout_images: int = 30
    stage1_iters: int = 3500
    stage2_iters: int = 300
    stage1_lr: float = 1e-3
    stage2_lr: float = 1e-4
    image_size: int = 256
    queries: int = 20
    predict_images: int = 2
    density: str = "medium"
    device: str = "cpu"

    @classmethod
    def quick(cls) -> DemoPlan:
        return cls(size=96, stage1_images=6, manual_images=2, heldout_images=2, stage1_iters=6, stage2_iters=4,
                   image_size=96, queries=8, predict_images=1)


def _run(cmd: list[str], log, cwd: str | None = None) -> None:
    shown = " ".join(os.path.relpath(c, cwd or os.getcwd()) if os.path.isabs(c) and c.startswith(REPO_ROOT) else c for c in cmd)
    print(f"\n$ {shown}", flush=True)
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Stream the step's own output as it comes (progress bars redraw in place) and log it.
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    for chunk in iter(lambda: proc.stdout.read1(65536), b""):
        text = chunk.decode("utf-8", errors="replace")
        log.write(text)
        sys.stdout.write(text)
        sys.stdout.flush()
    log.flush()
    if proc.wait() != 0:
        raise SystemExit(f"demo step failed (exit {proc.returncode}): {shown}\nfull output: {log.name}")


def _training_opts(plan: DemoPlan, out: str, iters: int, lr: float, batch: int) -> list[str]:
    return [
        "MODEL.DEVICE", plan.device,
        "INPUT.IMAGE_SIZE", str(plan.image_size), "MODEL.SWIN.PRETRAIN_IMG_SIZE", str(plan.image_size),
        "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", str(plan.queries),
        "SOLVER.MAX_ITER", str(iters), "SOLVER.BASE_LR", str(lr), "SOLVER.IMS_PER_BATCH", str(batch),
        "SOLVER.WARMUP_ITERS", str(max(1, iters // 20)), "SOLVER.CHECKPOINT_PERIOD", str(max(1, iters // 2)),
        "SOLVER.LOG_PERIOD", str(max(1, iters // 20)), "SEED", "0", "OUTPUT_DIR", out,
    ]


def run_demo(output: str, plan: DemoPlan, workers: int = 2) -> dict:
    from mask2former.data.synthetic import write_synthetic_dataset

    t_start = time.perf_counter()
    output = os.path.abspath(output)
    if os.path.exists(output):
        shutil.rmtree(output)
    os.makedirs(output)
    log = open(os.path.join(output, "demo_log.txt"), "w", encoding="utf-8")
    py = sys.executable
    timings: dict[str, float] = {}

    def step(name: str):
        timings[name] = time.perf_counter()
        print(f"\n=== {name}", flush=True)

    step("1. generate synthetic fields")
    raw = os.path.join(output, "raw")
    common = {"size": plan.size, "pixel_scale": plan.pixel_scale, "density": plan.density, "progress": False}
    write_synthetic_dataset(os.path.join(raw, "stage1_pool"), plan.stage1_images, seed=1, **common)
    manual_json = write_synthetic_dataset(os.path.join(raw, "manual"), plan.manual_images, seed=2, **common)
    heldout_json = write_synthetic_dataset(os.path.join(raw, "heldout"), plan.heldout_images, seed=3, **common)
    print(f"  {plan.stage1_images} Stage 1 fields, {plan.manual_images} 'manually annotated' fields, "
          f"{plan.heldout_images} held-out fields with ground truth ({plan.size} px)")

    step("2. annotate the Stage 1 pool and organize the unified dataset")
    annotated = os.path.join(output, "annotator_out")
    _run([py, os.path.join(REPO_ROOT, "utils", "batch_myotube_processing.py"), "--input_dir", os.path.join(raw, "stage1_pool", "images"),
          "--output_dir", annotated, "--resolution", str(plan.size), "--scale", str(plan.pixel_scale), "--test_fraction", "0.1", "--seed", "0",
          "--workers", str(workers)], log)
    dataset = os.path.join(output, "myotube_dataset")
    _run([py, os.path.join(REPO_ROOT, "organize_unified_dataset.py"), "--algorithmic_dataset", annotated,
          "--manual_dataset", manual_json, "--output_dataset", dataset], log)

    step("3. check the dataset, train Stage 1, Stage 2 and a Stage-2-only model")
    _run([py, os.path.join(REPO_ROOT, "setup_two_stage.py"), "--dataset", dataset, "--config-dir", TINY], log)
    s1 = os.path.join(output, "output_stage1_algorithmic")
    s2 = os.path.join(output, "output_stage2_manual")
    s2_only = os.path.join(output, "output_stage2_only")
    train = os.path.join(REPO_ROOT, "train_two_stage.py")
    _run([py, train, "--stage", "1", "--dataset", dataset, "--config-dir", TINY, "--opts",
          *_training_opts(plan, s1, plan.stage1_iters, plan.stage1_lr, 2)], log)
    _run([py, train, "--stage", "2", "--dataset", dataset, "--config-dir", TINY, "--opts",
          "MODEL.WEIGHTS", os.path.join(s1, "model_final.pth"), *_training_opts(plan, s2, plan.stage2_iters, plan.stage2_lr, 1)], log)
    _run([py, os.path.join(REPO_ROOT, "train_net.py"), "--config-file", os.path.join(TINY, "stage2_config.yaml"), "--dataset", dataset,
          "MODEL.WEIGHTS", "", *_training_opts(plan, s2_only, plan.stage2_iters, plan.stage2_lr, 1)], log)

    step("4. evaluate on the held-out fields")
    table = evaluate_on_heldout(heldout_json, os.path.join(raw, "heldout", "images"),
                                {"Stage 1 (annotator labels)": s1, "Stage 2 (Stage 1 + manual)": s2, "Stage 2 only (manual, no Stage 1)": s2_only},
                                plan.pixel_scale, plan.device)

    from mask2former.evaluation.evaluator import format_table
    from mask2former.utils.fileio import atomic_write_json, atomic_write_text

    markdown = format_table(table["results"], keys=("AP", "AP50", "f1@0.5", "semantic_iou"))
    atomic_write_text(os.path.join(output, "demo_results.md"), markdown + "\n")
    print(f"\n=== Held-out results ({plan.heldout_images} fields, score threshold {table['score_threshold']})\n{markdown}", flush=True)

    step("5. predict two held-out images")
    held_images = sorted(os.listdir(os.path.join(raw, "heldout", "images")))[: plan.predict_images]
    _run([py, os.path.join(REPO_ROOT, "predict.py"), "--config-file", os.path.join(TINY, "stage2_config.yaml"),
          "--weights", os.path.join(s2, "model_final.pth"), "--input", *[os.path.join(raw, "heldout", "images", f) for f in held_images],
          "--output", os.path.join(output, "predictions"), "--no-progress", "--opts", "MODEL.DEVICE", plan.device, "INPUT.IMAGE_SIZE", str(plan.image_size),
          "MODEL.SWIN.PRETRAIN_IMG_SIZE", str(plan.image_size), "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", str(plan.queries)], log)
    overview = draw_overview(table, heldout_json, os.path.join(raw, "heldout", "images"), output, plan.pixel_scale)

    wall = time.perf_counter() - t_start
    names = list(timings)
    step_times = {n: round((timings[names[i + 1]] if i + 1 < len(names) else time.perf_counter()) - timings[n], 1) for i, n in enumerate(names)}
    summary = {"wall_seconds": round(wall, 1), "step_seconds": step_times, "plan": plan.__dict__, **table}
    atomic_write_json(os.path.join(output, "demo_results.json"), summary, indent=2)
    log.close()
    print(f"\n=== Held-out results ({plan.heldout_images} fields, score threshold {table['score_threshold']})\n{markdown}")
    print(f"\nDemo finished in {wall / 60:.1f} min. Results in {output}/:")
    print("  demo_results.md / .json   the table above")
    print(f"  {os.path.basename(overview)}       held-out fields: ground truth, annotator, Stage 1, Stage 2")
    print("  output_stage*/loss_curve.png, log.txt, metrics.json, model_final.pth")
    print("  predictions/               overlays, label TIFFs, COCO JSON, ImageJ ROIs, measurements CSV")
    return summary


def evaluate_on_heldout(gt_json: str, image_dir: str, models: dict[str, str], pixel_scale: float, device: str = "cpu") -> dict:
    """Annotator and each model against the held-out ground truth (same images, same metrics).

    The fields are crops drawn at ``pixel_scale`` of a 1500 px field; the annotator is told so,
    as the demo's Stage 1 annotation run is (``--scale``).
    """
    from mask2former.annotate.instances import annotate_instances
    from mask2former.annotate.params import AnnotatorParams
    from mask2former.config import load_config
    from mask2former.data.coco import load_coco_instances, record_masks
    from mask2former.data.io import read_image
    from mask2former.evaluation.evaluator import evaluate_predictor
    from mask2former.evaluation.metrics import InstanceEvaluator
    from mask2former.inference.predictor import MyotubePredictor

    records = load_coco_instances(gt_json, image_dir)
    threshold = None
    results: dict[str, dict] = {}
    annotator = InstanceEvaluator(score_threshold=0.0)  # the annotator's instances are all "sure"
    for record in records:
        annotator.add(record_masks(record), annotate_instances(read_image(record["file_name"]), AnnotatorParams(scale=pixel_scale)))
    results["Classical annotator"] = annotator.summarize()
    for name, out_dir in models.items():
        cfg = load_config(os.path.join(out_dir, "config.yaml"))  # exactly what the model was trained with
        threshold = cfg.MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD
        predictor = MyotubePredictor(cfg, weights=os.path.join(out_dir, "model_final.pth"), device=device)
        results[name] = evaluate_predictor(predictor, records, cfg, desc=name)
        results[name].pop("per_image", None)
    return {"results": results, "score_threshold": threshold}


def draw_overview(table: dict, gt_json: str, image_dir: str, output: str, pixel_scale: float, n_images: int = 2) -> str:
    """Held-out fields side by side: image, ground truth, annotator, Stage 1, Stage 2."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mask2former.annotate.instances import annotate_instances
    from mask2former.annotate.params import AnnotatorParams
    from mask2former.config import load_config
    from mask2former.data.coco import load_coco_instances, record_masks
    from mask2former.data.io import read_image, to_uint8_display
    from mask2former.inference.predictor import MyotubePredictor

    records = load_coco_instances(gt_json, image_dir)[:n_images]
    columns = ["image", "ground truth", "annotator", "Stage 1", "Stage 2"]
    fig, axes = plt.subplots(len(records), len(columns), figsize=(3 * len(columns), 3 * len(records)), dpi=110, squeeze=False)
    predictors = {}
    for col, sub in (("Stage 1", "output_stage1_algorithmic"), ("Stage 2", "output_stage2_manual")):
        weights = os.path.join(output, sub, "model_final.pth")
        cfg = load_config(os.path.join(output, sub, "config.yaml"))
        predictors[col] = MyotubePredictor(cfg, weights=weights, device="cpu")
    for row, record in enumerate(records):
        image = read_image(record["file_name"])
        shown = to_uint8_display(image)
        layers = {
            "ground truth": record_masks(record),
            "annotator": annotate_instances(image, AnnotatorParams(scale=pixel_scale)).masks,
            "Stage 1": predictors["Stage 1"](image).masks,
            "Stage 2": predictors["Stage 2"](image).masks,
        }
        for col, title in enumerate(columns):
            ax = axes[row, col]
            ax.imshow(shown if title == "image" else _colour_instances(shown, layers[title]))
            ax.set_title(title if title == "image" else f"{title} ({len(layers[title])})", fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    path = os.path.join(output, "demo_overview.png")
    fig.savefig(path)
    plt.close(fig)
    return path


def _colour_instances(rgb: np.ndarray, masks: np.ndarray) -> np.ndarray:
    out = rgb.astype(np.float32) * 0.5
    rng = np.random.default_rng(0)
    for m in masks:
        colour = rng.uniform(60, 255, 3)
        out[m] = 0.45 * out[m] + 0.55 * colour
    return out.clip(0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="demo_output", help="folder for everything the demo writes (replaced)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run of every step, seconds not minutes)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="annotator processes")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="change a size of the plan, e.g. --set stage1_iters=500 device=cuda")
    args = parser.parse_args(argv)
    plan = DemoPlan.quick() if args.quick else DemoPlan()
    for item in args.set:
        key, _, value = item.partition("=")
        if not hasattr(plan, key):
            parser.error(f"--set: unknown field {key!r}; fields: {', '.join(plan.__dict__)}")
        setattr(plan, key, type(getattr(plan, key))(value))
    run_demo(args.output, plan, workers=args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
