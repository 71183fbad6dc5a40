"""Where model weights come from: a local HF directory, a hub id, a project checkpoint, or nothing."""

from __future__ import annotations

import os
from typing import Any

from ..config import COCO_SWIN_B_WEIGHTS


def weights_kind(weights: str) -> str:
    """One of ``"none"``, ``"checkpoint"`` (.pth/.pt), ``"hf_dir"`` or ``"hub_id"``."""
    if not weights:
        return "none"
    if weights.endswith((".pth", ".pt")):
        return "checkpoint"
    if os.path.isdir(os.path.expanduser(weights)) or weights.startswith((".", "/", "~")):
        return "hf_dir"
    # "owner/name" that is not a local folder: a Hugging Face hub id.
    return "hub_id" if weights.count("/") == 1 else "hf_dir"


def download_hint(weights: str) -> str:
    repo = weights if weights_kind(weights) == "hub_id" else COCO_SWIN_B_WEIGHTS
    local = os.path.join("weights", repo.split("/")[-1])
    return (
        f"download the COCO weights once with `huggingface-cli download {repo} --local-dir {local}` "
        f"(or `hf download {repo} --local-dir {local}`) on a machine with internet, copy the folder here, "
        f"and set MODEL.WEIGHTS {local}"
    )


def hub_cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo_id, "config.json")
        return isinstance(hit, str) and os.path.isfile(hit)
    except Exception:
        return False


def describe_weights(weights: str, stage: int = 1) -> dict[str, Any]:
    """Status of ``MODEL.WEIGHTS`` without loading anything (for setup diagnostics)."""
    kind = weights_kind(weights)
    info: dict[str, Any] = {"weights": weights, "kind": kind}
    if kind == "none":
        info.update(status="random", hint="no weights: the model starts from random initialisation")
    elif kind == "checkpoint":
        if os.path.isfile(weights):
            info.update(status="ok")
        elif stage == 2:
            info.update(status="pending", hint="Stage 1 checkpoint not found yet: run Stage 1 first (python train_two_stage.py --stage 1)")
        else:
            info.update(status="missing", hint=f"checkpoint {weights} not found")
    elif kind == "hf_dir":
        if os.path.isfile(os.path.join(os.path.expanduser(weights), "config.json")):
            info.update(status="ok")
        else:
            info.update(status="missing", hint=f"{weights} is not a Hugging Face model folder: " + download_hint(COCO_SWIN_B_WEIGHTS))
    else:
        if hub_cached(weights):
            info.update(status="ok", hint="found in the local Hugging Face cache")
        else:
            info.update(
                status="download",
                hint="not in the local Hugging Face cache: training downloads it when online; offline, " + download_hint(weights),
            )
    return info
