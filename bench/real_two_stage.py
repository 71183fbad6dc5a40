"""The two-stage workflow on real fields: annotator labels for Stage 1, a few human masks for Stage 2.

    python -m bench.real_two_stage                      # CPU preset (tiny model)
    python -m bench.real_two_stage --preset gpu         # Swin-B on a GPU
    python -m bench.real_two_stage --quick              # 3 fields, a smoke run of every step
    python -m bench.real_two_stage --heldout DIR --output models/

Fields: ``../shared/data/qa-skmcs-train`` (``*_myosin.png`` + human ``*_myotube_mask.png``), sorted by
name; the fields with a non-empty human mask are split as in ``bench/annotator.py``: even positions
are the tuning half, odd positions the held-out half. From the tuning half, ``manual_fields``
evenly spaced fields are the "manually annotated" Stage 2 fields: their human masks, one instance
per connected component (the masks are semantic, so touching or crossing myotubes share one
component and so one instance). The rest of the tuning half is the Stage 1 pool, labelled by the
classical annotator; its human masks are never used. No stage sees the held-out half.

Every field is resized to ``pixel_scale`` x 1500 px (the toolkit's reference field) and the
model trains on random ``tile`` px crops of it (the scale jitter is set so the crops keep the
field's pixel scale), then predicts held-out fields tile by tile as ``predict.py`` does.
Stage 1 starts from the shipped base model (``myotube-base``, pretrained on generated fields) unless
``--set weights=`` says otherwise. Trained: Stage 1 (annotator labels), Stage 2 (Stage 1 + manual
fields), Stage 2 with the Stage 1 pool mixed into its training data, Stage 2 only (manual fields,
from the base) and Stage 2 from scratch (manual fields, random weights), the last two with as many
iterations as Stage 1 + Stage 2 together. The base model alone is scored too.

Scored per held-out field, at the working resolution, for every method (the annotator run at that
resolution, a blurred triangle threshold, the three models):
- semantic IoU and Dice of the union of the method's instances against the human mask;
- isolated tubes: human components with an unbranched skeleton are one myotube each; the share
  matched one-to-one by a predicted instance at IoU > 0.5, and the mean number of predicted pieces
  touching each (overlapping it by at least 5 % of its area or of the piece's).
Outputs: ``bench/results/real_two_stage[_<preset>].json``, a markdown table, one overlay picture per
method (``--figures``) and, with ``--output DIR``, each model as ``DIR/<method>/model_final.pth``
plus its ``config.yaml``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from bench.common import REPO_ROOT, exit_on_sigterm, train_once, write_results
from bench.seams import (
    UNMATCHED_CAUSES,
    instance_proxy,
    isolated_tubes,
    seam_breakdown,
    tile_edges,
    unmatched_causes,
)
from mask2former.demo import SWIN_B_GPU, mix_opts, replay_opts, shipped_stage2_mix
from mask2former.utils.run_files import FINAL
from mask2former.utils.settings import with_settings

DEFAULT_DATA = os.path.join(REPO_ROOT, "..", "shared", "data", "qa-skmcs-train")
REFERENCE_SIZE = 1500
METHODS = (
    "annotator",
    "threshold",
    "base",
    "stage1",
    "stage2",
    "stage2_manual_only",
    "stage2_only",
    "stage2_scratch",
)
MODELS = ("stage1", "stage2", "stage2_manual_only", "stage2_only", "stage2_scratch")
LABELS = {
    "annotator": "Classical annotator",
    "threshold": "Blur + triangle threshold",
    "stage1": "Stage 1 (annotator labels)",
    "stage2": "Stage 2 (Stage 1 + 5 manual, half the steps on the Stage 1 fields)",
    "stage2_manual_only": "Stage 2 on the 5 manual fields alone",
    "base": "Base model alone (no training)",
    "stage2_only": "Stage 2 only (manual, from the base)",
    "stage2_scratch": "Stage 2 from scratch (manual, random weights)",
}


@dataclass
class RealPlan:
    """Sizes of one run; the presets below fill it."""

    config_dir: str = os.path.join(REPO_ROOT, "configs", "cpu_tiny")
    pixel_scale: float = 0.5  # working field = pixel_scale x 1500 px (0.5: the demo's scale)
    tile: int = 256  # model input and training crop (INPUT.IMAGE_SIZE)
    manual_fields: int = 5
    stage1_iters: int = 4000
    stage2_iters: int = 300
    stage1_lr: float = 2e-4  # fine-tuning the base
    stage2_lr: float = 1e-4
    scratch_lr: float = 1e-3  # the from-scratch comparison
    batch: int = 2
    queries: int = 64  # the base model's
    device: str = "cpu"
    weights: str = "myotube-base"  # Stage 1 initial weights ("" = random)
    pool_fields: int = 0  # 0: the whole tuning half minus the manual fields
    heldout_fields: int = 0  # 0: the whole held-out half
    extra_opts: tuple[str, ...] = ()
    # Share of Stage 1's steps on generated fields with exact labels (SYNTHETIC.REPLAY), drawn at
    # the fields' working scale.
    stage1_generated: float = 0.0
    # Share of Stage 2's steps on the Stage 1 fields and their annotator labels (DATASETS.TRAIN_SHARES),
    # the rest on the manual fields.
    stage2_mix: float = field(default_factory=shipped_stage2_mix)
    # The same for Stage 2's steps on generated fields.
    stage2_generated: float = 0.0
    # Train and score the comparison rows (Stage 2 only, from scratch); off for quick A/B runs.
    comparisons: bool = True


PRESETS = {
    "cpu": RealPlan(),
    # Swin-B (the shipped stage configs) at the toolkit's full field scale, 512 px crops.
    "gpu": RealPlan(
        **SWIN_B_GPU,
        config_dir=REPO_ROOT,
        tile=512,
        stage1_iters=1500,
        stage2_iters=500,
        batch=8,
        extra_opts=("DATALOADER.NUM_WORKERS", "8"),
    ),
    "quick": RealPlan(
        pixel_scale=0.25,
        tile=128,
        manual_fields=1,
        stage1_iters=6,
        stage2_iters=4,
        queries=8,
        pool_fields=1,
        heldout_fields=1,
    ),
}


# --------------------------------------------------------------------------- fields


def list_fields(data_dir: str) -> list[str]:
    """``*_myosin.png`` with a non-empty ``*_myotube_mask.png``, sorted by name."""
    from mask2former.data.io import read_image

    paths = sorted(glob.glob(os.path.join(data_dir, "*_myosin.png")))
    return [p for p in paths if os.path.isfile(human_path(p)) and (read_image(human_path(p)) > 0).any()]


def human_path(myosin: str) -> str:
    return myosin.replace("_myosin.png", "_myotube_mask.png")


def split_fields(fields: list[str], plan: RealPlan) -> dict[str, list[str]]:
    tuning, heldout = fields[0::2], fields[1::2]
    if len(tuning) < plan.manual_fields + 1 or not heldout:
        raise SystemExit(
            f"need at least {2 * (plan.manual_fields + 1)} fields with a human mask, found {len(fields)}"
        )
    picks = np.unique(np.linspace(0, len(tuning) - 1, plan.manual_fields + 2).round().astype(int)[1:-1])
    manual = [tuning[i] for i in picks]
    pool = [f for f in tuning if f not in manual]
    if plan.pool_fields:
        pool = pool[: plan.pool_fields]
    if plan.heldout_fields:
        heldout = heldout[: plan.heldout_fields]
    return {"pool": pool, "manual": manual, "heldout": heldout}


def load_field(myosin: str, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(image, human mask) resized so the longest side is ``side``."""
    from mask2former.data.io import read_image

    image = read_image(myosin)
    human = read_image(human_path(myosin))
    human = (human.max(axis=2) if human.ndim == 3 else human) > 0
    h, w = image.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    truth = cv2.resize(human.astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA) >= 128
    return small, truth


def components(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Connected components of a semantic mask as an instance stack (N, H, W)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_area]
    return (
        labels[None] == np.asarray(keep, np.int32)[:, None, None]
        if keep
        else np.zeros((0,) + mask.shape, bool)
    )


# --------------------------------------------------------------------------- dataset


def dataset_folder_name(splits: dict[str, list[str]], plan: RealPlan) -> str:
    """``dataset-<hash>`` of what the dataset is built from (the fields of each split and the working
    scale), so that other settings build their own dataset and their models train on it."""
    import hashlib

    key = json.dumps(
        {
            "splits": {k: [os.path.abspath(p) for p in v] for k, v in splits.items()},
            "pixel_scale": plan.pixel_scale,
        },
        sort_keys=True,
    )
    return "dataset-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def build_dataset(root: str, splits: dict[str, list[str]], plan: RealPlan) -> dict:
    """The unified dataset: Stage 1 pool with annotator labels, manual fields with human components."""
    from mask2former.annotate import AnnotatorParams, annotate_instances
    from mask2former.data.catalog import ANNOTATION_FILES
    from mask2former.data.coco import write_coco_json
    from mask2former.data.coco_masks import mask_annotations
    from mask2former.data.io import image_size

    side = round(REFERENCE_SIZE * plan.pixel_scale)
    min_area = max(8, round(300 * plan.pixel_scale**2))
    images = os.path.join(root, "images")
    os.makedirs(images, exist_ok=True)
    params = AnnotatorParams(scale=plan.pixel_scale)
    counts = {}
    for split, part in (("myotube_algorithmic_train", "pool"), ("myotube_manual_train", "manual")):
        entries, anns = [], []
        for path in splits[part]:
            image, human = load_field(path, side)
            name = os.path.basename(path)
            cv2.imwrite(os.path.join(images, name), image)
            masks = annotate_instances(image, params).masks if part == "pool" else components(human, min_area)
            image_id = len(entries) + 1
            # The size of the microscope's field: the models then record their scale against it, and
            # predict.py resizes new full-size fields by the same factor.
            oh, ow = image_size(path)
            entries.append(
                {
                    "id": image_id,
                    "file_name": name,
                    "height": image.shape[0],
                    "width": image.shape[1],
                    "original_height": oh,
                    "original_width": ow,
                }
            )
            anns += mask_annotations(masks, image_id, len(anns) + 1)
        write_coco_json(os.path.join(root, "annotations", ANNOTATION_FILES[split]), entries, anns)
        counts[part] = {"fields": len(entries), "instances": len(anns)}
    # Stage 1's own test split is required by the layout; the held-out fields are scored here instead.
    shutil.copy(
        os.path.join(root, "annotations", ANNOTATION_FILES["myotube_manual_train"]),
        os.path.join(root, "annotations", ANNOTATION_FILES["myotube_algorithmic_test"]),
    )
    return counts


# --------------------------------------------------------------------------- training


def training_opts(plan: RealPlan, out: str, iters: int, lr: float, seed: int) -> list[str]:
    side = REFERENCE_SIZE * plan.pixel_scale
    # The mapper resizes a field so its longest side is IMAGE_SIZE, times the scale jitter, then
    # crops IMAGE_SIZE: a jitter around side / tile keeps the field's own pixel scale (+-10 %).
    native = side / plan.tile
    return [
        "MODEL.DEVICE",
        plan.device,
        "INPUT.IMAGE_SIZE",
        str(plan.tile),
        "INPUT.MIN_SCALE",
        f"{0.9 * native:.4f}",
        "INPUT.MAX_SCALE",
        f"{1.1 * native:.4f}",
        "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES",
        str(plan.queries),
        "SOLVER.MAX_ITER",
        str(iters),
        "SOLVER.BASE_LR",
        str(lr),
        "SOLVER.IMS_PER_BATCH",
        str(plan.batch),
        "SOLVER.WARMUP_ITERS",
        str(max(1, iters // 20)),
        "SOLVER.CHECKPOINT_PERIOD",
        str(max(1, iters // 4)),
        "SOLVER.LOG_PERIOD",
        str(max(1, iters // 50)),
        "SEED",
        str(seed),
        "OUTPUT_DIR",
        out,
        "TEST.EVAL_PERIOD",
        "0",
        "DATASETS.TEST",
        "()",
        *plan.extra_opts,
    ]


def planned_models(plan: RealPlan) -> list[str]:
    """The models a plan trains: Stage 2 only is the same as from scratch without base weights, and
    the comparison rows are left out when ``plan.comparisons`` is off."""
    planned = [m for m in MODELS if not (m == "stage2_only" and not plan.weights)]
    return [m for m in planned if plan.comparisons or m not in ("stage2_only", "stage2_scratch")]


def train_models(work: str, dataset: str, plan: RealPlan, seed: int) -> dict[str, float]:
    """Stage 1, Stage 2 and Stage 2 only; a finished model is reused, an interrupted one resumed."""
    stage1 = os.path.join(work, "stage1", FINAL)
    manual = mix_opts(0.0)
    runs = {
        "stage1": (
            "stage1_config.yaml",
            plan.stage1_iters,
            plan.stage1_lr,
            plan.weights,
            replay_opts(plan.stage1_generated, plan.pixel_scale, plan.tile),
        ),
        "stage2": (
            "stage2_config.yaml",
            plan.stage2_iters,
            plan.stage2_lr,
            stage1,
            mix_opts(plan.stage2_mix) + replay_opts(plan.stage2_generated, plan.pixel_scale, plan.tile),
        ),
        # The Stage 2 recipe before DATASETS.TRAIN_SHARES: the manual fields alone.
        "stage2_manual_only": ("stage2_config.yaml", plan.stage2_iters, plan.stage2_lr, stage1, manual),
        "stage2_only": (
            "stage2_config.yaml",
            plan.stage1_iters + plan.stage2_iters,
            plan.stage1_lr,
            plan.weights,
            manual,
        ),
        "stage2_scratch": (
            "stage2_config.yaml",
            plan.stage1_iters + plan.stage2_iters,
            plan.scratch_lr,
            "",
            manual,
        ),
    }
    seconds = {}
    for method, (config, iters, lr, weights, extra) in runs.items():
        if method not in planned_models(plan):
            continue
        out = os.path.join(work, method)
        opts = training_opts(plan, out, iters, lr, seed) + ["MODEL.WEIGHTS", weights, *extra]
        took = train_once(
            os.path.join(plan.config_dir, config), dataset, opts, out, os.path.join(work, "train_log.txt")
        )
        if took is not None:
            seconds[method] = took
    return seconds


# --------------------------------------------------------------------------- scoring


def threshold_instances(image: np.ndarray, min_area: int) -> np.ndarray:
    from bench.annotator import baseline_masks

    return components(baseline_masks(image)["triangle"], min_area)


def field_predictor(source: str, device: str, predict_opts: tuple[str, ...] = ()):
    """(predictor, prediction options) of a training's folder (its model_final.pth) or a named
    model, for fields already loaded at its training scale (``load_field``)."""
    from mask2former.inference.options import PredictOptions
    from mask2former.inference.predictor import MyotubePredictor
    from mask2former.modeling.weights import checkpoint_config

    # Either carries the config it was trained with.
    weights = os.path.join(source, FINAL) if os.path.isdir(source) else source
    cfg = checkpoint_config(weights)
    cfg.MODEL.DEVICE = device
    cfg.merge_from_list(list(predict_opts))
    # The model sees the field's own pixels: it is loaded at the training scale already.
    predictor = MyotubePredictor(cfg, weights=weights, input_scale=1.0)
    return predictor, PredictOptions.from_cfg(cfg, progress=False)


def score_fields(
    paths: list[str],
    plan: RealPlan,
    models: dict[str, str],
    figure_dir: str | None,
    predict_opts: tuple[str, ...] = (),
    figure_fields: tuple[str, ...] = (),
) -> list[dict]:
    """One row per field of every method's scores; with ``figure_dir``, overlay pictures of the
    ``figure_fields`` (names without ``_myosin.png``; none: the first field)."""
    from mask2former.annotate import AnnotatorParams, annotate_instances
    from mask2former.evaluation.metrics import semantic_iou_dice_binary
    from mask2former.inference.image_pipeline import predict_image

    side = round(REFERENCE_SIZE * plan.pixel_scale)
    min_area = max(8, round(300 * plan.pixel_scale**2))
    predictors = {method: field_predictor(out, plan.device, predict_opts) for method, out in models.items()}
    rows = []
    for k, path in enumerate(paths):
        image, human = load_field(path, side)
        found = {
            "annotator": annotate_instances(image, AnnotatorParams(scale=plan.pixel_scale)).masks,
            "threshold": threshold_instances(image, min_area),
        }
        edges, seconds = {}, {}
        for method, (predictor, options) in predictors.items():
            start = time.perf_counter()
            found[method] = predict_image(image, predictor, options).to_instances().masks
            seconds[method] = time.perf_counter() - start
            edges[method] = tile_edges(image.shape[:2], options.image_tile_size, options.tile_overlap)
        singles = isolated_tubes(human, min_area)
        row = {"field": os.path.basename(path).replace("_myosin.png", "")}
        for method, masks in found.items():
            union = masks.any(axis=0) if len(masks) else np.zeros_like(human)
            sem = semantic_iou_dice_binary(human, union)
            found_px, human_px = int(union.sum()), int(human.sum())
            row[method] = {
                "iou": sem["iou"],
                "dice": sem["dice"],
                "instances": int(len(masks)),
                # Pixel precision and recall: is the method's foreground too wide or too narrow?
                "precision": sem["intersection"] / found_px if found_px else 1.0,
                "recall": sem["intersection"] / human_px if human_px else 1.0,
                **instance_proxy(singles, masks),
                "unmatched": unmatched_causes(singles, masks),
            }
            if method in edges:  # a tiled model: where its cut tubes are cut, and its prediction time
                row[method].update(seam_breakdown(singles, masks, edges[method]), seconds=seconds[method])
        rows.append(row)
        print(f"  {row['field']}: " + ", ".join(f"{m} IoU {row[m]['iou']:.3f}" for m in found), flush=True)
        if figure_dir and (row["field"] in figure_fields or (not figure_fields and k == 0)):
            write_overlays(figure_dir, row["field"], image, human, found)
    return rows


def manual_conventions(paths: list[str], plan: RealPlan) -> list[dict]:
    """How wide each manual field's human mask is drawn: its area against the annotator's foreground."""
    from mask2former.annotate import AnnotatorParams, annotate_instances

    side = round(REFERENCE_SIZE * plan.pixel_scale)
    rows = []
    for path in paths:
        image, human = load_field(path, side)
        masks = annotate_instances(image, AnnotatorParams(scale=plan.pixel_scale)).masks
        annotated = masks.any(axis=0) if len(masks) else np.zeros_like(human)
        rows.append(
            {
                "field": os.path.basename(path).replace("_myosin.png", ""),
                "human_px": int(human.sum()),
                "annotator_px": int(annotated.sum()),
                "human_over_annotator_area": float(human.sum() / max(1, annotated.sum())),
            }
        )
    return rows


def summarize(rows: list[dict]) -> dict:
    out = {}
    # METHODS first, in their order; other benches score models of their own names.
    methods = [m for m in METHODS if rows and m in rows[0]]
    methods += [m for m in (rows[0] if rows else ()) if m not in methods and m != "field"]
    for m in methods:
        tubes = sum(r[m]["tubes"] for r in rows)
        out[m] = {
            "mean_iou": float(np.mean([r[m]["iou"] for r in rows])),
            "mean_dice": float(np.mean([r[m]["dice"] for r in rows])),
            "mean_pixel_precision": float(np.mean([r[m]["precision"] for r in rows])),
            "mean_pixel_recall": float(np.mean([r[m]["recall"] for r in rows])),
            "isolated_tubes": tubes,
            "isolated_match_rate": sum(r[m]["matched"] for r in rows) / tubes if tubes else None,
            "pieces_per_isolated_tube": sum(r[m]["pieces"] for r in rows) / tubes if tubes else None,
            "instances_per_field": float(np.mean([r[m]["instances"] for r in rows])),
        }
        if "unmatched" in rows[0][m]:
            out[m]["unmatched_isolated_tubes"] = {
                cause: sum(r[m]["unmatched"][cause] for r in rows) for cause in UNMATCHED_CAUSES
            }
        if "cut_tubes" in rows[0][m]:
            cut = sum(r[m]["cut_tubes"] for r in rows)
            at_border = sum(r[m]["cut_at_tile_border"] for r in rows)
            outline = sum(r[m]["outline_px"] for r in rows)
            out[m].update(
                {
                    "cut_isolated_tubes": cut,
                    "cut_at_tile_border": at_border,
                    "cut_inside_tile": cut - at_border,
                    "share_of_outline_on_tile_borders": sum(r[m]["outline_on_tile_border_px"] for r in rows)
                    / outline
                    if outline
                    else None,
                }
            )
        if "seconds" in rows[0][m]:
            out[m]["predict_seconds_per_field"] = float(np.mean([r[m]["seconds"] for r in rows]))
    return out


def write_overlays(
    figure_dir: str, field: str, image: np.ndarray, human: np.ndarray, found: dict[str, np.ndarray]
) -> None:
    """One picture per method: its instances in colour, the human mask's outline in white."""
    from mask2former.data.io import to_uint8_display
    from mask2former.inference.export import instance_colors, write_png

    os.makedirs(figure_dir, exist_ok=True)
    grey = to_uint8_display(image)
    base = np.repeat(grey[..., None], 3, axis=2) if grey.ndim == 2 else grey
    outline = cv2.morphologyEx(human.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    panels = []
    for method, masks in found.items():
        rgb = base.astype(np.float32) * 0.6
        for colour, m in zip(instance_colors(len(masks)), masks):
            rgb[m] = 0.4 * rgb[m] + 0.6 * np.asarray(colour, np.float32)
        rgb[outline] = 255
        picture = rgb.clip(0, 255).astype(np.uint8)
        write_png(os.path.join(figure_dir, f"{field}_{method}.png"), picture)
        panels.append((method, picture))
    _write_panel(os.path.join(figure_dir, f"{field}_all.png"), field, grey, panels)


def _write_panel(path: str, field: str, grey: np.ndarray, panels: list[tuple[str, np.ndarray]]) -> None:
    """All methods side by side, with the image, for the docs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(3 * (len(panels) + 1), 3.3), dpi=100)
    axes[0].imshow(grey, cmap="gray")
    axes[0].set_title(field, fontsize=8)
    for ax, (method, picture) in zip(axes[1:], panels):
        ax.imshow(picture)
        ax.set_title(LABELS[method], fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def markdown(summary: dict, title: str) -> str:
    lines = [
        f"**{title}**",
        "",
        "| method | mean IoU | mean Dice | pixel precision | pixel recall | isolated tubes matched "
        "| pieces per isolated tube |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, s in summary.items():
        rate = "-" if s["isolated_match_rate"] is None else f"{s['isolated_match_rate']:.3f}"
        pieces = "-" if s["pieces_per_isolated_tube"] is None else f"{s['pieces_per_isolated_tube']:.2f}"
        lines.append(
            f"| {LABELS[m]} | {s['mean_iou']:.3f} | {s['mean_dice']:.3f} | {s['mean_pixel_precision']:.3f} "
            f"| {s['mean_pixel_recall']:.3f} | {rate} | {pieces} |"
        )
    tiled = {m: s for m, s in summary.items() if "cut_isolated_tubes" in s}
    if tiled:
        lines += [
            "",
            "| model | isolated tubes cut | pieces meet at a tile border | inside a tile "
            "| share of instance outlines on tile borders |",
            "|---|---|---|---|---|",
        ]
        for m, s in tiled.items():
            share = (
                "-"
                if s["share_of_outline_on_tile_borders"] is None
                else f"{s['share_of_outline_on_tile_borders']:.3f}"
            )
            lines.append(
                f"| {LABELS[m]} | {s['cut_isolated_tubes']} | {s['cut_at_tile_border']} "
                f"| {s['cut_inside_tile']} | {share} |"
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def run(args) -> dict:
    plan = PRESETS["quick" if args.quick else args.preset]
    try:
        plan = with_settings(plan, args.set)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    t_start = time.perf_counter()
    fields = list_fields(args.data)
    if not fields:
        print(f"no real fields under {args.data}: skipped")
        return {}
    splits = split_fields(fields, plan)
    work = os.path.abspath(args.work)
    dataset = os.path.join(work, dataset_folder_name(splits, plan))
    if not os.path.isfile(os.path.join(dataset, "done")):
        shutil.rmtree(dataset, ignore_errors=True)
        t0 = time.perf_counter()
        counts = build_dataset(dataset, splits, plan)
        counts["seconds"] = round(time.perf_counter() - t0, 1)
        with open(os.path.join(dataset, "done"), "w") as f:
            json.dump(counts, f)
    with open(os.path.join(dataset, "done")) as f:
        counts = json.load(f)
    dataset_seconds = counts.pop("seconds", None)
    print(
        f"Stage 1 pool {counts['pool']}, manual {counts['manual']}, held-out {len(splits['heldout'])} fields",
        flush=True,
    )
    train_seconds = train_models(work, dataset, plan, args.seed)
    models = {m: os.path.join(work, m) for m in planned_models(plan)}
    scored = {"base": plan.weights, **models} if plan.weights else models
    if args.methods:
        scored = {m: w for m, w in scored.items() if m in args.methods}
    predict_opts = tuple(args.predict_opts)
    t_score = time.perf_counter()
    figure_dir = os.path.join(work, "figures") if args.figures is None else args.figures
    heldout_rows = score_fields(
        splits["heldout"], plan, scored, figure_dir, predict_opts, tuple(args.figure_fields)
    )
    result = {
        "preset": "quick" if args.quick else args.preset,
        "plan": asdict(plan),
        "seed": args.seed,
        "data": os.path.abspath(args.data),
        "splits": {k: [os.path.basename(p) for p in v] for k, v in splits.items()},
        "label_counts": counts,
        "train_seconds": train_seconds,
        "predict_opts": list(predict_opts),
        "heldout": summarize(heldout_rows),
        "per_field": {"heldout": heldout_rows},
        "manual_field_masks": manual_conventions(splits["manual"], plan),
    }
    if args.score_pool:
        pool_rows = score_fields(splits["pool"], plan, scored, None, predict_opts)
        result["pool"] = summarize(pool_rows)
        result["per_field"]["pool"] = pool_rows
    for extra in args.heldout:
        rows = score_fields(list_fields(extra), plan, scored, None, predict_opts)
        result.setdefault("extra_heldout", {})[os.path.abspath(extra)] = summarize(rows)
    result["score_seconds"] = round(time.perf_counter() - t_score, 1)
    result["wall_seconds_this_call"] = round(time.perf_counter() - t_start, 1)
    # Dataset, training and scoring as one uninterrupted run would take (cached steps included).
    result["dataset_seconds"] = dataset_seconds
    result["total_seconds"] = round(
        (dataset_seconds or 0) + sum(train_seconds.values()) + result["score_seconds"], 1
    )
    if args.output:
        for m, out in models.items():
            dest = os.path.join(args.output, m)
            os.makedirs(dest, exist_ok=True)
            for name in (FINAL, "config.yaml"):
                shutil.copy(os.path.join(out, name), os.path.join(dest, name))
    text = markdown(result["heldout"], f"Held-out half ({len(heldout_rows)} fields)")
    if "pool" in result:
        text += "\n\n" + markdown(
            result["pool"], "Stage 1 pool (fields Stage 1 trained on, with the annotator's labels)"
        )
    print("\n" + text, flush=True)
    result["markdown"] = text
    suffix = "" if result["preset"] == "cpu" else f"_{result['preset']}"
    write_results(
        args.out or os.path.join(REPO_ROOT, "bench", "results", f"real_two_stage{suffix}.json"), result
    )
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument(
        "--quick", action="store_true", help="3 fields and a few iterations: every step, in a minute"
    )
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder of *_myosin.png + *_myotube_mask.png")
    parser.add_argument(
        "--heldout",
        action="append",
        default=[],
        metavar="DIR",
        help="another held-out folder in the same layout (repeatable)",
    )
    parser.add_argument(
        "--work",
        default=os.path.join(REPO_ROOT, "output_bench", "real_two_stage"),
        help="dataset and training folders (reused by a rerun of the same settings; "
        "other settings are refused)",
    )
    parser.add_argument("--output", help="keep each model as OUTPUT/<method>/model_final.pth + config.yaml")
    parser.add_argument("--figures", help="folder for the overlay pictures (default: WORK/figures)")
    parser.add_argument(
        "--figure-fields",
        nargs="*",
        default=[],
        metavar="FIELD",
        help="held-out fields to draw, by name without _myosin.png (default: the first)",
    )
    parser.add_argument(
        "--score-pool", action="store_true", help="also score the Stage 1 pool fields (the tuning half)"
    )
    parser.add_argument(
        "--methods",
        nargs="*",
        choices=("base", *MODELS),
        metavar="MODEL",
        help="score only these models (the annotator and the threshold are always scored)",
    )
    parser.add_argument(
        "--predict-opts",
        nargs="*",
        default=[],
        metavar="KEY VALUE",
        help="config settings for prediction only, on every scored model, e.g. INFERENCE.JOIN_PIECES True",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="change a field of the preset, e.g. --set stage1_iters=3000",
    )
    parser.add_argument("--out", help="results JSON (default bench/results/real_two_stage[_PRESET].json)")
    exit_on_sigterm()
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
