"""Worker processes that are safe to start from a process running OpenMP or torch threads."""

from __future__ import annotations

import multiprocessing
import os


def worker_context() -> multiprocessing.context.BaseContext:
    """Worker processes started from a clean server process: forking a process whose OpenMP or
    torch threads are running can deadlock the child (seen when called after training code)."""
    return multiprocessing.get_context("forkserver")


def default_workers(device: str = "cuda") -> int:
    """Processes that measure and export while the model predicts. With the model on a GPU the
    CPU cores are free: every core but the one feeding the model, at most 8. With the model on the
    CPU its threads already use every core, and workers only compete with it (measured in
    bench/results/predict.json: 0.98 images/s in turn, 0.94 with one worker on 2 cores): none."""
    if not str(device).startswith("cuda"):
        return 0
    return max(0, min(8, (os.cpu_count() or 1) - 1))
