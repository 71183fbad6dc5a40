"""`make bench`: every benchmark, each writing its JSON to bench/results/.

GPU figures (Swin-B at 1500x1500) come from runs on a GPU machine with the same scripts:
    python -m bench.train_step --config stage1_config.yaml --size 1500 --amp both
"""

from __future__ import annotations

import importlib
import sys

STEPS = [
    (
        "bench.train_step",
        [
            "--config",
            "configs/cpu_tiny/stage1_config.yaml",
            "--size",
            "128",
            "256",
            "--steps",
            "10",
            "--out",
            "bench/results/train_step_tiny_cpu.json",
        ],
    ),
    (
        "bench.train_step",
        [
            "--config",
            "stage1_config.yaml",
            "--size",
            "256",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--out",
            "bench/results/train_step_swinb_cpu.json",
        ],
    ),
    ("bench.loader", ["--size", "1500", "--workers", "0", "2"]),
    ("bench.predict", []),
    ("bench.batch_memory", []),
    ("bench.annotator", []),
    # The wheel alone (seconds); the full installs with torch and the extras: python -m bench.install.
    ("bench.install", ["--wheel"]),
]


def main(argv=None) -> int:
    only = set(argv if argv is not None else sys.argv[1:])
    for module, args in STEPS:
        if only and module.split(".")[-1] not in only:
            continue
        print(f"\n=== {module} {' '.join(args)}", flush=True)
        importlib.import_module(module).main(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
