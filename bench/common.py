"""Shared by the benchmarks: machine description, JSON output, and training runs they reuse or resume."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time

import numpy as np

from mask2former.utils.run_files import FINAL, POINTER

# The checkout the benchmarks run in: they write bench/results/ and call the root scripts. The
# package itself needs no checkout.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def machine_info(with_torch: bool = True) -> dict:
    """Date, Python, platform, cores, numpy; torch, transformers and the GPU unless ``with_torch``
    is False (for benchmarks that never load torch: importing it only to describe it costs
    seconds and memory)."""
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
    }
    if not with_torch:
        return info
    import torch
    import transformers

    info.update(
        {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
        }
    )
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_results(path: str, results: dict, with_torch: bool = True) -> None:
    from mask2former.utils.fileio import atomic_write_json

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_json(path, {"machine": machine_info(with_torch), **results}, indent=2)
    print(f"wrote {path}")


def same_request(recorded: dict | None, request: dict) -> bool:
    """Whether a recorded training request is ``request``: the same dataset, and the same config
    once the recorded one is read into this version's defaults (a key added since, at its default,
    changes nothing; a key this version no longer knows is a difference)."""
    if recorded == request:
        return True
    if not recorded or recorded.get("dataset") != request["dataset"] or "config" not in recorded:
        return False
    import yaml

    from mask2former.config import CfgNode, get_cfg

    cfg = get_cfg()
    try:
        cfg.merge_from_other_cfg(CfgNode(yaml.safe_load(recorded["config"])))
    except (KeyError, ValueError, AssertionError, TypeError):
        return False
    return cfg.dump() == request["config"]


def train_once(config: str, dataset: str, opts: list[str], out: str, log_path: str) -> float | None:
    """Train with ``train_net.py`` into ``out`` (its OUTPUT_DIR) unless ``out`` holds model_final.pth
    trained by the same request.

    The request (the merged config, options included, and the dataset folder) is kept in
    ``out/train_request.json``: a folder trained with other settings is refused rather than reused,
    so a second run with other ``--set`` values never scores the first run's models. An
    interrupted training of the same request continues from its last checkpoint. Returns the
    training's wall time in seconds, kept in ``out/train_seconds.json`` so that a reused model
    reports its own (None for a model trained without it).
    """
    from mask2former.config import load_config
    from mask2former.utils.fileio import atomic_write_json

    timing = os.path.join(out, "train_seconds.json")
    request_path = os.path.join(out, "train_request.json")
    # The merged config (its _BASE_ files and the options included) and the dataset folder.
    request = {
        "config": load_config(config, [str(o) for o in opts], freeze=False).dump(),
        "dataset": os.path.abspath(dataset),
    }
    if os.path.isdir(out) and os.listdir(out):
        recorded = None
        if os.path.isfile(request_path):
            with open(request_path, encoding="utf-8") as f:
                recorded = json.load(f)
        if not same_request(recorded, request):
            raise SystemExit(
                f"{out} holds a training of other settings (or of an unknown request): "
                "delete it or choose another work folder"
            )
    else:
        os.makedirs(out, exist_ok=True)
        atomic_write_json(request_path, request, indent=2)
    if not os.path.isfile(os.path.join(out, FINAL)):
        resume = ["--resume"] if os.path.isfile(os.path.join(out, POINTER)) else []
        cmd = [
            sys.executable,
            os.path.join(REPO_ROOT, "train_net.py"),
            "--config-file",
            config,
            "--dataset",
            dataset,
            *resume,
            *opts,
        ]
        print("$", " ".join(cmd), flush=True)
        t0 = time.perf_counter()
        with open(log_path, "a") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            try:
                returncode = proc.wait()
            finally:
                if (
                    proc.poll() is None
                ):  # the bench was stopped: the training saves a checkpoint and exits too
                    proc.terminate()
                    proc.wait()
        if returncode:
            raise SystemExit(f"training failed: see {log_path}")
        atomic_write_json(timing, round(time.perf_counter() - t0, 1))
        print(f"  trained in {time.perf_counter() - t0:.0f} s", flush=True)
    if not os.path.isfile(timing):
        return None
    with open(timing) as f:
        return json.load(f)


def exit_on_sigterm() -> None:
    """Let SIGTERM unwind like Ctrl-C, so that a running ``train_once`` stops its training with a
    checkpoint."""
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


def add_settings_argument(parser) -> None:
    """``--setting NAME KEY VALUE [KEY VALUE ...]``, repeatable: named config changes from a model's
    own, for the benchmarks that compare prediction settings on one model."""
    parser.add_argument(
        "--setting",
        nargs="+",
        action="append",
        default=[],
        metavar="NAME KEY VALUE",
        help="a named setting: config keys changed from the model's own (repeatable)",
    )


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
