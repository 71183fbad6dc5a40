"""Training-step benchmark: the project's step vs a bare transformers step, same batch, same process.

    python -m bench.train_step --config configs/cpu_tiny/stage1_config.yaml --size 128
    python -m bench.train_step --config stage1_config.yaml --size 1500 --amp both   # GPU

Reports seconds per step for both, their ratio (target <= 1.10), peak memory, and, with
--loader, the data loader's images/s against the model's consumption.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from bench.common import synthetic_tube_masks, write_results
from mask2former.config import load_config, resolve_device
from mask2former.engine.optim import build_lr_scheduler, build_optimizer
from mask2former.engine.trainer import training_step
from mask2former.modeling.build import build_model, count_parameters


def make_batch(batch_size: int, size: int, instances: int, pin: bool = False) -> dict:
    """A batch as the training loader delivers it: float pixels, bool masks, pinned when the loader pins."""
    rng = np.random.default_rng(0)
    pixel_values = torch.from_numpy(rng.normal(0, 1, (batch_size, 3, size, size)).astype(np.float32))
    masks = [
        torch.from_numpy(synthetic_tube_masks(size, instances, seed=i).astype(bool))
        for i in range(batch_size)
    ]
    batch = {
        "pixel_values": pixel_values,
        "mask_labels": masks,
        "class_labels": [torch.zeros(instances, dtype=torch.long) for _ in range(batch_size)],
    }
    if pin:
        batch = {
            k: (v.pin_memory() if isinstance(v, torch.Tensor) else [t.pin_memory() for t in v])
            for k, v in batch.items()
        }
    return batch


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_steps(fn, steps: int, warmup: int, device: str) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / steps


def bench_config(cfg, size: int, batch_size: int, steps: int, warmup: int, amp: bool, instances: int) -> dict:
    device = resolve_device(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, ["myotube"]).to(device).train()
    batch = make_batch(batch_size, size, instances, pin=device.startswith("cuda"))
    use_amp = amp and device.startswith("cuda")

    bare_opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def bare_step():
        # Like any plain training loop, the bare step copies the loader's batch to the device itself,
        # so both steps start from the same host batch.
        pixel_values = batch["pixel_values"].to(device, non_blocking=True)
        mask_labels = [m.to(device, non_blocking=True).float() for m in batch["mask_labels"]]
        class_labels = [c.to(device, non_blocking=True) for c in batch["class_labels"]]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
            loss = model(pixel_values=pixel_values, mask_labels=mask_labels, class_labels=class_labels).loss
        bare_opt.zero_grad(set_to_none=True)
        loss.backward()
        bare_opt.step()

    optimizer = build_optimizer(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer)
    it = [0]

    def project_step():
        training_step(model, batch, optimizer, scheduler, cfg, device, use_amp, it[0])
        it[0] += 1

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    # Interleave the two so drift (thermal, other load) hits both equally.
    bare, project = [], []
    for _ in range(2):
        bare.append(time_steps(bare_step, steps, warmup, device))
        project.append(time_steps(project_step, steps, warmup, device))
    result = {
        "size": size,
        "batch": batch_size,
        "instances_per_image": instances,
        "amp": use_amp,
        "device": device,
        "parameters": count_parameters(model),
        "bare_s_per_step": min(bare),
        "project_s_per_step": min(project),
        "ratio_project_over_bare": min(project) / min(bare),
    }
    if device.startswith("cuda"):
        result["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
    else:
        result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()})
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/cpu_tiny/stage1_config.yaml")
    parser.add_argument("--size", type=int, nargs="+", default=[128])
    parser.add_argument("--batch", type=int, default=0, help="images per step (default SOLVER.IMS_PER_BATCH)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--instances", type=int, default=12)
    parser.add_argument("--amp", choices=("on", "off", "both"), default="on")
    parser.add_argument("--opts", nargs="*", default=[])
    parser.add_argument("--out", default="bench/results/train_step.json")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.opts)
    runs = []
    for size in args.size:
        for amp in {"on": [True], "off": [False], "both": [True, False]}[args.amp]:
            c = cfg.clone()
            c.defrost()
            c.INPUT.IMAGE_SIZE = size
            c.freeze()
            try:
                runs.append(
                    bench_config(
                        c,
                        size,
                        args.batch or cfg.SOLVER.IMS_PER_BATCH,
                        args.steps,
                        args.warmup,
                        amp,
                        args.instances,
                    )
                )
            except torch.OutOfMemoryError as err:
                runs.append({"size": size, "amp": amp, "error": f"out of memory: {str(err).splitlines()[0]}"})
                print(runs[-1])
                torch.cuda.empty_cache()
    write_results(args.out, {"config": args.config, "opts": args.opts, "runs": runs})


if __name__ == "__main__":
    main()
