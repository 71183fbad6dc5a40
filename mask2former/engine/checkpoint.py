"""Atomic, resumable checkpoints with a ``last_checkpoint`` pointer written after the file.

A checkpoint is one dict: model, optimizer, scheduler, iteration (the next one to run), RNG
states, config, class names. It is written to a temp file, fsynced and renamed; the pointer is
updated only afterwards, so a kill at any moment leaves either the old or the new checkpoint
complete and pointed at. ``model_final.pth`` holds the weights and config only.
"""

from __future__ import annotations

import errno
import glob
import logging
import os
import random
import re

import numpy as np
import torch

from ..errors import MyotubeError
from ..modeling.weights import FINAL
from ..utils import run_files
from ..utils.fileio import atomic_open, atomic_write_text

logger = logging.getLogger(__name__)

POINTER = run_files.POINTER
_PERIODIC = re.compile(r"model_(\d{7})\.pth$")


class CheckpointError(MyotubeError):
    pass


def periodic_name(iteration: int) -> str:
    return f"model_{iteration:07d}.pth"


def rng_state() -> dict:
    """RNG states as tensors and plain lists, so the safe (weights_only) loader can read them."""
    np_state = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]) + [random.getstate()[0]],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[-1], tuple(py[:-1]), None))
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(obj: dict, path: str) -> None:
    """torch.save through a temp file; a full disk is reported, never silent."""
    try:
        with atomic_open(path, "wb") as f:
            torch.save(obj, f)
    except OSError as err:
        raise CheckpointError(
            f"{path}: could not save checkpoint ({write_failure(err)}); {last_good(os.path.dirname(path))}"
        ) from None


def write_failure(err: OSError) -> str:
    return "disk full" if err.errno in (errno.ENOSPC, errno.EDQUOT) else (err.strerror or str(err))


def last_good(output_dir: str) -> str:
    """Which checkpoint a failed write leaves to resume from, in words."""
    kept = list_checkpoints(output_dir)
    if not kept:
        return "no checkpoint was written yet"
    return f"the last good checkpoint {kept[-1]} is kept (continue with --resume once there is space)"


def save_final(output_dir: str, state: dict) -> str:
    """``model_final.pth`` (weights, config, class names, scale), then the pointer to it."""
    path = os.path.join(output_dir, FINAL)
    save_atomic(state, path)
    atomic_write_text(os.path.join(output_dir, POINTER), FINAL)
    return path


def save_checkpoint(output_dir: str, state: dict, iteration: int, max_kept: int = 3) -> str:
    path = os.path.join(output_dir, periodic_name(iteration))
    save_atomic(state, path)
    atomic_write_text(os.path.join(output_dir, POINTER), periodic_name(iteration))
    _prune(output_dir, max_kept)
    return path


def _prune(output_dir: str, max_kept: int) -> None:
    if max_kept <= 0:
        return
    for old in list_checkpoints(output_dir)[:-max_kept]:
        try:
            os.remove(old)
        except OSError:
            pass


def list_checkpoints(output_dir: str) -> list[str]:
    """Periodic checkpoints, oldest first."""
    found = [p for p in glob.glob(os.path.join(output_dir, "model_*.pth")) if _PERIODIC.search(p)]
    return sorted(found, key=lambda p: int(_PERIODIC.search(p).group(1)))


def has_checkpoints(output_dir: str) -> bool:
    return (
        bool(list_checkpoints(output_dir))
        or os.path.exists(os.path.join(output_dir, POINTER))
        or os.path.exists(os.path.join(output_dir, FINAL))
    )


def load_resume_state(output_dir: str) -> dict | None:
    """The newest readable checkpoint (the pointer's first, then older ones with a warning)."""
    candidates = list_checkpoints(output_dir)[::-1]
    pointer = os.path.join(output_dir, POINTER)
    if os.path.isfile(pointer):
        with open(pointer, encoding="utf-8") as f:
            named = os.path.join(output_dir, f.read().strip())
        if named in candidates:
            candidates.remove(named)
            candidates.insert(0, named)
    for i, path in enumerate(candidates):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or "model" not in state or "iteration" not in state:
                raise ValueError("not a training checkpoint")
        except Exception as err:
            logger.warning(
                "Checkpoint %s is unreadable (%s); trying an older one", path, str(err).splitlines()[0][:100]
            )
            continue
        if i > 0:
            logger.warning("Resuming from the older checkpoint %s", path)
        state["path"] = path
        return state
    return None


class Checkpointer:
    """Saving and resuming of one training run, out of the loop (detectron2's checkpointer and
    periodic checkpointer in one): :meth:`resume` loads the newest checkpoint, :meth:`step` saves
    every ``period`` iterations (or when asked), :meth:`save_final` writes ``model_final.pth``.

    Rank 0 writes; every rank waits for it, so no rank runs ahead of a checkpoint being written.
    ``extra`` (config, class names, training scale) goes into every file, so each can be predicted
    with on its own.
    """

    def __init__(
        self,
        output_dir: str,
        model,
        optimizer,
        scheduler,
        extra: dict,
        period: int,
        max_kept: int,
        main: bool,
        barrier=lambda: None,
    ):
        self.output_dir, self.model, self.optimizer, self.scheduler = output_dir, model, optimizer, scheduler
        self.extra, self.period, self.max_kept, self.main, self.barrier = (
            extra,
            period,
            max_kept,
            main,
            barrier,
        )

    def resume(self) -> tuple[int, dict | None]:
        """Restore model, optimizer, schedule and RNG from the newest checkpoint: (the iteration to
        run next, the loaded state without its tensors' bulk), or (0, None) when there is none."""
        state = load_resume_state(self.output_dir)
        if state is None:
            return 0, None
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        return int(state["iteration"]), {"path": state["path"], "iteration": int(state["iteration"])}

    def save(self, next_iter: int) -> None:
        if self.main:
            state = {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "iteration": next_iter,
                "rng": rng_state(),
                **self.extra,
            }
            save_checkpoint(self.output_dir, state, next_iter, self.max_kept)
        self.barrier()

    def step(self, next_iter: int, force: bool = False) -> None:
        """After an iteration: save when ``next_iter`` is a multiple of the period, or ``force``."""
        if force or next_iter % self.period == 0:
            self.save(next_iter)

    def save_final(self, max_iter: int) -> str:
        path = os.path.join(self.output_dir, FINAL)
        if self.main:
            save_final(
                self.output_dir, {"model": self.model.state_dict(), "iteration": max_iter, **self.extra}
            )
        self.barrier()
        return path
