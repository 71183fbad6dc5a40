"""Does memory stay flat over a long prediction batch? Peak RSS over 20 and over 200 fields.

    python -m bench.batch_memory                    # 20 and 200 generated 256 px fields, CPU
    python -m bench.batch_memory --counts 20 200 2000 --device cuda

Each count runs in a fresh process (peak RSS is a process's maximum), through the code predict.py
runs: run_prediction over generated fields (mask2former.data.synthetic), every image sealed by its
manifest, summary.csv and predictions_coco.json rebuilt at the end. The model is the tiny
architecture with random weights, run on every tile; as in bench/predict.py the instances it
returns are the tile's bright regions, so that measuring, exporting and the COCO file see
realistic instances (random weights find almost none). Target: the peak over 200 fields at most
1.2 times the peak over 20. Results go to bench/results/batch_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench.common import REPO_ROOT, write_results

TINY = os.path.join(REPO_ROOT, "configs", "cpu_tiny", "stage2_config.yaml")
TARGET_RATIO = 1.2


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class ModelThenRegions:
    """The tiny model's cost on every tile; as instances, the tile's regions brighter than its
    mean + 2 standard deviations (8-connected), scored 0.9."""

    def __init__(self, device: str, tile: int):
        from mask2former.config import load_config
        from mask2former.inference.predictor import MyotubePredictor

        cfg = load_config(TINY, ["MODEL.WEIGHTS", "", "MODEL.DEVICE", device, "INPUT.IMAGE_SIZE", str(tile)])
        self.model = MyotubePredictor(cfg, input_scale=1.0)

    def __call__(self, tile: np.ndarray):
        import cv2

        from mask2former.structures import Instances

        self.model(tile)
        gray = tile.astype(np.float32) if tile.ndim == 2 else tile.astype(np.float32).max(axis=2)
        n, labels = cv2.connectedComponents(
            (gray > gray.mean() + 2 * gray.std()).astype(np.uint8), connectivity=8
        )
        masks = np.stack([labels == k for k in range(1, n)]) if n > 1 else np.zeros((0, *gray.shape), bool)
        return Instances(masks, np.full(len(masks), 0.9, np.float32))


def write_fields(folder: str, count: int, size: int) -> None:
    import cv2

    from mask2former.data.synthetic import generate_field

    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        cv2.imwrite(
            os.path.join(folder, f"field_{i:05d}.png"), generate_field(size, seed=i, pixel_scale=0.5).image
        )


def child(fields: str, count: int, out: str, device: str, tile: int) -> dict:
    """One batch in this process: the peak RSS and the RSS before and after it."""
    import torch

    from mask2former.inference.filters import PostprocessParams
    from mask2former.inference.options import PredictOptions
    from mask2former.inference.run import run_prediction

    torch.manual_seed(0)
    predictor = ModelThenRegions(device, tile)
    options = PredictOptions(
        tile_size=tile, tile_overlap=0.2, post=PostprocessParams(min_area=20), progress=False
    )
    paths = [os.path.join(fields, n) for n in sorted(os.listdir(fields))[:count]]
    # One untimed image first: the allocator, the model's first call and skan's compiled code are
    # paid once per process, not per image.
    run_prediction(paths[:1], predictor, os.path.join(out, "warmup"), options)
    before = rss_mb()
    start = time.perf_counter()
    report = run_prediction(paths, predictor, os.path.join(out, "run"), options)
    seconds = time.perf_counter() - start
    with open(os.path.join(out, "run", "predictions_coco.json"), encoding="utf-8") as f:
        instances = len(json.load(f)["annotations"])
    return {
        "fields": count,
        "done": len(report.summaries),
        "instances": instances,
        "seconds": round(seconds, 1),
        "rss_before_batch_mb": round(before, 1),
        "rss_after_batch_mb": round(rss_mb(), 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--counts",
        type=int,
        nargs="+",
        default=[20, 200],
        help="batch sizes, each in a fresh process (default %(default)s)",
    )
    parser.add_argument(
        "--size", type=int, default=256, help="side of the generated fields in pixels (default %(default)s)"
    )
    parser.add_argument(
        "--tile", type=int, default=128, help="tile side and model input in pixels (default %(default)s)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default %(default)s)")
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "bench", "results", "batch_memory.json"))
    parser.add_argument("--child", nargs=2, metavar=("FIELDS", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], args.count, args.child[1], args.device, args.tile)), flush=True)
        return

    runs = []
    with tempfile.TemporaryDirectory(prefix="bench_batch_memory_") as folder:
        fields = os.path.join(folder, "fields")
        write_fields(fields, max(args.counts), args.size)
        for count in args.counts:
            out = os.path.join(folder, f"out_{count}")
            cmd = [
                sys.executable,
                "-m",
                "bench.batch_memory",
                "--child",
                fields,
                out,
                "--count",
                str(count),
                "--device",
                args.device,
                "--tile",
                str(args.tile),
            ]
            env = {
                **os.environ,
                "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
                "TQDM_DISABLE": "1",
            }
            done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
            if done.returncode:
                raise SystemExit(f"the batch of {count} fields failed:\n{done.stderr[-3000:]}")
            run = json.loads(done.stdout.strip().splitlines()[-1])
            print(run, flush=True)
            runs.append(run)
    peaks = {r["fields"]: r["peak_rss_mb"] for r in runs}
    results = {
        "size": args.size,
        "tile": args.tile,
        "device": args.device,
        "runs": runs,
        "target_ratio": TARGET_RATIO,
    }
    if 20 in peaks and 200 in peaks:
        results["peak_ratio_200_over_20"] = round(peaks[200] / peaks[20], 3)
        results["target_met"] = results["peak_ratio_200_over_20"] <= TARGET_RATIO
    write_results(args.out, results)


if __name__ == "__main__":
    main()
