"""Training events: human lines in log.txt, one JSON object per line in metrics.json, a loss curve.

metrics.json follows detectron2: ``"iteration"`` is 0-based, each logged iteration is one line,
a resumed run appends. Only the main process writes.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
import time

from ..utils.fileio import atomic_write_text, atomic_write_with

logger = logging.getLogger("mask2former.train")


def setup_run_logging(output_dir: str, main_process: bool) -> None:
    """Console + ``OUTPUT_DIR/log.txt`` (appended on resume) for the main process."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        if getattr(h, "_myotube_run", False):
            root.removeHandler(h)
            h.close()
    if not main_process:
        root.setLevel(logging.WARNING)  # one voice: the main process reports progress
        return
    fmt = logging.Formatter("[%(asctime)s %(name)s] %(message)s", datefmt="%m/%d %H:%M:%S")
    handler = logging.FileHandler(os.path.join(output_dir, "log.txt"), encoding="utf-8")
    handler.setFormatter(fmt)
    handler._myotube_run = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    if not any(
        isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) for h in root.handlers
    ):
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(fmt)
        console._myotube_run = True  # type: ignore[attr-defined]
        root.addHandler(console)


class MetricsWriter:
    def __init__(self, output_dir: str, enabled: bool = True):
        self.enabled = enabled
        self.path = os.path.join(output_dir, "metrics.json")

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=False) + "\n")
            f.flush()


class StepLog:
    """Per-step values averaged over ``period`` steps: one line in log.txt, one record in
    metrics.json and the progress bar (detectron2's writers, in one place)."""

    def __init__(
        self, output_dir: str, main_process: bool, period: int, start_iter: int, max_iter: int, device: str
    ):
        from tqdm import tqdm

        self.metrics = MetricsWriter(output_dir, enabled=main_process)
        self.period, self.start_iter, self.max_iter, self.device = period, start_iter, max_iter, device
        self.window: list[dict] = []
        self.t_start = time.perf_counter()
        self.bar = tqdm(
            total=max_iter,
            initial=start_iter,
            desc=os.path.basename(os.path.normpath(output_dir)),
            disable=not main_process,
            dynamic_ncols=True,
        )

    def step(self, it: int, losses: dict, lr: float, step_time: float, data_time: float, last: bool) -> None:
        self.bar.update(1)
        self.window.append(
            {"total_loss": sum(losses.values()), **losses, "time": step_time, "data_time": data_time}
        )
        if (it + 1) % self.period and not last:
            return
        mean = {k: sum(w[k] for w in self.window) / len(self.window) for k in self.window[-1]}
        eta = (time.perf_counter() - self.t_start) / (it + 1 - self.start_iter) * (self.max_iter - it - 1)
        memory = torch_max_memory_mb(self.device)
        record = {
            "iteration": it,
            **mean,
            "lr": lr,
            "eta_seconds": eta,
            **({"max_memory_mb": memory} if memory is not None else {}),
        }
        self.metrics.write(record)
        losses_mean = {k: v for k, v in mean.items() if k not in ("time", "data_time")}
        logger.info(
            format_log_line(it, self.max_iter, losses_mean, lr, mean["time"], mean["data_time"], eta, memory)
        )
        self.bar.set_postfix(loss=f"{mean['total_loss']:.3f}", lr=f"{lr:.2g}")
        self.window = []

    def close(self) -> None:
        self.bar.close()


def torch_max_memory_mb(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.max_memory_allocated() / 2**20


def format_log_line(
    it: int,
    max_iter: int,
    losses: dict,
    lr: float,
    step_time: float,
    data_time: float,
    eta_s: float,
    memory_mb: float | None,
) -> str:
    loss_text = "  ".join(f"{k}: {v:.4g}" for k, v in losses.items())
    eta = str(datetime.timedelta(seconds=int(eta_s)))
    mem = f"  max_mem: {memory_mb:.0f}M" if memory_mb is not None else ""
    return (
        f"eta: {eta}  iter: {it}/{max_iter}  {loss_text}  time: {step_time:.4f}  "
        f"data_time: {data_time:.4f}  lr: {lr:.3g}{mem}"
    )


def read_metrics(path: str) -> list[dict]:
    records = []
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError:
                        continue  # a line cut by a kill: skip it
    return records


def drop_metrics_from(path: str, first_iteration: int) -> None:
    """Keep only the records of iterations before ``first_iteration`` (atomically)."""
    if not os.path.isfile(path):
        return
    kept = [r for r in read_metrics(path) if r.get("iteration", -1) < first_iteration]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def plot_loss_curve(metrics_path: str, out_png: str, title: str = "") -> str | None:
    """Loss curves (total and each loss) against iteration from metrics.json."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in read_metrics(metrics_path) if "total_loss" in r]
    if not records:
        return None
    # A resumed run may re-log iterations: keep the last value per iteration.
    by_iter = {r["iteration"]: r for r in records}
    its = sorted(by_iter)
    keys = [k for k in by_iter[its[-1]] if k.startswith("loss_") or k == "total_loss"]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for key in keys:
        ax.plot(
            its,
            [by_iter[i].get(key, float("nan")) for i in its],
            label=key,
            linewidth=2 if key == "total_loss" else 1,
        )
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or os.path.basename(os.path.dirname(os.path.abspath(metrics_path))))
    fig.tight_layout()
    atomic_write_with(out_png, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return out_png
