"""The training loop: iteration based, resumable, one process per device (torchrun for several)."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..config import CfgNode, resolve_device, save_config
from ..data.catalog import get_metadata
from ..data.coco import MYOTUBE
from ..data.scale import InputScale, training_input_scale
from ..data.synthetic_stream import stream_input_scale_factor
from ..errors import Interrupted, MyotubeError
from ..modeling.weights import load_model
from ..utils import comm, invoked_program
from ..utils.fileio import atomic_write_text
from ..utils.resumable import StopRequests as SignalStops
from ..utils.resumable import continue_command
from .checkpoint import FINAL, Checkpointer, has_checkpoints, last_good, write_failure
from .evaluate import evaluate_test_sets
from .events import StepLog, drop_metrics_from, plot_loss_curve, setup_run_logging
from .loader import build_train_loader, training_records
from .optim import build_lr_scheduler, build_optimizer

logger = logging.getLogger("mask2former.train")


class TrainingError(MyotubeError):
    pass


class StopRequests(SignalStops):
    """SIGTERM (a cluster's time limit) and SIGINT (Ctrl-C) ask the loop to stop after the current
    step; it then saves a checkpoint and says how to resume. Every rank stops at the same step."""

    def stop_now(self) -> int | None:
        """The signal to stop for, the same on every rank (one rank stopping alone would hang the others)."""
        if not comm.is_distributed():
            return self.received
        flag = torch.tensor([self.received or 0])
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item()) or None


def resume_command() -> str:
    """The command line of this run with ``--resume``."""
    program = invoked_program()
    # A root script is run from the checkout's folder: its name is the command.
    program = os.path.basename(program) if program.endswith(".py") else program
    return continue_command(program, sys.argv[1:])


def class_names_of(dataset_names) -> list[str]:
    """The one place the number of classes comes from: the datasets' categories (all must agree)."""
    names = None
    for ds in dataset_names:
        these = get_metadata(ds)["thing_classes"]
        if names is not None and these != names:
            raise TrainingError(
                f"datasets {list(dataset_names)} have different categories: {names} vs {these}"
            )
        names = these
    if not names:
        raise TrainingError("no training dataset given (DATASETS.TRAIN is empty)")
    return names


def loss_terms(model, out, batch) -> dict[str, torch.Tensor]:
    """HF's weighted loss dict, grouped as loss_ce / loss_mask / loss_dice (last layer) + loss_aux."""
    raw = model.module if hasattr(model, "module") else model
    mask_labels = [m.float() for m in batch["mask_labels"]]
    loss_dict = raw.get_loss_dict(
        out.masks_queries_logits,
        out.class_queries_logits,
        mask_labels,
        batch["class_labels"],
        out.auxiliary_logits,
    )
    grouped = {
        "loss_ce": loss_dict["loss_cross_entropy"],
        "loss_mask": loss_dict["loss_mask"],
        "loss_dice": loss_dict["loss_dice"],
    }
    aux = [v for k, v in loss_dict.items() if k not in ("loss_cross_entropy", "loss_mask", "loss_dice")]
    if aux:
        grouped["loss_aux"] = torch.stack(aux).sum()
    return grouped


def batch_per_process(total: int, world: int) -> tuple[int, str | None]:
    """Images per process for SOLVER.IMS_PER_BATCH, the batch over all processes (detectron2's
    rule), and a note when it does not divide: each process then takes the rounded-up share."""
    if total % world == 0:
        return total // world, None
    per = -(-total // world)
    return per, (
        f"SOLVER.IMS_PER_BATCH {total} is not divisible by the {world} processes: "
        f"each process takes {per} image(s), {per * world} per step in all "
        f"(SOLVER.BASE_LR unchanged; give a multiple of {world} to choose the batch yourself)"
    )


SHARED_TOKEN = ".rank0_token"


def check_shared_output_dir(out_dir: str) -> None:
    """Every process must see the output folder rank 0 writes to (several machines need a shared
    file system): rank 0 writes a token file there, every rank reads it back."""
    if not comm.is_distributed():
        return
    path = os.path.join(out_dir, SHARED_TOKEN)
    token = None
    if comm.is_main_process():
        token = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
        atomic_write_text(path, token)
    token = comm.broadcast_object(token)  # after rank 0 has written it
    try:
        with open(path, encoding="utf-8") as f:
            seen = f.read().strip() == token
    except OSError:
        seen = False
    views = comm.all_gather_object((seen, comm.get_rank(), socket.gethostname()))
    comm.barrier()
    if comm.is_main_process():
        os.remove(path)
    blind = [(rank, host) for ok, rank, host in views if not ok]
    if blind:
        who = ", ".join(f"rank {rank} on {host}" for rank, host in blind)
        raise TrainingError(
            f"OUTPUT_DIR {out_dir} is not shared: {who} cannot see the file rank 0 wrote there; "
            "with several machines, OUTPUT_DIR and the dataset must be on a file system every machine mounts"
        )


def training_step(
    model, batch: dict, optimizer, scheduler, cfg: CfgNode, device: str, use_amp: bool, iteration: int
) -> tuple[dict, float]:
    """One optimisation step; returns the loss values and the LR it used."""
    batch = {k: _to_device(v, device) for k, v in batch.items() if k != "records"}
    # The loss runs under autocast too: its point sampling then mixes bf16 logits and fp32 targets safely.
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
        out = model(pixel_values=batch["pixel_values"], output_auxiliary_logits=True)
        losses = {k: v.float() for k, v in loss_terms(model, out, batch).items()}
    total = sum(losses.values())
    stacked = torch.stack(list(losses.values())).detach()
    if comm.is_distributed():
        # Log the mean over all processes, and let every rank see a non-finite loss at once
        # (one rank stopping alone would leave the others waiting forever).
        torch.distributed.all_reduce(stacked)
        stacked /= comm.get_world_size()
    values = dict(zip(losses, stacked.tolist()))  # one device sync
    if not math.isfinite(sum(values.values())):
        bad = ", ".join(f"{k}={v}" for k, v in values.items() if not math.isfinite(v))
        raise TrainingError(
            f"non-finite loss at iteration {iteration} ({bad}); the last good checkpoint in {cfg.OUTPUT_DIR} "
            "is kept — lower SOLVER.BASE_LR or check the data"
        )
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    if cfg.SOLVER.CLIP_GRADIENTS.ENABLED:
        torch.nn.utils.clip_grad_norm_(
            model.parameters(), cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE, cfg.SOLVER.CLIP_GRADIENTS.NORM_TYPE
        )
    lr = max(g["lr"] for g in optimizer.param_groups)
    optimizer.step()
    scheduler.step()
    return values, lr


@dataclass
class TrainingRun:
    """What the loop needs, set up by :func:`start_run`: the model (``raw``, and ``model`` wrapped
    for DDP), its optimizer and schedule, the checkpointer, the endless batches and the step log."""

    raw: torch.nn.Module
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    checkpointer: Checkpointer
    data: Iterator[dict]
    log: StepLog
    start_iter: int
    use_amp: bool


def train(cfg: CfgNode, resume: bool = False, stop_after: int | None = None) -> str | None:
    """Train ``cfg`` into ``cfg.OUTPUT_DIR``; returns the path of model_final.pth.

    ``stop_after`` ends the run after that many iterations of this call without writing the final
    model (a checkpoint is written), as an interruption would; ``resume`` then continues.
    SIGTERM and SIGINT do the same after the current step and raise :class:`Interrupted`.
    """
    device = comm.init_distributed(resolve_device(cfg))
    out_dir, max_iter = cfg.OUTPUT_DIR, cfg.SOLVER.MAX_ITER
    if resume and os.path.isfile(os.path.join(out_dir, FINAL)):
        logger.info("%s exists: training is complete, nothing to resume", os.path.join(out_dir, FINAL))
        return os.path.join(out_dir, FINAL)
    if not resume and has_checkpoints(out_dir):
        raise TrainingError(
            f"{out_dir} already holds checkpoints of an earlier run: add --resume to continue it, "
            "or choose another OUTPUT_DIR"
        )
    run = start_run(cfg, device, resume)
    end_iter = max_iter if stop_after is None else min(max_iter, run.start_iter + stop_after)
    with StopRequests() as stops, _write_failures(out_dir):
        for it in range(run.start_iter, end_iter):
            t0 = time.perf_counter()
            batch = next(run.data)
            data_time = time.perf_counter() - t0
            losses, lr = training_step(
                run.model, batch, run.optimizer, run.scheduler, cfg, device, run.use_amp, it
            )
            run.log.step(it, losses, lr, time.perf_counter() - t0, data_time, last=it == end_iter - 1)
            # Then, between steps: checkpoint, stop on request, evaluate.
            done = it + 1
            if done == max_iter:
                break
            signum = stops.stop_now()
            run.checkpointer.step(done, force=done == end_iter or bool(signum))
            if signum:
                run.log.close()
                raise _interrupted(signum, out_dir, done, max_iter)
            if cfg.TEST.EVAL_PERIOD > 0 and done % cfg.TEST.EVAL_PERIOD == 0:
                evaluate_test_sets(cfg, run.raw, device, run.log.metrics, it)
    run.log.close()
    if end_iter < max_iter:
        logger.info("Stopped at iteration %d of %d; continue with --resume", end_iter, max_iter)
        return None
    final_path = run.checkpointer.save_final(max_iter)
    logger.info("Saved %s", final_path)
    evaluate_test_sets(cfg, run.raw, device, run.log.metrics, max_iter - 1)
    if comm.is_main_process():
        plot_loss_curve(os.path.join(out_dir, "metrics.json"), os.path.join(out_dir, "loss_curve.png"))
    return final_path


def start_run(cfg: CfgNode, device: str, resume: bool) -> TrainingRun:
    """Data, output folder and logging, seed, model, optimizer, schedule and checkpointer (restored
    from the newest checkpoint when ``resume``), and the loader from the iteration to run next."""
    rank, world, main = comm.get_rank(), comm.get_world_size(), comm.is_main_process()
    out_dir = cfg.OUTPUT_DIR
    # Data first: a refused dataset leaves no output folder behind.
    per_process, batch_note = batch_per_process(cfg.SOLVER.IMS_PER_BATCH, world)
    class_names, records, input_scale, source = training_data(cfg)
    os.makedirs(out_dir, exist_ok=True)
    check_shared_output_dir(out_dir)
    setup_run_logging(out_dir, main)
    if batch_note and main:
        logger.warning(batch_note)
    seed = _seed_everything(cfg, rank)
    if main:
        save_config(cfg, os.path.join(out_dir, "config.yaml"))

    raw, described = load_model(cfg, class_names, for_training=True)
    raw.to(device).train()
    optimizer = build_optimizer(cfg, raw)
    scheduler = build_lr_scheduler(cfg, optimizer)
    checkpointer = _checkpointer(cfg, raw, optimizer, scheduler, class_names, input_scale, main)
    start_iter, resumed_from = _resume(checkpointer) if resume else (0, None)
    _log_start(cfg, source, class_names, resumed_from or described, raw, device, world, seed, input_scale)
    # Saved and evaluated unwrapped; stepped through DDP when there are several processes.
    model = _distributed(raw, device) if world > 1 else raw
    data = iter(
        build_train_loader(
            cfg, records, per_process, seed + start_iter, rank, world, device.startswith("cuda"), start_iter
        )
    )
    log = StepLog(out_dir, main, cfg.SOLVER.LOG_PERIOD, start_iter, cfg.SOLVER.MAX_ITER, device)
    use_amp = device.startswith("cuda") and cfg.SOLVER.AMP.ENABLED
    return TrainingRun(raw, model, optimizer, scheduler, checkpointer, data, log, start_iter, use_amp)


def _checkpointer(
    cfg: CfgNode,
    raw,
    optimizer,
    scheduler,
    class_names: list[str],
    input_scale: InputScale | None,
    main: bool,
) -> Checkpointer:
    """The run's checkpointer; every checkpoint carries the config, class names and pixel scale
    that predict.py needs to use the weights alone."""
    extra = {
        "cfg": cfg.dump(),
        "class_names": class_names,
        "input_scale": input_scale.to_dict() if input_scale else None,
    }
    return Checkpointer(
        cfg.OUTPUT_DIR,
        raw,
        optimizer,
        scheduler,
        extra,
        cfg.SOLVER.CHECKPOINT_PERIOD,
        cfg.SOLVER.MAX_CHECKPOINTS_KEPT,
        main,
        barrier=comm.barrier,
    )


def _log_start(
    cfg: CfgNode,
    source: str,
    class_names: list[str],
    weights: str,
    raw,
    device: str,
    world: int,
    seed: int,
    input_scale: InputScale | None,
) -> None:
    logger.info(
        "Training %s: %s, classes %s, weights %s, %d parameters, device %s x %d processes, seed %d; "
        "pixel scale %s (recorded with the model for predict.py)",
        cfg.OUTPUT_DIR,
        source,
        class_names,
        weights,
        sum(p.numel() for p in raw.parameters()),
        device,
        world,
        seed,
        input_scale.describe() if input_scale else "unknown",
    )


def _distributed(raw, device: str):
    return torch.nn.parallel.DistributedDataParallel(
        raw, device_ids=[torch.cuda.current_device()] if device.startswith("cuda") else None
    )


def training_data(cfg: CfgNode) -> tuple[list[str], list[dict], InputScale | None, str]:
    """Class names, registered records (none for generated fields), the training pixel scale and
    a description of the data for the start-up line."""
    if cfg.SYNTHETIC.ENABLED:
        node = cfg.SYNTHETIC
        scale = InputScale(stream_input_scale_factor(cfg))
        source = (
            f"generated fields ({node.PRESET} preset, stream seed {node.SEED}, "
            f"sides {list(node.FIELD_SIZES)} px, "
            f"pixel scale {node.PIXEL_SCALE} x {list(node.SCALE_JITTER)}, density {list(node.DENSITY)})"
        )
        return [MYOTUBE], [], scale, source
    class_names = class_names_of(cfg.DATASETS.TRAIN)
    records = training_records(cfg)
    jitter = (cfg.INPUT.MIN_SCALE, cfg.INPUT.MAX_SCALE) if cfg.INPUT.AUGMENT else (1.0, 1.0)
    source = f"{len(records)} images from {', '.join(cfg.DATASETS.TRAIN)}"
    if cfg.SYNTHETIC.REPLAY > 0:
        source += (
            f", {cfg.SYNTHETIC.REPLAY:.0%} of the steps replaying generated fields "
            f"({cfg.SYNTHETIC.PRESET} preset, stream seed {cfg.SYNTHETIC.SEED})"
        )
    return class_names, records, training_input_scale(records, cfg.INPUT.IMAGE_SIZE, jitter), source


@contextlib.contextmanager
def _write_failures(out_dir: str):
    """A log or metrics line that cannot be written (full disk, quota) stops training with one line."""
    try:
        yield
    except OSError as err:
        raise TrainingError(f"{out_dir}: cannot write ({write_failure(err)}); {last_good(out_dir)}") from None


def _seed_everything(cfg: CfgNode, rank: int) -> int:
    """The run's seed (drawn and shared when SEED is -1): the same initial weights on every rank,
    different augmentations."""
    seed = cfg.SEED if cfg.SEED >= 0 else comm.broadcast_object(int(np.random.SeedSequence().entropy % 2**31))
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed)
    return seed


def _resume(checkpointer: Checkpointer) -> tuple[int, str | None]:
    """Load the newest checkpoint: (the iteration to run next, what was loaded)."""
    start_iter, state = checkpointer.resume()
    if state is None:
        logger.info("--resume: no checkpoint in %s, starting from the beginning", checkpointer.output_dir)
        return 0, None
    if comm.is_main_process():  # iterations logged after that checkpoint are run again: log them once
        drop_metrics_from(os.path.join(checkpointer.output_dir, "metrics.json"), start_iter)
    return start_iter, f"{state['path']} (resumed at iteration {start_iter})"


def _interrupted(signum: int, out_dir: str, next_iter: int, max_iter: int) -> Interrupted:
    name = signal.Signals(signum).name
    message = (
        f"{name} received: stopped after iteration {next_iter} of {max_iter}, checkpoint saved in {out_dir}; "
        f"continue with: {resume_command()}"
    )
    logger.warning(message)
    return Interrupted(message, 128 + signum)


def _to_device(value, device: str):
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, list):
        return [_to_device(v, device) for v in value]
    return value
