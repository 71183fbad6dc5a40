"""`make demo`: the whole two-stage story on generated data, in minutes on a laptop CPU.

1. generate synthetic fields: a pool for Stage 1, a few fields whose ground truth plays the manual
   annotations, and a held-out test set;
2. label the Stage 1 pool with the classical annotator and organize the unified dataset;
3. check it with myotube-setup (setup_two_stage.py) and train both stages, Stage 1 starting from
   the shipped base model (``myotube-base``, pretrained on generated fields, as the seed's Stage 1
   starts from COCO weights), plus comparison models with the same total iterations as Stage 1 +
   Stage 2: Stage 2 only (the manual fields, from the base), Stage 2 from scratch (the manual
   fields, random weights), and optionally the ceiling of the recipe (``--set ceiling=true``: the
   Stage 1 fields with their exact ground truth instead of the annotator's labels);
4. evaluate the annotator, the base model alone and the trained models on the held-out set: one
   table of scores, one of errors (tubes merged, cut into pieces, missed; false detections by kind);
5. predict two held-out images with myotube-predict; pictures and the tables go to the output folder.

``--plan cpu`` (default) trains the tiny CPU preset; ``--plan gpu`` the real Swin-B architecture
on one GPU. Each step runs the same command a user would run (the package's commands, printed by
their installed names before they run), so the demo needs no source checkout. Every number in
the tables comes from this run.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace

import numpy as np

from mask2former.annotate.instances import annotate_instances
from mask2former.annotate.params import AnnotatorParams
from mask2former.config import CONFIG_DIR, config_path, load_config, score_threshold_in_force
from mask2former.data.catalog import ANNOTATION_FILES, DEFAULT_DATASET_ROOT
from mask2former.data.coco import read_coco_json, write_coco_json
from mask2former.data.coco_records import load_coco_instances, record_masks
from mask2former.data.io import read_image, to_uint8_display
from mask2former.data.synthetic import generator_params
from mask2former.engine.two_stage import STAGE_OUTPUT_NAMES
from mask2former.evaluation.evaluator import evaluate_predictor, format_error_table, format_table
from mask2former.evaluation.metrics import InstanceEvaluator
from mask2former.inference.predictor import MyotubePredictor
from mask2former.modeling.weights import FINAL, checkpoint_config
from mask2former.modeling.zoo import is_zoo_name
from mask2former.synthetic_datasets import write_synthetic_dataset
from mask2former.utils import add_version_argument
from mask2former.utils.fileio import atomic_write_json, atomic_write_text
from mask2former.utils.settings import with_settings

CEILING = "Exact labels, same budget (ceiling)"
BASE_ALONE = "Base model alone (myotube-base, no training)"
STAGE1 = "Stage 1 (annotator labels)"
STAGE2 = "Stage 2 (Stage 1 + manual)"
STAGE2_ONLY = "Stage 2 only (manual, from the base)"
SCRATCH = "Stage 2 from scratch (manual, random weights)"
# Rows scored again with the other test-time augmentation setting than their model's config
# (TEST.AUG, predict.py --tta / --no-tta), under these suffixes.
FLIPS_SUFFIX = ", four flips fused (--tta)"
ONE_PASS_SUFFIX = ", one pass (--no-tta)"


MANUAL_TRAIN, ALGORITHMIC_TRAIN = "myotube_manual_train", "myotube_algorithmic_train"


@functools.cache
def shipped_stage2_mix() -> float:
    """The share of Stage 2's steps on the Stage 1 fields in the shipped stage2_config.yaml."""
    datasets = load_config(config_path("stage2_config.yaml")).DATASETS
    if ALGORITHMIC_TRAIN not in datasets.TRAIN:
        return 0.0
    shares = list(datasets.TRAIN_SHARES) or [1.0] * len(datasets.TRAIN)
    return shares[list(datasets.TRAIN).index(ALGORITHMIC_TRAIN)] / sum(shares)


# The Swin-B recipe on one GPU, shared by the demo's and the real-field benchmark's gpu plans: the
# toolkit's full field scale, the seed's query count and fine-tuning LRs, random initialisation
# (the base model is the tiny CPU architecture).
SWIN_B_GPU = {
    "pixel_scale": 1.0,
    "queries": 100,
    "stage1_lr": 1e-4,
    "stage2_lr": 3e-5,
    "scratch_lr": 1e-4,
    "stage2_generated": 0.0,
    "device": "cuda",
    "weights": "",
}


@dataclass
class DemoPlan:
    """Sizes of the demo. ``named("gpu")`` is the real architecture on a GPU; ``quick()`` shrinks a
    plan for the test suite."""

    size: int = 256
    pixel_scale: float = 0.5
    stage1_images: int = 60
    manual_images: int = 6
    heldout_images: int = 30
    # Four trainings (Stage 1, Stage 2, and the two comparison models with Stage 1 + Stage 2
    # iterations each) fit well within 15 minutes on a slow 2-core machine.
    stage1_iters: int = 500
    stage2_iters: int = 100
    # Fine-tuning the base gently: its fields are the base's own kind, and Stage 1's annotator labels
    # are worse than the base. This LR and stage2_generated were chosen on validation fields
    # (bench/results/demo_recipes_tta.json).
    stage1_lr: float = 5e-5
    stage2_lr: float = 1e-4
    # The from-scratch comparison: 2e-3 beat 1e-3 at 800 iterations
    # (2 seeds; bench/results/recipe/d_lr*_800.json).
    scratch_lr: float = 2e-3
    stage1_batch: int = 2
    stage2_batch: int = 1
    image_size: int = 256
    # The base model's query count (enough for whole real fields).
    queries: int = 64
    predict_images: int = 2
    density: str = "medium"
    # Generator preset of every field (mask2former.data.synthetic.GENERATOR_PRESETS).
    generator: str = "realistic"
    device: str = "cpu"
    # Folder of stage1_config.yaml / stage2_config.yaml among the shipped configs (mask2former/configs).
    config_dir: str = "cpu_tiny"
    # Stage 1's initial weights: the shipped base model ("" = random initialisation).
    weights: str = "myotube-base"
    loader_workers: int = 0
    seed: int = 0
    # Also train on the exact labels of the Stage 1 fields (the ceiling of the recipe).
    ceiling: bool = False
    # Share of Stage 1's steps that train on generated fields with exact labels (SYNTHETIC.REPLAY),
    # rehearsing the base model's data while Stage 1 learns the annotator's labels.
    stage1_generated: float = 0.0
    # The same for Stage 2: its few manual fields alternate with generated ones.
    stage2_generated: float = 0.5
    # Share of Stage 2's steps on the Stage 1 fields and their annotator labels (DATASETS.TRAIN_SHARES),
    # the rest on the manual fields; by default the shipped stage2_config.yaml's.
    stage2_mix: float = field(default_factory=shipped_stage2_mix)
    # Train the comparison rows (Stage 2 only, from scratch); off for quick A/B runs of the two stages.
    comparisons: bool = True
    # Also score the base alone and Stage 2 with the other test-time augmentation setting than
    # their config's: the base with the four flips fused (--tta), Stage 2 without (--no-tta).
    tta_rows: bool = True

    @classmethod
    def named(cls, name: str) -> DemoPlan:
        if name == "cpu":
            return cls()
        if name == "gpu":
            # Swin-B (the shipped stage configs), 512 px crops at the reference pixel scale.
            return cls(
                **SWIN_B_GPU,
                size=512,
                image_size=512,
                stage1_iters=300,
                stage2_iters=60,
                stage1_batch=8,
                stage2_batch=4,
                config_dir=".",
                loader_workers=8,
            )
        raise ValueError(f"unknown plan {name!r}: cpu or gpu")

    def quick(self) -> DemoPlan:
        size = 96 if self.config_dir != "." else 128
        return replace(
            self,
            size=size,
            image_size=size,
            stage1_images=6,
            manual_images=2,
            heldout_images=2,
            stage1_iters=6,
            stage2_iters=4,
            queries=8,
            predict_images=1,
            stage1_batch=min(2, self.stage1_batch),
            stage2_batch=1,
            device="cpu",
            loader_workers=0,
        )

    @property
    def configs(self) -> str:
        return config_path(self.config_dir)


# The demo's steps: the package's commands, run as modules with this interpreter (no checkout, no
# PATH needed) and shown by the names an installed package puts on PATH.
COMMANDS = {
    "myotube-annotate": "annotate",
    "myotube-organize": "organize",
    "myotube-setup": "setup_two_stage",
    "myotube-train": "train",
    "myotube-train-two-stage": "train_two_stage",
    "myotube-predict": "predict",
}


def command(name: str, *args: str) -> list[str]:
    """``name`` (a console script, e.g. ``myotube-predict``) with ``args``, as this interpreter runs it."""
    return [sys.executable, "-m", f"mask2former.commands.{COMMANDS[name]}", *args]


def _shown(cmd: list[str], cwd: str | None = None) -> str:
    """``cmd`` as a user types it: the console script's name; a shipped config by the name the
    commands find it by (``configs/cpu_tiny``, as a checkout spells it); paths below the working
    folder relative."""
    if cmd[:2] == [sys.executable, "-m"] and cmd[2].startswith("mask2former.commands."):
        module = cmd[2].rsplit(".", 1)[1]
        cmd = [next(n for n, m in COMMANDS.items() if m == module), *cmd[3:]]
    here = os.path.abspath(cwd or os.getcwd())
    shipped = os.path.normpath(CONFIG_DIR)

    def show(arg: str) -> str:
        if not os.path.isabs(arg):
            return arg
        if arg == shipped or arg.startswith(shipped + os.sep):
            return os.path.normpath(os.path.join("configs", os.path.relpath(arg, shipped)))
        return os.path.relpath(arg, here) if arg.startswith(here + os.sep) else arg

    return " ".join(show(c) for c in cmd)


def _run(cmd: list[str], log, cwd: str | None = None) -> None:
    shown = _shown(cmd, cwd)
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


def model_opts(plan: DemoPlan) -> list[str]:
    """Config overrides for the plan's device, crop size and query count (training and prediction)."""
    return [
        "MODEL.DEVICE",
        plan.device,
        "INPUT.IMAGE_SIZE",
        str(plan.image_size),
        "MODEL.SWIN.PRETRAIN_IMG_SIZE",
        str(plan.image_size),
        "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES",
        str(plan.queries),
        # The stage configs snap outlines and split masks for whole microscope fields; on the
        # generated crops both cost F1@0.5 (bench/results/synthetic_settings.json).
        "INFERENCE.SNAP_REACH",
        "0",
        "INFERENCE.SPLIT_DISCONNECTED",
        "False",
    ]


def training_opts(plan: DemoPlan, out: str, iters: int, lr: float, batch: int) -> list[str]:
    return [
        *model_opts(plan),
        "SOLVER.MAX_ITER",
        str(iters),
        "SOLVER.BASE_LR",
        str(lr),
        "SOLVER.IMS_PER_BATCH",
        str(batch),
        "SOLVER.WARMUP_ITERS",
        str(max(1, iters // 20)),
        "SOLVER.CHECKPOINT_PERIOD",
        str(max(1, iters // 2)),
        "SOLVER.LOG_PERIOD",
        str(max(1, iters // 20)),
        "DATALOADER.NUM_WORKERS",
        str(plan.loader_workers),
        "SEED",
        str(plan.seed),
        "OUTPUT_DIR",
        out,
    ]


def exact_label_dataset(dataset: str, pool_json: str, out: str) -> str:
    """A copy of the unified ``dataset`` whose Stage 1 labels are the exact ground truth of the same
    fields."""
    truth = read_coco_json(pool_json)
    by_stem = {os.path.splitext(img["file_name"])[0]: img["id"] for img in truth["images"]}
    # The organizer prefixes names that clash with the manual images; its report maps them back.
    with open(os.path.join(dataset, "organize_report.json"), encoding="utf-8") as f:
        original = {
            new: os.path.splitext(os.path.basename(old))[0]
            for old, new in json.load(f).get("renamed_images", {}).items()
        }
    anns_of: dict[int, list[dict]] = {}
    for ann in truth["annotations"]:
        anns_of.setdefault(ann["image_id"], []).append(ann)
    os.makedirs(os.path.join(out, "annotations"), exist_ok=True)
    if not os.path.exists(os.path.join(out, "images")):
        os.symlink(os.path.join(dataset, "images"), os.path.join(out, "images"))
    for name, file in ANNOTATION_FILES.items():
        src = os.path.join(dataset, "annotations", file)
        if not os.path.isfile(src):
            continue
        data = read_coco_json(src)
        if name == "myotube_algorithmic_train":
            anns = []
            for img in data["images"]:
                stem = original.get(img["file_name"], os.path.splitext(img["file_name"])[0])
                for ann in anns_of.get(by_stem[stem], []):
                    anns.append(
                        {
                            **ann,
                            "id": len(anns) + 1,
                            "image_id": img["id"],
                            "category_id": data["categories"][0]["id"],
                        }
                    )
            data["annotations"] = anns
        write_coco_json(
            os.path.join(out, "annotations", file), data["images"], data["annotations"], data["categories"]
        )
    return out


def replay_opts(share: float, pixel_scale: float, field_size: int) -> list[str]:
    """Config overrides that put ``share`` of a training's steps on generated fields with exact labels
    (``SYNTHETIC.REPLAY``), drawn at ``pixel_scale`` in fields of ``field_size`` px; none when
    ``share`` is 0."""
    if share <= 0:
        return []
    return [
        "SYNTHETIC.REPLAY",
        str(share),
        "SYNTHETIC.PIXEL_SCALE",
        str(pixel_scale),
        "SYNTHETIC.FIELD_SIZES",
        f"({field_size},)",
        "SYNTHETIC.FIELD_SIZE_WEIGHTS",
        "(1.0,)",
    ]


def stage_command(
    plan: DemoPlan, dataset: str, stage: int, weights: str, out: str, replay: float
) -> list[str]:
    """``myotube-train-two-stage --stage N`` with the plan's iterations, LR and batch of that stage."""
    iters, lr, batch = (
        (plan.stage1_iters, plan.stage1_lr, plan.stage1_batch)
        if stage == 1
        else (plan.stage2_iters, plan.stage2_lr, plan.stage2_batch)
    )
    return command(
        "myotube-train-two-stage",
        *("--stage", str(stage), "--dataset", dataset, "--config-dir", plan.configs),
        *("--opts", "MODEL.WEIGHTS", weights),
        *training_opts(plan, out, iters, lr, batch),
        *replay_opts(replay, plan.pixel_scale, plan.image_size),
        *(mix_opts(plan.stage2_mix) if stage == 2 else []),
    )


def comparison_command(
    plan: DemoPlan, config: str, dataset: str, weights: str, out: str, lr: float
) -> list[str]:
    """``myotube-train`` of one comparison row: the two-stage model's whole budget (Stage 1 + Stage 2
    iterations) at Stage 1's batch."""
    return command(
        "myotube-train",
        *("--config-file", os.path.join(plan.configs, config), "--dataset", dataset),
        *("MODEL.WEIGHTS", weights),
        *training_opts(plan, out, plan.stage1_iters + plan.stage2_iters, lr, plan.stage1_batch),
        # The Stage 2 comparisons learn from the manual fields alone.
        *(mix_opts(0.0) if config == "stage2_config.yaml" else []),
    )


def mix_opts(share: float) -> list[str]:
    """Config overrides that give a training ``share`` of its steps on the Stage 1 fields and the
    rest on the manual fields (0: the manual fields alone)."""
    if share <= 0:
        return ["DATASETS.TRAIN", f"('{MANUAL_TRAIN}',)", "DATASETS.TRAIN_SHARES", "()"]
    return [
        "DATASETS.TRAIN",
        f"('{MANUAL_TRAIN}', '{ALGORITHMIC_TRAIN}')",
        "DATASETS.TRAIN_SHARES",
        f"({1 - share}, {share})",
    ]


def training_runs(
    plan: DemoPlan, dataset: str, output: str, exact_dataset: str = ""
) -> list[tuple[str, str, list[str]]]:
    """Every training of the demo, in order, as (table row, output folder, command); the ceiling row
    trains the Stage 1 fields' exact labels (``exact_dataset``)."""
    s1, s2 = (os.path.join(output, STAGE_OUTPUT_NAMES[n]) for n in (1, 2))
    runs = [
        (STAGE1, s1, stage_command(plan, dataset, 1, plan.weights, s1, plan.stage1_generated)),
        (STAGE2, s2, stage_command(plan, dataset, 2, os.path.join(s1, FINAL), s2, plan.stage2_generated)),
    ]
    if not plan.comparisons:
        return runs
    comparisons = [
        (STAGE2_ONLY, "output_stage2_only", "stage2_config.yaml", dataset, plan.weights, plan.stage1_lr),
        (SCRATCH, "output_stage2_scratch", "stage2_config.yaml", dataset, "", plan.scratch_lr),
        (CEILING, "output_exact_labels", "stage1_config.yaml", exact_dataset, plan.weights, plan.stage1_lr),
    ]
    for row, folder, config, data, weights, lr in comparisons:
        # Stage 2 only needs a base to start from; the ceiling needs the exact labels.
        if (row == STAGE2_ONLY and not weights) or not data:
            continue
        out = os.path.join(output, folder)
        runs.append((row, out, comparison_command(plan, config, data, weights, out, lr)))
    return runs


def train_models(plan: DemoPlan, dataset: str, pool_json: str, output: str, log) -> dict[str, str]:
    """Check the dataset, then train Stage 1, Stage 2 and the comparison models; their output folders
    by row name."""
    _run(command("myotube-setup", "--dataset", dataset, "--config-dir", plan.configs), log)
    exact = ""
    if plan.ceiling and plan.comparisons:
        exact = exact_label_dataset(dataset, pool_json, os.path.join(output, "myotube_dataset_exact"))
    models = {}
    for row, folder, cmd in training_runs(plan, dataset, output, exact):
        _run(cmd, log)
        models[row] = folder
    return models


def generate_fields(raw: str, plan: DemoPlan) -> tuple[str, str]:
    """The Stage 1 pool, the 'manual' fields and the held-out fields, each with exact ground truth;
    returns the manual and held-out annotation files."""
    common = {
        "size": plan.size,
        "pixel_scale": plan.pixel_scale,
        "density": plan.density,
        "progress": False,
        "params": generator_params(plan.generator),
    }
    write_synthetic_dataset(os.path.join(raw, "stage1_pool"), plan.stage1_images, seed=1, **common)
    manual_json = write_synthetic_dataset(os.path.join(raw, "manual"), plan.manual_images, seed=2, **common)
    heldout_json = write_synthetic_dataset(
        os.path.join(raw, "heldout"), plan.heldout_images, seed=3, **common
    )
    print(
        f"  {plan.stage1_images} Stage 1 fields, {plan.manual_images} 'manually annotated' fields, "
        f"{plan.heldout_images} held-out fields with ground truth ({plan.size} px)"
    )
    return manual_json, heldout_json


def annotate_and_organize(raw: str, manual_json: str, output: str, plan: DemoPlan, workers: int, log) -> str:
    """The annotator labels the Stage 1 pool; the organizer joins it with the manual fields. Returns
    the unified dataset folder."""
    annotated = os.path.join(output, "annotator_out")
    _run(
        command(
            "myotube-annotate",
            "--input_dir",
            os.path.join(raw, "stage1_pool", "images"),
            "--output_dir",
            annotated,
            "--resolution",
            str(plan.size),
            "--scale",
            str(plan.pixel_scale),
            "--test_fraction",
            "0.1",
            "--seed",
            "0",
            "--workers",
            str(workers),
        ),
        log,
    )
    dataset = os.path.join(output, os.path.basename(DEFAULT_DATASET_ROOT))
    _run(
        command(
            "myotube-organize",
            "--algorithmic_dataset",
            annotated,
            "--manual_dataset",
            manual_json,
            "--output_dataset",
            dataset,
        ),
        log,
    )
    return dataset


def predict_examples(image_dir: str, output: str, plan: DemoPlan, log) -> None:
    """``myotube-predict`` with the Stage 2 model on the first held-out images, as a user would run it."""
    held_images = sorted(os.listdir(image_dir))[: plan.predict_images]
    _run(
        command(
            "myotube-predict",
            "--config-file",
            os.path.join(plan.configs, "stage2_config.yaml"),
            "--weights",
            os.path.join(output, STAGE_OUTPUT_NAMES[2], FINAL),
            "--input",
            *[os.path.join(image_dir, f) for f in held_images],
            "--output",
            os.path.join(output, "predictions"),
            "--no-progress",
            "--opts",
            *model_opts(plan),
        ),
        log,
    )


class StepClock:
    """Announces the demo's steps and times each until the next one starts."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}

    def start(self, name: str) -> None:
        self.started[name] = time.perf_counter()
        print(f"\n=== {name}", flush=True)

    def seconds(self) -> dict[str, float]:
        names = list(self.started)
        ends = [self.started[n] for n in names[1:]] + [time.perf_counter()]
        return {n: round(end - self.started[n], 1) for n, end in zip(names, ends)}


def write_tables(table: dict, output: str, plan: DemoPlan) -> str:
    """The held-out scores and error counts as markdown (demo_results.md); returns the text shown."""
    markdown = format_table(table["results"], keys=("AP", "AP50", "AP75", "f1@0.5", "semantic_iou"))
    errors = format_error_table(table["results"])
    atomic_write_text(
        os.path.join(output, "demo_results.md"),
        markdown + "\n\nWhere each method goes wrong (counts over the held-out fields):\n\n" + errors + "\n",
    )
    settings = table["score_thresholds"].items()
    thresholds = "; ".join(f"{label} at score threshold {t}" for label, t in settings)
    return f"\n=== Held-out results ({plan.heldout_images} fields; {thresholds})\n{markdown}\n\n{errors}"


def run_demo(output: str, plan: DemoPlan, workers: int = 2) -> dict:
    t_start = time.perf_counter()
    output = os.path.abspath(output)
    if os.path.exists(output):
        shutil.rmtree(output)
    os.makedirs(output)
    log = open(os.path.join(output, "demo_log.txt"), "w", encoding="utf-8")
    clock = StepClock()
    raw = os.path.join(output, "raw")
    heldout_images = os.path.join(raw, "heldout", "images")

    clock.start("1. generate synthetic fields")
    manual_json, heldout_json = generate_fields(raw, plan)

    clock.start("2. annotate the Stage 1 pool and organize the unified dataset")
    dataset = annotate_and_organize(raw, manual_json, output, plan, workers, log)

    clock.start("3. check the dataset, train Stage 1, Stage 2, and the comparison models")
    models = train_models(plan, dataset, os.path.join(raw, "stage1_pool", "annotations.json"), output, log)

    clock.start("4. evaluate on the held-out fields")
    if plan.weights and is_zoo_name(plan.weights):
        models = {BASE_ALONE: plan.weights, **models}
    augmented = (BASE_ALONE, STAGE2) if plan.tta_rows else ()
    table = evaluate_on_heldout(
        heldout_json, heldout_images, models, plan.pixel_scale, plan.device, augmented
    )
    shown = write_tables(table, output, plan)
    print(shown, flush=True)

    clock.start("5. predict two held-out images")
    predict_examples(heldout_images, output, plan, log)
    overview = draw_overview(table, heldout_json, heldout_images, output, plan.pixel_scale, plan.device)

    wall = time.perf_counter() - t_start
    summary = {
        "wall_seconds": round(wall, 1),
        "step_seconds": clock.seconds(),
        "plan": dict(plan.__dict__),
        **table,
    }
    atomic_write_json(os.path.join(output, "demo_results.json"), summary, indent=2)
    log.close()
    print(shown)
    print(f"\nDemo finished in {wall / 60:.1f} min. Results in {output}/:")
    print("  demo_results.md / .json   the table above")
    print(f"  {os.path.basename(overview)}       held-out fields: ground truth, annotator, Stage 1, Stage 2")
    print("  output_stage*/loss_curve.png, log.txt, metrics.json, model_final.pth")
    print("  predictions/               overlays, label TIFFs, COCO JSON, ImageJ ROIs, measurements CSV")
    return summary


def score_annotator(records: list[dict], pixel_scale: float) -> dict:
    """The classical annotator against the ground truth of ``records`` (COCO records of generated
    fields drawn at ``pixel_scale``, which the annotator is told, as ``--scale`` tells it in Stage 1):
    the evaluator's whole summary. Its instances carry no score, so every one counts as sure."""
    evaluator = InstanceEvaluator(score_threshold=0.0)
    for record in records:
        found = annotate_instances(read_image(record["file_name"]), AnnotatorParams(scale=pixel_scale))
        evaluator.add(record_masks(record), found)
    return evaluator.summarize()


def evaluate_on_heldout(
    gt_json: str,
    image_dir: str,
    models: dict[str, str],
    pixel_scale: float,
    device: str = "cpu",
    augmented: tuple[str, ...] = (),
) -> dict:
    """Annotator and each model against the held-out ground truth (same images, same metrics), each
    model as its config predicts (as ``predict.py`` runs it); the models named in ``augmented`` once
    more with the other test-time augmentation setting (row name + FLIPS_SUFFIX or ONE_PASS_SUFFIX).

    The fields are crops drawn at ``pixel_scale`` of a 1500 px field; the annotator is told so,
    as the demo's Stage 1 annotation run is (``--scale``). Each row records whether the four flips
    were fused and the score threshold it was scored with; ``score_thresholds`` sums them up.
    """
    records = load_coco_instances(gt_json, image_dir)
    results: dict[str, dict] = {"Classical annotator": score_annotator(records, pixel_scale)}
    thresholds: dict[str, float] = {}
    runs = [(name, source, False) for name, source in models.items()]
    runs += [(name, models[name], True) for name in augmented if name in models]
    for name, source, other_setting in runs:
        # A training's model_final.pth or a named model: either carries the config it was trained with.
        weights = os.path.join(source, FINAL) if os.path.isdir(source) else source
        cfg = checkpoint_config(weights)
        cfg.MODEL.DEVICE = device
        if other_setting:
            cfg.TEST.AUG.ENABLED = not cfg.TEST.AUG.ENABLED
            name += FLIPS_SUFFIX if cfg.TEST.AUG.ENABLED else ONE_PASS_SUFFIX
        cfg.freeze()
        flips = bool(cfg.TEST.AUG.ENABLED)
        thresholds.setdefault("four flips fused" if flips else "one pass", score_threshold_in_force(cfg))
        predictor = MyotubePredictor(cfg, weights=weights, device=device)
        results[name] = evaluate_predictor(predictor, records, cfg, desc=name)
        results[name].pop("per_image", None)
        results[name]["flips"] = flips
    return {"results": results, "score_thresholds": thresholds}


def draw_overview(
    table: dict,
    gt_json: str,
    image_dir: str,
    output: str,
    pixel_scale: float,
    device: str = "cpu",
    n_images: int = 2,
) -> str:
    """Held-out fields side by side: image, ground truth, annotator, Stage 1, Stage 2."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = load_coco_instances(gt_json, image_dir)[:n_images]
    columns = ["image", "ground truth", "annotator", "Stage 1", "Stage 2"]
    fig, axes = plt.subplots(
        len(records), len(columns), figsize=(3 * len(columns), 3 * len(records)), dpi=110, squeeze=False
    )
    predictors = {}
    for col, sub in (("Stage 1", STAGE_OUTPUT_NAMES[1]), ("Stage 2", STAGE_OUTPUT_NAMES[2])):
        weights = os.path.join(output, sub, FINAL)
        cfg = load_config(os.path.join(output, sub, "config.yaml"))
        predictors[col] = MyotubePredictor(cfg, weights=weights, device=device)
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
    parser = argparse.ArgumentParser(
        prog="python -m mask2former.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_version_argument(parser)
    parser.add_argument(
        "--output", default="demo_output", help="folder for everything the demo writes (replaced)"
    )
    parser.add_argument(
        "--plan",
        choices=("cpu", "gpu"),
        default="cpu",
        help="cpu: the tiny model on 2 cores; gpu: the real Swin-B architecture on one GPU "
        "(random init unless --set weights=DIR)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes (a smoke run of every step, seconds not minutes)"
    )
    parser.add_argument(
        "--workers", type=int, default=min(2, os.cpu_count() or 1), help="annotator processes"
    )
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="change a field of the plan, e.g. --set stage1_iters=500 seed=1",
    )
    args = parser.parse_args(argv)
    plan = DemoPlan.named(args.plan)
    if args.quick:
        plan = plan.quick()
    try:
        plan = with_settings(plan, args.set)
    except ValueError as err:
        parser.error(str(err))
    run_demo(args.output, plan, workers=args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
