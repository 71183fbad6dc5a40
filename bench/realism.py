"""How far generated fields are from real ones: the ``classic`` and the ``realistic`` generator preset
against the real QA-skMCs fields, statistic by statistic.

Sets: real fields (resized to 1500 px, evenly spaced over the name-sorted list, with their human
semantic masks) and fields of each preset of :data:`mask2former.data.synthetic.GENERATOR_PRESETS`
(1500 px at pixel scale 1, the same seeds and the same sparse/medium/dense mix for both presets).

Statistics, each summarised as percentiles 10/25/50/75/90:

- field statistics (as ``bench/annotator.py``): covered fraction, mean intensity inside the
  semantic mask, background median and 99th percentile (8-bit units after
  ``normalize_intensity``), one value per field; widths (``2 x`` distance transform) at the
  skeleton pixels of the semantic mask, one value per skeleton pixel. Semantic mask: the human
  mask for real fields, the union of the ground-truth masks for generated ones.
- morphology of the classical annotator's instances (``AnnotatorParams(scale=1.0)``), measured the
  same way on real and generated fields with :func:`mask2former.measure.morphology.analyze_shape`:
  per tube its median width, its length (longest skeleton path, tip to tip) and its branch points;
  per field the number of tubes. The same morphology of the generated fields' ground-truth
  instances is reported for information (no real counterpart).

Distance of a generated set to the real set, per statistic: the 1-D Wasserstein distance between
the two samples divided by the real sample's interquartile range (0 = same distribution, 1 = off
by about one IQR; a statistic whose real IQR is 0 is scaled by its standard deviation instead),
and the two-sample Kolmogorov-Smirnov statistic. One process, one thread (run it alone: see
docs/annotator.md); torch is never imported. Real data absent: a message, nothing written.

    OMP_NUM_THREADS=1 OPENCV_NUM_THREADS=1 python -m bench.realism [--data DIR] [--real 20]
        [--synthetic 20] [--quick] [--out bench/results/realism.json]
        [--figure docs/images/real_vs_synthetic.png]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import cv2
import numpy as np

from bench.common import REPO_ROOT, write_results

RESOLUTION = 1500
PERCENTILES = (10, 25, 50, 75, 90)
FIGURE_FIELD = "17M_100_mM_Dex_XY02"  # the real field shown in docs/images/real_vs_synthetic.png
FIGURE_SEED = 7  # the generated fields shown next to it (medium density)

# (key, label, unit of the sample): the statistics compared, in table order.
STATISTICS = (
    ("coverage", "covered fraction (semantic mask)", "field"),
    ("in_mask_mean", "mean intensity inside the mask", "field"),
    ("background_median", "background median", "field"),
    ("p99", "99th percentile intensity", "field"),
    ("mask_width", "width along the mask skeleton (px)", "skeleton pixel"),
    ("tube_width", "annotator tube median width (px)", "tube"),
    ("tube_length", "annotator tube length (px)", "tube"),
    ("tube_branch_points", "annotator tube branch points", "tube"),
    ("tubes_per_field", "annotator tubes per field", "field"),
)
TRUTH_STATISTICS = (
    ("tube_width", "median width (px)"),
    ("tube_length", "length (px)"),
    ("tube_branch_points", "branch points"),
    ("tubes_per_field", "tubes per field"),
)


# --------------------------------------------------------------------------- distances


def _round(value: float, digits: int = 4) -> float:
    """``digits`` significant digits (JSON stays readable; the table prints fewer)."""
    value = float(value)
    if value == 0 or not np.isfinite(value):
        return value
    return round(value, max(0, digits - 1 - int(np.floor(np.log10(abs(value))))))


def percentiles(values) -> list[float]:
    values = np.asarray(values, float)
    return [_round(v) for v in np.percentile(values, PERCENTILES)] if len(values) else []


def spread(real) -> tuple[float, str]:
    """The real sample's scale: its IQR, or its standard deviation where the IQR is 0 (a count
    that is mostly one value), or 1 where both are 0."""
    real = np.asarray(real, float)
    q25, q75 = np.percentile(real, [25, 75])
    if q75 > q25:
        return float(q75 - q25), "iqr"
    std = float(real.std())
    return (std, "std") if std > 0 else (1.0, "unit")


def distance(real, synthetic) -> dict | None:
    """Wasserstein-1 distance between the samples over the real sample's spread, and the KS
    statistic. None when either sample is empty."""
    from scipy.stats import ks_2samp, wasserstein_distance

    real, synthetic = np.asarray(real, float), np.asarray(synthetic, float)
    if not len(real) or not len(synthetic):
        return None
    scale, kind = spread(real)
    return {
        "wasserstein_over_spread": _round(wasserstein_distance(real, synthetic) / scale),
        "ks": _round(ks_2samp(real, synthetic).statistic),
        "spread": _round(scale),
        "spread_kind": kind,
        "median_shift": _round(np.median(synthetic) - np.median(real)),
    }


# --------------------------------------------------------------------------- measurements


def _morphology(masks: np.ndarray) -> list[dict]:
    """Median width, length and branch points of each (full-frame) mask."""
    from mask2former.measure.morphology import analyze_shape

    rows = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        if not len(ys):
            continue
        shape = analyze_shape(mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])
        rows.append(
            {"width": shape.width_median, "length": shape.length, "branch_points": shape.branch_points}
        )
    return rows


def measure_field(image: np.ndarray, semantic: np.ndarray, truth: np.ndarray | None = None) -> dict:
    """Every statistic of one field: field statistics of ``semantic``, morphology of the
    annotator's instances and, given ``truth`` (N, H, W), of the ground-truth instances."""
    from bench.annotator import _field_statistics
    from mask2former.annotate import AnnotatorParams, annotate_instances

    row = _field_statistics(image, semantic)
    t0 = time.perf_counter()
    predicted = annotate_instances(image, AnnotatorParams(scale=1.0)).masks
    row["annotator_seconds"] = time.perf_counter() - t0
    row["annotator"] = _morphology(predicted)
    if truth is not None:
        row["truth"] = _morphology(truth)
    return row


def samples(rows: list[dict], source: str = "annotator") -> dict[str, list[float]]:
    """Pooled samples of each statistic over the fields of one set."""
    tubes = [t for r in rows for t in r[source]]
    out = {
        "tube_width": [t["width"] for t in tubes],
        "tube_length": [t["length"] for t in tubes],
        "tube_branch_points": [t["branch_points"] for t in tubes],
        "tubes_per_field": [len(r[source]) for r in rows],
    }
    if source == "annotator":
        out.update(
            {
                "coverage": [r["coverage"] for r in rows],
                "in_mask_mean": [r["in_mask_mean"] for r in rows if "in_mask_mean" in r],
                "background_median": [r["background_median"] for r in rows],
                "p99": [r["p99"] for r in rows],
                "mask_width": [w for r in rows for w in r.get("widths", [])],
            }
        )
    return out


def real_paths(data_dir: str, n: int) -> list[str]:
    """``n`` real fields evenly spaced over the name-sorted list (the spacing bench/annotator.py's
    realism table uses)."""
    from bench.annotator import real_fields

    paths = real_fields(data_dir)
    step = max(1, len(paths) // max(n, 1))
    return paths[::step][:n]


def synthetic_plan(n: int) -> list[tuple[int, str]]:
    """(seed, density) of the generated fields: sparse, medium, dense in turn; the same for every preset."""
    from mask2former.data.synthetic import DENSITY_LEVELS

    levels = list(DENSITY_LEVELS)
    return [(500 + i, levels[i % len(levels)]) for i in range(n)]


def measure_sets(paths: list[str], plan: list[tuple[int, str]], presets: list[str]) -> dict[str, list[dict]]:
    from tqdm import tqdm

    from bench.annotator import load_real
    from mask2former.data.synthetic import GENERATOR_PRESETS, generate_field

    rows: dict[str, list[dict]] = {"real": []}
    for path in tqdm(paths, desc="real fields", file=sys.stderr):
        image, human = load_real(path)
        row = measure_field(image, human)
        row["field"] = os.path.basename(path).replace("_myosin.png", "")
        rows["real"].append(row)
    for name in presets:
        rows[name] = []
        for seed, density in tqdm(plan, desc=f"{name} fields", file=sys.stderr):
            field = generate_field(RESOLUTION, seed=seed, density=density, params=GENERATOR_PRESETS[name])
            row = measure_field(field.image, field.masks.any(axis=0), field.masks)
            row.update({"seed": seed, "density": density})
            rows[name].append(row)
    return rows


def summarise(rows: dict[str, list[dict]]) -> dict:
    """Percentiles per set, distances of each generated set to the real one, their means."""
    real = samples(rows["real"])
    sets, distances, mean = {}, {}, {}
    for name, set_rows in rows.items():
        s = samples(set_rows)
        sets[name] = {
            "fields": len(set_rows),
            "annotator_tubes": len(s["tube_width"]),
            "statistics": {key: percentiles(s[key]) for key, _, _ in STATISTICS},
            "sample_sizes": {key: len(s[key]) for key, _, _ in STATISTICS},
        }
        per_field = [
            {"field": r["field"]} if "field" in r else {"seed": r["seed"], "density": r["density"]}
            for r in set_rows
        ]
        for entry, r in zip(per_field, set_rows):
            entry.update(
                {k: _round(r[k]) for k in ("coverage", "in_mask_mean", "background_median", "p99") if k in r}
            )
            entry["annotator_tubes"] = len(r["annotator"])
            if "truth" in r:
                entry["truth_tubes"] = len(r["truth"])
        sets[name]["per_field"] = per_field
        if name == "real":
            continue
        truth = samples(set_rows, "truth")
        sets[name]["ground_truth"] = {key: percentiles(truth[key]) for key, _ in TRUTH_STATISTICS}
        distances[name] = {key: distance(real[key], s[key]) for key, _, _ in STATISTICS}
        values = [d["wasserstein_over_spread"] for d in distances[name].values() if d]
        mean[name] = {
            "wasserstein_over_spread": _round(np.mean(values)),
            "ks": _round(np.mean([d["ks"] for d in distances[name].values() if d])),
        }
    # Sampling noise for scale: the same distance between the even and the odd real fields (half
    # the fields each, so a little larger than the noise of the full set).
    # Left out below 8 real fields: a half of one to three fields has no spread to divide by.
    floor = None
    if len(rows["real"]) >= 8:
        even, odd = samples(rows["real"][0::2]), samples(rows["real"][1::2])
        halves = {key: distance(even[key], odd[key]) for key, _, _ in STATISTICS}
        values = [d["wasserstein_over_spread"] for d in halves.values() if d]
        floor = {"distances": halves, "mean_distance": {"wasserstein_over_spread": _round(np.mean(values))}}
    return {"sets": sets, "distances": distances, "mean_distance": mean, "real_split_half": floor}


# --------------------------------------------------------------------------- figure


def write_figure(data_dir: str, path: str, presets: list[str]) -> str | None:
    """A real field and a medium-density field of each preset, side by side at 1500 px, each
    shown with the same percentile stretch (0.5 to 99.7 %)."""
    from bench.annotator import _stretch, load_real, real_fields
    from mask2former.data.synthetic import GENERATOR_PRESETS, generate_field
    from mask2former.utils.fileio import atomic_write_with

    paths = real_fields(data_dir)
    if not paths:
        return None
    real_path = next((p for p in paths if FIGURE_FIELD in p), paths[0])
    panel = 480
    images = [("real", load_real(real_path)[0])]
    images += [
        (
            name,
            generate_field(
                RESOLUTION, seed=FIGURE_SEED, density="medium", params=GENERATOR_PRESETS[name]
            ).image,
        )
        for name in presets
    ]
    tiles = []
    for k, (label, image) in enumerate(images):
        tile = cv2.resize(_stretch(image), (panel, panel), interpolation=cv2.INTER_AREA)
        for colour, thickness in ((0, 4), (255, 1)):  # outlined, legible on bright and dark parts
            cv2.putText(tile, label, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, colour, thickness, cv2.LINE_AA)
        if k:
            tiles.append(np.full((panel, 8), 255, np.uint8))
        tiles.append(tile)
    atomic_write_with(path, lambda tmp: cv2.imwrite(tmp, np.hstack(tiles), [cv2.IMWRITE_PNG_COMPRESSION, 9]))
    return path


# --------------------------------------------------------------------------- report


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def _median(percentile_list: list[float]) -> float | None:
    return percentile_list[PERCENTILES.index(50)] if percentile_list else None


def markdown(results: dict) -> str:
    sets, distances = results["sets"], results["distances"]
    presets = list(distances)
    real = sets["real"]
    lines = [
        f"Real ({real['fields']} fields, {real['annotator_tubes']} annotator tubes) "
        "vs generated fields at 1500 px ("
        + ", ".join(
            f"{p}: {sets[p]['fields']} fields, {sets[p]['annotator_tubes']} annotator tubes" for p in presets
        )
        + "). Medians; distance = Wasserstein-1 / real IQR (0 = same; KS statistic in brackets):",
        "",
        "| statistic | real median | "
        + " | ".join(f"{p} median" for p in presets)
        + " | "
        + " | ".join(f"distance {p}" for p in presets)
        + " |",
        "|---|---|" + "---|" * (2 * len(presets)),
    ]
    for key, label, _ in STATISTICS:
        cells = [_fmt(_median(sets[name]["statistics"][key])) for name in ["real", *presets]]
        for p in presets:
            d = distances[p][key]
            cells.append(f"{d['wasserstein_over_spread']:.2f} ({d['ks']:.2f})" if d else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    mean = results["mean_distance"]
    lines.append(
        "| **mean over statistics** | | "
        + " | " * len(presets)
        + " | ".join(f"**{mean[p]['wasserstein_over_spread']:.2f}** ({mean[p]['ks']:.2f})" for p in presets)
        + " |"
    )
    if results.get("real_split_half"):
        floor = results["real_split_half"]["mean_distance"]["wasserstein_over_spread"]
        lines += [
            "",
            f"Sampling noise for scale: the even vs the odd real fields are {floor:.2f} apart "
            "(mean over statistics; "
            + ", ".join(
                f"{key} {d['wasserstein_over_spread']:.2f}"
                for key, d in results["real_split_half"]["distances"].items()
                if d
            )
            + ").",
        ]
    lines += [
        "",
        "Generated fields: the ground-truth instances next to the annotator's (medians):",
        "",
        "| statistic | " + " | ".join(f"{p} truth | {p} annotator" for p in presets) + " |",
        "|---|" + "---|" * (2 * len(presets)),
    ]
    for key, label in TRUTH_STATISTICS:
        cells = []
        for p in presets:
            cells += [_fmt(_median(sets[p]["ground_truth"][key])), _fmt(_median(sets[p]["statistics"][key]))]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    from bench.annotator import DEFAULT_DATA

    parser.add_argument(
        "--data", default=DEFAULT_DATA, help="real fields folder (default ../shared/data/qa-skmcs-train)"
    )
    parser.add_argument(
        "--real",
        type=int,
        default=20,
        help="real fields, evenly spaced over the sorted list (default %(default)s)",
    )
    parser.add_argument(
        "--synthetic", type=int, default=20, help="generated fields per preset (default %(default)s)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2 real and 2 generated fields per preset, no figure unless --figure",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="result JSON (default bench/results/realism.json; --quick: realism_quick.json)",
    )
    parser.add_argument(
        "--figure",
        default=None,
        help="figure path (default docs/images/real_vs_synthetic.png; --quick writes none unless given)",
    )
    parser.add_argument("--no-figure", action="store_true", help="write no figure")
    args = parser.parse_args(argv)
    if args.quick:
        args.real, args.synthetic = 2, 2
    out = args.out or os.path.join(
        REPO_ROOT, "bench", "results", "realism_quick.json" if args.quick else "realism.json"
    )
    figure = (
        None
        if args.no_figure
        else args.figure
        or (None if args.quick else os.path.join(REPO_ROOT, "docs", "images", "real_vs_synthetic.png"))
    )
    cv2.setNumThreads(1)

    from mask2former.data.synthetic import GENERATOR_PRESETS

    paths = real_paths(args.data, args.real)
    if not paths:
        print(
            f"real data: no *_myosin.png with a *_myotube_mask.png in {args.data}; realism benchmark skipped"
        )
        return 0
    presets = list(GENERATOR_PRESETS)
    plan = synthetic_plan(args.synthetic)
    t0 = time.perf_counter()
    rows = measure_sets(paths, plan, presets)
    results: dict = {
        "quick": bool(args.quick),
        "data": os.path.abspath(args.data),
        "resolution": RESOLUTION,
        "percentiles": list(PERCENTILES),
        "annotator": "AnnotatorParams(scale=1.0)",
        "synthetic_fields": [{"seed": s, "density": d} for s, d in plan],
        "statistics": {key: {"label": label, "one_value_per": unit} for key, label, unit in STATISTICS},
        **summarise(rows),
        "annotator_seconds_per_field": {
            name: _round(np.mean([r["annotator_seconds"] for r in r_])) for name, r_ in rows.items()
        },
    }
    if figure:
        written = write_figure(args.data, figure, presets)
        results["figure"] = os.path.relpath(written, REPO_ROOT) if written else None
    results["seconds"] = round(time.perf_counter() - t0, 1)
    results["markdown"] = markdown(results)
    write_results(out, results, with_torch=False)
    print(results["markdown"])
    print(f"\n{results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
