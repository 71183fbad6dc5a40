"""Prediction benchmark: seconds per 1500x1500 and 2048x2048 image, and where they go.

    python -m bench.predict            # tiny and Swin-B architectures, 1500 and 2048, CPU
    python -m bench.predict --quick    # tiny architecture only, one repeat
    python -m bench.predict --device cuda --archs swinb

Two parts, both through the same code predict.py runs (predict_and_export_file: read, tiles, model,
stitching, post-processing, measurements, exports):

- model: the real predictor with random weights (tiny preset and the Swin-B architecture of
  stage2_config.yaml), both with INPUT.IMAGE_SIZE 1500, so a 1500 image is one tile and a 2048
  image four. Random weights find (almost) no instances, so this part measures the model.
- throughput: images per second of whole runs (run_prediction, as predict.py) with the tiny model
  on 1500 px real fields with nuclei, measuring in turn (--workers 0) and overlapped with the
  model (--workers 1, 2): the model runs on every tile, the instances are the human masks.
- overhead: a stand-in predictor that returns realistic instances (the human myotube masks of
  ../shared/data/qa-skmcs-train, split per tile, with their DAPI images for the nuclei; synthetic
  tubes when that folder is absent), timing tiling/stitching, post-processing, measurements
  and exports without the model, on one core, after one untimed image (first_image_seconds).
  On real fields it also reports whole tubes after stitching: pieces per isolated tube of the
  human mask, the cut tubes and how many are cut at a tile border, and the share of instance
  outlines on tile borders (bench/seams.py).

Results go to bench/results/predict.json with the machine description.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import resource
import tempfile
import time

import cv2
import numpy as np

from bench.common import REPO_ROOT, synthetic_tube_masks, write_results
from mask2former.inference.filters import PostprocessParams
from mask2former.inference.image_pipeline import StageTimer, predict_and_export_file
from mask2former.inference.options import PredictOptions
from mask2former.inference.tiling import tile_grid
from mask2former.structures import Instances

ARCHS = {
    "tiny": os.path.join(REPO_ROOT, "configs", "cpu_tiny", "stage2_config.yaml"),
    "swinb": os.path.join(REPO_ROOT, "stage2_config.yaml"),
}
DEFAULT_DATA = os.path.join(REPO_ROOT, "..", "shared", "data", "qa-skmcs-train")


class MaskComponentsPredictor:
    """Stand-in model: each 8-connected foreground region of the tile is one instance."""

    def __call__(self, tile: np.ndarray) -> Instances:
        n, labels = cv2.connectedComponents((tile > 127).astype(np.uint8), connectivity=8)
        masks = (
            np.stack([labels == k for k in range(1, n)]) if n > 1 else np.zeros((0, *tile.shape[:2]), bool)
        )
        return Instances(masks, np.full(len(masks), 0.9, np.float32))


def _stages(timer: StageTimer) -> dict:
    return {k: round(v, 4) for k, v in timer.seconds.items()}


def _write_synthetic_field(folder: str, size: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    masks = synthetic_tube_masks(size, 30, seed=seed)
    image = rng.normal(300, 30, (size, size)) + masks.any(0) * 2500
    path = os.path.join(folder, f"field_{size}.tif")
    import tifffile

    tifffile.imwrite(path, np.clip(image, 0, 65535).astype(np.uint16))
    return path


def bench_model(arch: str, sizes: list[int], repeats: int, device: str, folder: str) -> list[dict]:
    import torch

    from mask2former.config import load_config
    from mask2former.inference.predictor import MyotubePredictor
    from mask2former.modeling.build import count_parameters

    cfg = load_config(ARCHS[arch], ["MODEL.WEIGHTS", "", "INPUT.IMAGE_SIZE", "1500", "MODEL.DEVICE", device])
    torch.manual_seed(0)
    predictor = MyotubePredictor(cfg)
    options = PredictOptions.from_cfg(cfg, progress=False)
    # The first call pays one-off costs (allocator, kernels); time it apart.
    start = time.perf_counter()
    predictor(np.zeros((1500, 1500), np.uint16))
    first_call = time.perf_counter() - start
    runs = []
    for size in sizes:
        path = _write_synthetic_field(folder, size)
        best = None
        for _ in range(repeats):
            timer = StageTimer()
            out = os.path.join(folder, f"out_{arch}_{size}")
            start = time.perf_counter()
            result = predict_and_export_file(path, predictor, options, out, timer=timer)
            seconds = time.perf_counter() - start
            if best is None or seconds < best["seconds_per_image"]:
                best = {
                    "arch": arch,
                    "config": os.path.relpath(ARCHS[arch], REPO_ROOT),
                    "parameters": count_parameters(predictor.model),
                    "device": str(predictor.device),
                    "image": f"{size}x{size}",
                    "tile_size": options.tile_size,
                    "tiles": len(tile_grid(size, size, options.tile_size, options.tile_overlap)),
                    "four_flips_fused": bool(cfg.TEST.AUG.ENABLED),
                    "seconds_per_image": round(seconds, 3),
                    "stages": _stages(timer),
                    "instances": int(result.summary["myotubes"]),
                    "first_call_seconds": round(first_call, 3),
                }
        print(best)
        runs.append(best)
    del predictor
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return runs


def _real_fields(data: str, count: int) -> list[tuple[str, str]]:
    masks = sorted(glob.glob(os.path.join(data, "*_myotube_mask.png")))[:count]
    pairs = []
    for m in masks:
        dapi = m.replace("_myotube_mask.png", "_dapi.png")
        if os.path.isfile(dapi):
            pairs.append((m, dapi))
    return pairs


@contextlib.contextmanager
def one_core():
    """Run on one CPU (the measurements' target is per core), OpenCV single-threaded too."""
    cores, threads = os.sched_getaffinity(0), cv2.getNumThreads()
    os.sched_setaffinity(0, {min(cores)})
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        os.sched_setaffinity(0, cores)
        cv2.setNumThreads(threads)


def bench_overhead(sizes: list[int], data: str, fields: int, folder: str) -> list[dict]:
    """Everything but the model, on realistic instances, on one core."""
    pairs = _real_fields(data, fields) if data and os.path.isdir(data) else []
    source = (
        f"{len(pairs)} real fields of {os.path.basename(os.path.normpath(data))} (human myotube masks, DAPI)"
        if pairs
        else "synthetic tubes (real data not found)"
    )
    runs = []
    predictor = MaskComponentsPredictor()
    for size in sizes:
        inputs = os.path.join(folder, f"overhead_{size}")
        os.makedirs(inputs, exist_ok=True)
        items = []
        if pairs:
            for k, (mask_path, dapi_path) in enumerate(pairs):
                mask = cv2.imread(mask_path, cv2.IMREAD_GRAYSCALE)[:size, :size]
                dapi = cv2.imread(dapi_path, cv2.IMREAD_GRAYSCALE)[:size, :size]
                if mask.shape != (size, size):
                    continue
                cv2.imwrite(os.path.join(inputs, f"F{k:02d}_myotube.png"), mask)
                cv2.imwrite(os.path.join(inputs, f"F{k:02d}_dapi.png"), dapi)
                items.append(os.path.join(inputs, f"F{k:02d}_myotube.png"))
            options = PredictOptions(
                tile_size=1500,
                tile_overlap=0.2,
                nuclei_images_dir=inputs,
                post=PostprocessParams(),
                progress=False,
            )
        else:
            masks = synthetic_tube_masks(size, 30, seed=size)
            path = os.path.join(inputs, "synthetic.png")
            cv2.imwrite(path, (masks.any(0) * 255).astype(np.uint8))
            items.append(path)
            options = PredictOptions(
                tile_size=1500, tile_overlap=0.2, post=PostprocessParams(), progress=False
            )
        per_image = []
        totals = StageTimer()
        instances = nuclei = 0
        seams = {
            "tubes": 0,
            "pieces": 0,
            "cut_tubes": 0,
            "cut_at_tile_border": 0,
            "outline_px": 0,
            "outline_on_tile_border_px": 0,
        }
        # The first image of a process also pays one-off costs (skan compiles its graph code).
        start = time.perf_counter()
        if items:
            predict_and_export_file(
                items[0], predictor, options, os.path.join(folder, f"overhead_warmup_{size}")
            )
        first_image = time.perf_counter() - start
        for path in items:
            timer = StageTimer()
            start = time.perf_counter()
            result = predict_and_export_file(
                path, predictor, options, os.path.join(folder, f"overhead_out_{size}"), timer=timer
            )
            per_image.append(time.perf_counter() - start)
            for k, v in timer.seconds.items():
                totals.seconds[k] = totals.seconds.get(k, 0.0) + v
            instances += int(result.summary["myotubes"])
            nuclei += int(result.summary.get("nuclei", 0))
            if (
                pairs
            ):  # whole tubes: the stitched instances against the isolated tubes of the mask they came from
                for key, value in whole_tubes(path, result.instances, options).items():
                    seams[key] += value
        n = max(1, len(items))
        run = {
            "source": source,
            "image": f"{size}x{size}",
            "images": len(items),
            "tile_size": options.tile_size,
            "instances_per_image": round(instances / n, 1),
            "nuclei_per_image": round(nuclei / n, 1),
            "seconds_per_image": round(float(np.mean(per_image)), 3) if per_image else None,
            "seconds_per_image_max": round(float(np.max(per_image)), 3) if per_image else None,
            "first_image_seconds": round(first_image, 3),
            "cores": len(os.sched_getaffinity(0)),
            "stages_per_image": {k: round(v / n, 4) for k, v in totals.seconds.items()},
        }
        if seams["tubes"]:
            run["pieces_per_isolated_tube"] = round(seams["pieces"] / seams["tubes"], 3)
            run["isolated_tubes_cut"] = seams["cut_tubes"]
            run["cut_at_tile_border"] = seams["cut_at_tile_border"]
            run["share_of_outline_on_tile_borders"] = round(
                seams["outline_on_tile_border_px"] / max(1, seams["outline_px"]), 4
            )
        print(run)
        runs.append(run)
    return runs


def whole_tubes(mask_path: str, instances, options: PredictOptions) -> dict:
    """Pieces per isolated tube of the mask an image was drawn from, and where cut tubes are cut."""
    from bench.seams import instance_proxy, isolated_tubes, seam_breakdown, tile_edges

    human = cv2.imread(mask_path, cv2.IMREAD_GRAYSCALE) > 127
    singles = isolated_tubes(human, 300)
    masks = instances.to_instances().masks
    proxy = instance_proxy(singles, masks)
    seams = seam_breakdown(
        singles, masks, tile_edges(human.shape, options.image_tile_size, options.tile_overlap)
    )
    return {"tubes": proxy["tubes"], "pieces": proxy["pieces"], **seams}


class ModelThenMasks:
    """The tiny model's cost on every tile, with realistic instances (the tile's mask components)."""

    def __init__(self, device: str):
        from mask2former.config import load_config
        from mask2former.inference.predictor import MyotubePredictor

        cfg = load_config(
            ARCHS["tiny"], ["MODEL.WEIGHTS", "", "MODEL.DEVICE", device, "INPUT.IMAGE_SIZE", "1500"]
        )
        self.model = MyotubePredictor(cfg, input_scale=1.0)
        self.masks = MaskComponentsPredictor()

    def __call__(self, tile: np.ndarray) -> Instances:
        self.model(tile)
        return self.masks(tile)


def bench_throughput(data: str, fields: int, folder: str, device: str, workers: list[int]) -> list[dict]:
    """Whole runs over ``fields`` 1500 px fields with nuclei: images per second for each worker count."""
    from mask2former.inference.run import run_prediction

    pairs = _real_fields(data, fields) if data and os.path.isdir(data) else []
    if not pairs:
        return []
    inputs = os.path.join(folder, "throughput")
    os.makedirs(inputs, exist_ok=True)
    for k, (mask_path, dapi_path) in enumerate(pairs):
        cv2.imwrite(
            os.path.join(inputs, f"F{k:02d}_myotube.png"),
            cv2.imread(mask_path, cv2.IMREAD_GRAYSCALE)[:1500, :1500],
        )
        cv2.imwrite(
            os.path.join(inputs, f"F{k:02d}_dapi.png"),
            cv2.imread(dapi_path, cv2.IMREAD_GRAYSCALE)[:1500, :1500],
        )
    predictor = ModelThenMasks(device)
    runs = []
    for w in workers:
        options = PredictOptions(
            tile_size=1500,
            tile_overlap=0.2,
            nuclei_images_dir=inputs,
            post=PostprocessParams(),
            progress=False,
            workers=w,
        )
        start = time.perf_counter()
        report = run_prediction(
            os.path.join(inputs, "*_myotube.png"),
            predictor,
            os.path.join(folder, f"throughput_out_{w}"),
            options,
        )
        seconds = time.perf_counter() - start
        run = {
            "workers": w,
            "images": len(report.summaries),
            "seconds": round(seconds, 2),
            "images_per_second": round(len(report.summaries) / seconds, 3),
        }
        print(run, flush=True)
        runs.append(run)
    return runs


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny architecture only, one repeat, 3 real fields"
    )
    parser.add_argument("--archs", nargs="+", choices=sorted(ARCHS), default=None)
    parser.add_argument("--sizes", nargs="+", type=int, default=[1500, 2048])
    parser.add_argument(
        "--repeats", type=int, default=None, help="model runs per size, best kept (default 2, quick 1)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--data", default=DEFAULT_DATA, help="real fields for the overhead part (skipped if absent)"
    )
    parser.add_argument(
        "--fields", type=int, default=None, help="real fields for the overhead part (default 10, quick 3)"
    )
    parser.add_argument("--skip-model", action="store_true", help="overhead part only")
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="worker counts of the throughput part (default %(default)s)",
    )
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "bench", "results", "predict.json"))
    args = parser.parse_args(argv)
    archs = args.archs or (["tiny"] if args.quick else ["tiny", "swinb"])
    repeats = args.repeats or (1 if args.quick else 2)
    fields = args.fields or (3 if args.quick else 10)

    import torch

    results: dict = {
        "device": args.device,
        "sizes": args.sizes,
        "quick": args.quick,
        "torch_threads": torch.get_num_threads(),
        # Other work on the machine inflates CPU timings; recorded so readers can tell.
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as folder:
        with one_core():
            results["overhead"] = bench_overhead(args.sizes, args.data, fields, folder)
        if not args.skip_model:
            results["throughput"] = bench_throughput(args.data, fields, folder, args.device, args.workers)
        results["model"] = []
        if not args.skip_model:
            for arch in archs:
                results["model"].extend(bench_model(arch, args.sizes, repeats, args.device, folder))
    results["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    results["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    write_results(args.out, results)


if __name__ == "__main__":
    main()
