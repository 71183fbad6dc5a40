"""What a generated training field costs, against what a training step costs.

The base model draws a fresh field for every sample in the loader (``SYNTHETIC.ENABLED``). On two
cores the generator competes with the training for CPU, so this measures:

- the time to draw one field (``realistic`` preset, one thread) for each side the base config
  trains on, median of ``--repeats`` fields;
- from a pretraining run's ``metrics.json``: the median step time and the median time the step
  waited for its batch (``data_time``). A wait near zero means the loader worker keeps up and the
  fields need not be pre-drawn to disk.

    python -m bench.synthetic_stream [--run output_base/swin_tiny] [--out bench/results/synthetic_stream.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from bench.common import REPO_ROOT, write_results


def draw_seconds(sides: list[int], repeats: int, pixel_scale: float = 0.5) -> dict[str, float]:
    import cv2

    from mask2former.data.synthetic import REALISTIC, generate_field

    cv2.setNumThreads(1)
    out = {}
    for side in sides:
        generate_field(side, seed=0, pixel_scale=pixel_scale, params=REALISTIC)  # warm-up
        times = []
        for seed in range(repeats):
            t0 = time.perf_counter()
            generate_field(
                side,
                seed=seed + 1,
                pixel_scale=pixel_scale,
                density=0.04 + 0.26 * (seed % 5) / 4,
                params=REALISTIC,
            )
            times.append(time.perf_counter() - t0)
        out[str(side)] = round(statistics.median(times), 4)
    return out


def run_step_times(run: str) -> dict | None:
    path = os.path.join(run, "metrics.json")
    if not os.path.isfile(path):
        return None
    steps, waits = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if "time" in row and "data_time" in row:
                steps.append(row["time"])
                waits.append(row["data_time"])
    if not steps:
        return None
    step, wait = statistics.median(steps), statistics.median(waits)
    return {
        "run": os.path.relpath(run, REPO_ROOT),
        "logged_rows": len(steps),
        "median_step_s": round(step, 4),
        "median_data_wait_s": round(wait, 4),
        "wait_share": round(wait / step, 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sides", type=int, nargs="*", default=[256, 384, 512, 768])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--run",
        default=os.path.join(REPO_ROOT, "output_base", "swin_tiny"),
        help="a pretraining output folder",
    )
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "bench", "results", "synthetic_stream.json"))
    args = parser.parse_args(argv)
    results = {
        "draw_seconds_one_thread": draw_seconds(args.sides, args.repeats),
        "training": run_step_times(args.run),
    }
    print(json.dumps(results, indent=2))
    write_results(args.out, results, with_torch=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
