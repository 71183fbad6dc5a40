"""Worker processes that are safe to start from a process running OpenMP or torch threads."""

from __future__ import annotations

import multiprocessing
import os


def worker_context() -> multiprocessing.context.BaseContext:
    """Worker processes started from a clean server process: forking a process whose OpenMP or
    torch threads are running can deadlock the child (seen when called after training code)."""
    return multiprocessing.get_context("forkserver")


def default_workers() -> int:
    """Measuring and exporting a field take most of a CPU core: every core but the model's."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))
