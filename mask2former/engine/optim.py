"""AdamW with a backbone LR multiplier, no decay on norms/biases/embeddings; warmup + poly/cosine."""

from __future__ import annotations

import math

import torch

from ..config import CfgNode
from ..modeling.build import BACKBONE_PREFIX


def build_optimizer(cfg: CfgNode, model: torch.nn.Module) -> torch.optim.Optimizer:
    groups: dict[tuple[float, float], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lr = cfg.SOLVER.BASE_LR * (
            cfg.SOLVER.BACKBONE_MULTIPLIER if name.startswith(BACKBONE_PREFIX) else 1.0
        )
        no_decay = param.ndim <= 1 or "embed" in name or "relative_position_bias_table" in name
        wd = 0.0 if no_decay else cfg.SOLVER.WEIGHT_DECAY
        groups.setdefault((lr, wd), []).append(param)
    param_groups = [
        {"params": ps, "lr": lr, "weight_decay": wd, "initial_lr": lr} for (lr, wd), ps in groups.items()
    ]
    # The fused CUDA kernel updates all parameters in a few launches instead of one per tensor.
    fused = all(p.is_cuda for g in param_groups for p in g["params"])
    return torch.optim.AdamW(param_groups, lr=cfg.SOLVER.BASE_LR, fused=fused or None)


def lr_factor(cfg: CfgNode, iteration: int) -> float:
    """Multiplier of each group's base LR at ``iteration`` (0-based)."""
    max_iter = cfg.SOLVER.MAX_ITER
    warmup = cfg.SOLVER.WARMUP_ITERS
    if cfg.SOLVER.LR_SCHEDULER_NAME == "WarmupCosineLR":
        factor = 0.5 * (1.0 + math.cos(math.pi * iteration / max_iter))
    else:
        factor = (1.0 - iteration / max_iter) ** cfg.SOLVER.POLY_LR_POWER
    if iteration < warmup:
        alpha = iteration / warmup
        factor *= cfg.SOLVER.WARMUP_FACTOR * (1 - alpha) + alpha
    return factor


def build_lr_scheduler(cfg: CfgNode, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(cfg, it))
