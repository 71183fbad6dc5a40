"""Benchmark of the classical annotator: real fields, synthetic fields, speed.

Real data (skipped cleanly if absent): the human myotube masks of the QA-skMCs fields
(../shared/data/qa-skmcs-train). Fields are resized to 1500 px (the toolkit's resolution); the
annotator's union of instances is compared pixel-wise (IoU, Dice) with the human mask, next to two
plain baselines computed on the same fields: Gaussian blur + triangle threshold, and + Otsu.
Instance F1@0.5 is measured on *single-myotube regions* only, because touching myotubes share one
region in the human mask (see docs/annotator.md for the definition).

Synthetic data: COCO mask AP / AP50, F1@0.5 and semantic IoU against the exact ground truth of
generated fields, per density level.

Speed: seconds per 1500x1500 image on one core (OpenCV threads = 1), and images/s with one worker
process per core.

    python -m bench.annotator [--data DIR] [--limit N] [--quick] [--figures]
        [--out bench/results/annotator.json]
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import cv2
import numpy as np

from bench.common import REPO_ROOT, write_results
from mask2former.utils.processes import worker_context

DEFAULT_DATA = os.path.join(REPO_ROOT, "..", "shared", "data", "qa-skmcs-train")
RESOLUTION = 1500


# --------------------------------------------------------------------------- real fields


def real_fields(data_dir: str, limit: int | None = None) -> list[str]:
    """Myosin images that have a human myotube mask, sorted by name."""
    paths = sorted(glob.glob(os.path.join(data_dir, "*_myosin.png")))
    paths = [p for p in paths if os.path.isfile(p.replace("_myosin.png", "_myotube_mask.png"))]
    return paths[:limit] if limit else paths


def load_real(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(image, human mask) at the toolkit's resolution."""
    from mask2former.annotate.batch import resize_longest
    from mask2former.data.io import read_image

    image = resize_longest(read_image(path), RESOLUTION)
    human = read_image(path.replace("_myosin.png", "_myotube_mask.png"))
    if human.ndim == 3:
        human = human.max(axis=2)
    human = (
        cv2.resize((human > 0).astype(np.uint8), image.shape[::-1][:2], interpolation=cv2.INTER_NEAREST) > 0
    )
    return image, human


def baseline_masks(image: np.ndarray) -> dict[str, np.ndarray]:
    """The two plain baselines: Gaussian blur (sigma 2 px at 1500 px) + triangle / Otsu threshold."""
    from skimage.filters import threshold_otsu, threshold_triangle

    from mask2former.annotate.foreground import normalize_intensity

    blurred = cv2.GaussianBlur(normalize_intensity(image), (0, 0), 2.0 * max(image.shape[:2]) / RESOLUTION)
    return {"triangle": blurred > threshold_triangle(blurred), "otsu": blurred > threshold_otsu(blurred)}


def single_myotube_regions(human: np.ndarray, min_area: int) -> tuple[np.ndarray, np.ndarray]:
    """Split the human mask's connected regions into single-myotube regions (skeleton without a
    branch point after a light smoothing, area >= min_area) and the rest. Returns
    ((K, H, W) bool single regions, (H, W) bool union of all other regions)."""
    from skimage.morphology import skeletonize

    n, labels, stats, _ = cv2.connectedComponentsWithStats(human.astype(np.uint8), connectivity=8)
    singles, others = [], np.zeros_like(human)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        region = labels == i
        if area < min_area:
            others |= region
            continue
        crop = (labels[y : y + h, x : x + w] == i).astype(np.uint8)
        smooth = cv2.morphologyEx(np.pad(crop, 4), cv2.MORPH_OPEN, kernel)
        skeleton = skeletonize(smooth > 0)
        neighbours = cv2.filter2D(
            skeleton.astype(np.uint8), -1, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT
        )
        branch_points = int((skeleton & (neighbours >= 4)).sum())
        if branch_points == 0 and skeleton.any():
            singles.append(region)
        else:
            others |= region
    stack = np.stack(singles) if singles else np.zeros((0,) + human.shape, bool)
    return stack, others


ERROR_CLASSES = (
    "missed_regions",
    "boundary_fn",
    "interior_fn",
    "false_regions",
    "boundary_fp",
    "interior_fp",
)


def error_breakdown(human: np.ndarray, pred: np.ndarray, band_px: float) -> dict[str, int]:
    """Pixel counts of where a predicted semantic mask disagrees with the human mask.

    Missed pixels (human, not predicted) are split into ``missed_regions`` (human regions the
    prediction does not touch at all), ``boundary_fn`` (within ``band_px`` of the prediction: the
    outline drawn wider) and ``interior_fn`` (farther: faint parts of tubes the prediction found
    elsewhere). Extra pixels are split the same way into ``false_regions``, ``boundary_fp`` and
    ``interior_fp``. With ``intersection`` they add up to the union, so each divided by the union
    is the share of IoU lost to that kind of error.
    """
    human, pred = human.astype(bool), pred.astype(bool)
    size = 2 * int(round(band_px)) + 1
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    out = {"intersection": int((human & pred).sum())}
    for label, ref, other, prefix in (
        ("fn", human, pred, "missed_regions"),
        ("fp", pred, human, "false_regions"),
    ):
        wrong = ref & ~other
        _, regions = cv2.connectedComponents(ref.astype(np.uint8), connectivity=8)
        touched = np.zeros(regions.max() + 1, bool)
        touched[np.unique(regions[ref & other])] = True
        untouched = wrong & ~touched[regions]
        near = wrong & ~untouched & (cv2.dilate(other.astype(np.uint8), disc) > 0)
        out[prefix] = int(untouched.sum())
        out[f"boundary_{label}"] = int(near.sum())
        out[f"interior_{label}"] = int((wrong & ~untouched & ~near).sum())
    return out


def _real_one(path: str) -> dict:
    from mask2former.annotate import annotate_image
    from mask2former.evaluation.metrics import instance_f1, semantic_iou_dice_binary

    image, human = load_real(path)
    t0 = time.perf_counter()
    masks = annotate_image(image)
    seconds = time.perf_counter() - t0
    union = masks.any(axis=0) if len(masks) else np.zeros_like(human)
    row = {
        "field": os.path.basename(path).replace("_myosin.png", ""),
        "human_empty": not human.any(),
        "seconds": seconds,
    }
    for name, pred in {"annotator": union, **baseline_masks(image)}.items():
        sem = semantic_iou_dice_binary(human, pred)
        row[name] = {
            "iou": sem["iou"],
            "dice": sem["dice"],
            "intersection": sem["intersection"],
            "union": sem["union"],
            "sum": sem["sum"],
        }
    scale = max(image.shape[:2]) / RESOLUTION
    row["errors"] = error_breakdown(human, union, band_px=4 * scale)
    singles, others = single_myotube_regions(human, min_area=int(300 * scale**2))
    # Predictions touching a multi-myotube region cannot be judged against this mask: left out.
    judged = [m for m in masks if not (m & others).any()]
    pred = np.stack(judged) if judged else np.zeros((0,) + human.shape, bool)
    f1 = instance_f1(singles, pred)
    row["single_regions"] = {
        "gt": len(singles),
        "pred": len(pred),
        "tp": f1["tp"],
        "fp": f1["fp"],
        "fn": f1["fn"],
    }
    return row


def evaluate_real(data_dir: str, limit: int | None, workers: int) -> dict | None:
    paths = real_fields(data_dir, limit)
    if not paths:
        print(f"real data: none found in {data_dir}; skipped")
        return None
    from tqdm import tqdm

    with ProcessPoolExecutor(
        max_workers=workers, initializer=_one_thread, mp_context=worker_context()
    ) as pool:
        rows = list(tqdm(pool.map(_real_one, paths), total=len(paths), desc="real fields", file=sys.stderr))
    methods = ("annotator", "triangle", "otsu")
    annotated = [r for r in rows if not r["human_empty"]]

    def summary(subset: list[dict]) -> dict:
        out = {}
        for m in methods:
            ious = [r[m]["iou"] for r in subset]
            dices = [r[m]["dice"] for r in subset]
            inter = sum(r[m]["intersection"] for r in subset)
            union = sum(r[m]["union"] for r in subset)
            total = sum(r[m]["sum"] for r in subset)
            out[m] = {
                "mean_iou": float(np.mean(ious)) if ious else None,
                "mean_dice": float(np.mean(dices)) if dices else None,
                "pooled_iou": inter / union if union else None,
                "pooled_dice": 2 * inter / total if total else None,
            }
        return out

    # Pooled over the annotated fields: the share of the union each kind of error takes.
    union_total = sum(r["annotator"]["union"] for r in annotated)
    errors = (
        {k: sum(r["errors"][k] for r in annotated) / union_total for k in ERROR_CLASSES}
        if union_total
        else None
    )
    tp = sum(r["single_regions"]["tp"] for r in rows)
    fp = sum(r["single_regions"]["fp"] for r in rows)
    fn = sum(r["single_regions"]["fn"] for r in rows)
    # The parameters were tuned on every other field (even positions in the name-sorted list of
    # fields with a non-empty human mask); the others were only used to check.
    tuning = annotated[0::2] if limit is None else []
    held_out = annotated[1::2] if limit is None else []
    return {
        "data": os.path.abspath(data_dir),
        "fields": len(rows),
        "fields_with_human_mask": len(annotated),
        "resolution": RESOLUTION,
        "semantic": summary(annotated),
        "semantic_all_fields_including_empty_human_mask": summary(rows),
        "semantic_tuning_half": summary(tuning) if tuning else None,
        "semantic_held_out_half": summary(held_out) if held_out else None,
        "annotator_error_shares": errors,
        "single_myotube_instances": {
            "gt": tp + fn,
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
        },
        "seconds_per_field_in_workers": float(np.mean([r["seconds"] for r in rows])),
        "per_field": [
            {
                "field": r["field"],
                **{m: round(r[m]["iou"], 4) for m in methods},
                "single_regions": r["single_regions"],
                "errors": r["errors"],
            }
            for r in rows
        ],
    }


# --------------------------------------------------------------------------- synthetic fields


def _synthetic_one(task: tuple[str, int, int]) -> tuple[str, np.ndarray, object]:
    from mask2former.annotate import AnnotatorParams, annotate_instances
    from mask2former.data.synthetic import generate_field

    density, seed, size = task
    field = generate_field(size, seed=seed, density=density)
    return density, field.masks, annotate_instances(field.image, AnnotatorParams(scale=1.0))


def evaluate_synthetic(per_level: int, size: int, workers: int) -> dict:
    from tqdm import tqdm

    from mask2former.data.synthetic import DENSITY_LEVELS
    from mask2former.evaluation.metrics import coco_mask_ap, instance_f1, semantic_iou_dice

    tasks = [
        (level, 10_000 + 100 * k + i, size)
        for k, level in enumerate(DENSITY_LEVELS)
        for i in range(per_level)
    ]
    with ProcessPoolExecutor(
        max_workers=workers, initializer=_one_thread, mp_context=worker_context()
    ) as pool:
        done = list(
            tqdm(pool.map(_synthetic_one, tasks), total=len(tasks), desc="synthetic fields", file=sys.stderr)
        )
    out = {"size": size, "fields_per_level": per_level, "pixel_scale": 1.0, "levels": {}}
    for level, coverage in DENSITY_LEVELS.items():
        gts = [g for lv, g, _ in done if lv == level]
        preds = [p for lv, _, p in done if lv == level]
        ap = coco_mask_ap(gts, preds)
        tp = fp = fn = 0
        ious = []
        for g, p in zip(gts, preds):
            f = instance_f1(g, p.masks)
            tp, fp, fn = tp + f["tp"], fp + f["fp"], fn + f["fn"]
            ious.append(semantic_iou_dice(g, p.masks, shape=g.shape[1:])["iou"])
        out["levels"][level] = {
            "coverage": coverage,
            "gt_instances": int(sum(len(g) for g in gts)),
            "pred_instances": int(sum(len(p) for p in preds)),
            "AP": ap["AP"],
            "AP50": ap["AP50"],
            "AP75": ap["AP75"],
            "f1@0.5": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
            "precision@0.5": tp / (tp + fp) if tp + fp else 1.0,
            "recall@0.5": tp / (tp + fn) if tp + fn else 1.0,
            "mean_semantic_iou": float(np.mean(ious)),
        }
    return out


# --------------------------------------------------------------------------- realism


def _field_statistics(image: np.ndarray, truth: np.ndarray) -> dict:
    from skimage.morphology import skeletonize

    from mask2former.annotate.foreground import normalize_intensity

    img = normalize_intensity(image) * 255.0
    stats = {
        "coverage": float(truth.mean()),
        "background_median": float(np.median(img[~truth])),
        "p99": float(np.percentile(img, 99)),
    }
    if truth.any():
        stats["in_mask_mean"] = float(img[truth].mean())
        radius = cv2.distanceTransform(truth.astype(np.uint8), cv2.DIST_L2, 5)
        stats["widths"] = (2 * radius[skeletonize(truth)]).tolist()
    return stats


def _quartiles(values: list[float]) -> list[float]:
    return [round(float(v), 2) for v in np.percentile(values, [10, 25, 50, 75, 90])] if values else []


def realism(data_dir: str, n_real: int, n_synthetic: int) -> dict:
    """Real fields (human masks) next to synthetic 1500 px fields (ground truth): widths along the
    skeleton, covered fraction, intensities in 8-bit units. Percentiles 10/25/50/75/90 over fields
    (widths: over skeleton pixels)."""
    from mask2former.data.synthetic import DENSITY_LEVELS, generate_field

    out = {}
    paths = real_fields(data_dir)
    sets = {}
    if paths:
        step = max(1, len(paths) // n_real)
        sets["real"] = [load_real(p) for p in paths[::step][:n_real]]
    levels = list(DENSITY_LEVELS)
    sets["synthetic"] = []
    for i in range(n_synthetic):
        f = generate_field(RESOLUTION, seed=500 + i, density=levels[i % len(levels)])
        sets["synthetic"].append((f.image, f.masks.any(axis=0)))
    for name, fields in sets.items():
        rows = [_field_statistics(img, truth) for img, truth in fields]
        out[name] = {
            "fields": len(rows),
            "width_px": _quartiles([w for r in rows for w in r.get("widths", [])]),
            "coverage": _quartiles([r["coverage"] for r in rows]),
            "in_mask_mean": _quartiles([r["in_mask_mean"] for r in rows if "in_mask_mean" in r]),
            "background_median": _quartiles([r["background_median"] for r in rows]),
            "p99": _quartiles([r["p99"] for r in rows]),
        }
    return out


# --------------------------------------------------------------------------- speed


def _one_thread() -> None:
    cv2.setNumThreads(1)


def _annotate_timed(image: np.ndarray) -> float:
    from mask2former.annotate import annotate_image

    t0 = time.perf_counter()
    annotate_image(image)
    return time.perf_counter() - t0


def speed_images(data_dir: str, n: int) -> tuple[list[np.ndarray], str]:
    paths = real_fields(data_dir)
    if paths:
        step = max(1, len(paths) // n)
        return [load_real(p)[0] for p in paths[::step][:n]], "real fields resized to 1500 px"
    from mask2former.data.synthetic import generate_field

    return [
        generate_field(RESOLUTION, seed=50 + i, density="medium").image for i in range(n)
    ], "synthetic medium-density 1500 px fields"


def evaluate_speed(data_dir: str, n_images: int, repeats: int, workers: int) -> dict:
    images, source = speed_images(data_dir, n_images)
    _one_thread()
    _annotate_timed(images[0])  # warm-up: imports, allocator
    times = [_annotate_timed(img) for _ in range(repeats) for img in images]
    batch = images * max(1, (2 * workers) // len(images) + 1)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(
        max_workers=workers, initializer=_one_thread, mp_context=worker_context()
    ) as pool:
        list(pool.map(_annotate_timed, batch))
    wall = time.perf_counter() - t0
    return {
        "source": source,
        "image_size": list(images[0].shape[:2]),
        "seconds_per_image_one_core": {
            "median": float(np.median(times)),
            "mean": float(np.mean(times)),
            "max": float(np.max(times)),
        },
        "all_cores": {
            "workers": workers,
            "images": len(batch),
            "images_per_second": len(batch) / wall,
            "wall_seconds": wall,
        },
    }


# --------------------------------------------------------------------------- figures


def _stretch(image: np.ndarray) -> np.ndarray:
    from mask2former.annotate.foreground import normalize_intensity

    img = normalize_intensity(image)
    lo, hi = np.percentile(img, [0.5, 99.7])
    return (np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)


def _colour_instances(masks: np.ndarray, shape: tuple[int, int], seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros(shape + (3,), np.float32)
    count = np.zeros(shape, np.float32)
    for m in masks:
        out[m] += rng.uniform(70, 255, 3)
        count[m] += 1
    out /= np.maximum(count, 1)[..., None]
    out[count > 1] = 255  # overlaps (crossings) in white
    return out.astype(np.uint8)


def write_figures(data_dir: str, out_dir: str) -> list[str]:
    """docs/images/annotator_examples.png (real_vs_synthetic.png comes from bench/realism.py)."""
    from mask2former.annotate import AnnotatorParams, annotate_image
    from mask2former.data.synthetic import generate_field

    os.makedirs(out_dir, exist_ok=True)
    panel = 480
    small = lambda img: cv2.resize(img, (panel, panel), interpolation=cv2.INTER_AREA)  # noqa: E731
    synthetic = generate_field(RESOLUTION, seed=7, density="medium")
    written = []
    paths = real_fields(data_dir)
    real_path = next((p for p in paths if "17M_100_mM_Dex_XY02" in p), paths[0] if paths else None)
    if real_path:
        image, human = load_real(real_path)

    def gray(img):
        return cv2.cvtColor(small(_stretch(img)), cv2.COLOR_GRAY2BGR)

    def colour(masks, shape):
        return cv2.resize(_colour_instances(masks, shape), (panel, panel), interpolation=cv2.INTER_NEAREST)

    rows = []
    syn_pred = annotate_image(synthetic.image, AnnotatorParams(scale=1.0))
    rows.append(
        np.hstack(
            [
                gray(synthetic.image),
                colour(synthetic.masks, synthetic.image.shape),
                colour(syn_pred, synthetic.image.shape),
            ]
        )
    )
    if real_path:
        real_pred = annotate_image(image)
        rows.append(
            np.hstack([gray(image), colour(human[None], human.shape), colour(real_pred, human.shape)])
        )
    figure = np.vstack(rows)
    path = os.path.join(out_dir, "annotator_examples.png")
    cv2.imwrite(path, figure, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    written.append(path)
    return written


# --------------------------------------------------------------------------- report


def markdown(results: dict) -> str:
    lines = []
    real = results.get("real")
    if real:
        sem = real["semantic"]
        lines += [
            f"Real fields ({real['fields_with_human_mask']} QA-skMCs fields with a human mask, "
            f"{real['resolution']} px):",
            "",
            "| method | mean IoU | mean Dice | pooled IoU | tuning half mean IoU | held-out half mean IoU |",
            "|---|---|---|---|---|---|",
        ]
        halves = real["semantic_tuning_half"] is not None
        names = {
            "annotator": "classical annotator",
            "triangle": "Gaussian blur + triangle",
            "otsu": "Gaussian blur + Otsu",
        }
        for m, label in names.items():
            s = sem[m]
            lines.append(
                f"| {label} | {s['mean_iou']:.3f} | {s['mean_dice']:.3f} | {s['pooled_iou']:.3f} | "
                + (
                    f"{real['semantic_tuning_half'][m]['mean_iou']:.3f} | "
                    f"{real['semantic_held_out_half'][m]['mean_iou']:.3f} |"
                    if halves
                    else "- | - |"
                )
            )
        inst = real["single_myotube_instances"]
        err = real.get("annotator_error_shares")
        if err:
            lines += [
                "",
                "Annotator vs human, share of the pooled union (IoU lost to each kind of error): "
                + ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in err.items()),
            ]
        lines += [
            "",
            f"Single-myotube regions: F1@0.5 {inst['f1']:.3f} (precision {inst['precision']:.3f}, "
            f"recall {inst['recall']:.3f}; {inst['gt']} regions)",
            "",
        ]
    syn = results["synthetic"]
    lines += [
        f"Synthetic fields ({syn['fields_per_level']} per level, {syn['size']} px, pixel scale 1):",
        "",
        "| density (covered fraction) | myotubes | AP | AP50 | F1@0.5 | semantic IoU |",
        "|---|---|---|---|---|---|",
    ]
    for level, s in syn["levels"].items():
        lines.append(
            f"| {level} ({s['coverage']:.2f}) | {s['gt_instances']} | {s['AP']:.1f} | {s['AP50']:.1f} | "
            f"{s['f1@0.5']:.3f} | {s['mean_semantic_iou']:.3f} |"
        )
    rl = results.get("realism", {})
    if rl:
        lines += [
            "",
            "Real vs synthetic fields at 1500 px (percentiles 10/25/50/75/90; intensities in 8-bit units):",
            "",
            "| statistic | " + " | ".join(f"{k} ({v['fields']} fields)" for k, v in rl.items()) + " |",
            "|---|" + "---|" * len(rl),
        ]
        for key, label in (
            ("width_px", "width along the skeleton (px)"),
            ("coverage", "covered fraction"),
            ("in_mask_mean", "mean intensity inside myotubes"),
            ("background_median", "background median"),
            ("p99", "99th percentile"),
        ):
            lines.append(
                f"| {label} | " + " | ".join(" / ".join(f"{x:g}" for x in v[key]) for v in rl.values()) + " |"
            )
    sp = results["speed"]
    lines += [
        "",
        f"Speed ({sp['source']}, {sp['image_size'][0]}x{sp['image_size'][1]}): "
        f"{sp['seconds_per_image_one_core']['median']:.2f} s per image on one core (median); "
        f"{sp['all_cores']['images_per_second']:.2f} images/s with {sp['all_cores']['workers']} "
        "worker processes "
        f"({results['machine']['cpu_count']} cores).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", default=DEFAULT_DATA, help="real fields folder (default ../shared/data/qa-skmcs-train)"
    )
    parser.add_argument("--limit", type=int, default=None, help="use only the first N real fields")
    parser.add_argument(
        "--synthetic-per-level",
        type=int,
        default=10,
        help="synthetic fields per density level (default %(default)s)",
    )
    parser.add_argument(
        "--synthetic-size", type=int, default=1024, help="synthetic field side (default %(default)s)"
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 4 real fields, 2 small synthetic fields per level"
    )
    parser.add_argument(
        "--figures", action="store_true", help="also write docs/images/annotator_examples.png"
    )
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "bench", "results", "annotator.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.limit = args.limit or 4
        args.synthetic_per_level, args.synthetic_size = 2, 384

    results: dict = {"quick": bool(args.quick)}
    results["real"] = evaluate_real(args.data, args.limit, args.workers)
    results["synthetic"] = evaluate_synthetic(args.synthetic_per_level, args.synthetic_size, args.workers)
    results["speed"] = evaluate_speed(args.data, 2 if args.quick else 4, 1 if args.quick else 2, args.workers)
    results["realism"] = realism(args.data, 4 if args.quick else 20, 3 if args.quick else 12)
    if args.figures:
        results["figures"] = [
            os.path.relpath(p, REPO_ROOT)
            for p in write_figures(args.data, os.path.join(REPO_ROOT, "docs", "images"))
        ]
    from bench.common import machine_info

    results["machine"] = machine_info()
    results["markdown"] = markdown(results)
    write_results(args.out, results)
    print(results["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
