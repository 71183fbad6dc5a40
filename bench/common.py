"""Shared by the benchmarks: machine description and JSON output."""

from __future__ import annotations

import os
import platform
import time

import numpy as np

from mask2former.utils import REPO_ROOT  # noqa: F401  (for the benchmarks)


def machine_info() -> dict:
    import torch
    import transformers

    info = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_results(path: str, results: dict) -> None:
    from mask2former.utils.fileio import atomic_write_json

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_json(path, {"machine": machine_info(), **results}, indent=2)
    print(f"wrote {path}")


def synthetic_tube_masks(size: int, n: int, seed: int = 0) -> np.ndarray:
    """n random straight thick lines (bench inputs; no ground truth quality needed)."""
    import cv2

    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        p0 = rng.uniform(0, size, 2).astype(int)
        p1 = rng.uniform(0, size, 2).astype(int)
        cv2.line(masks[i], tuple(map(int, p0)), tuple(map(int, p1)), 1, thickness=max(2, size // 60))
    return masks.astype(bool)
