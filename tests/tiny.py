"""Shared helpers for tests that build the tiny CPU model."""

from __future__ import annotations

import os

from mask2former.config import load_config
from tests.conftest import REPO_ROOT

TINY_STAGE1 = os.path.join(REPO_ROOT, "configs", "cpu_tiny", "stage1_config.yaml")
TINY_STAGE2 = os.path.join(REPO_ROOT, "configs", "cpu_tiny", "stage2_config.yaml")


# The presets start Stage 1 from the shipped base model with its 64 queries; unit tests build a
# random 16-query model unless they say otherwise.
UNIT_DEFAULTS = ("MODEL.WEIGHTS", "", "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 16)
# The tiny architecture's backbone is a ResNet; tests of Swin-only paths (the detectron2 bridge) ask for the Swin.
SWIN_TINY = ("MODEL.BACKBONE.NAME", "swin")


def tiny_cfg(*opts, stage: int = 1, freeze: bool = True):
    return load_config(TINY_STAGE1 if stage == 1 else TINY_STAGE2, [str(o) for o in (*UNIT_DEFAULTS, *opts)], freeze=freeze)


def write_fields(folder, n: int, size: int = 96, seed: int = 0) -> list[str]:
    """``n`` generated fields (8-bit PNG, the synthetic generator's myotubes), ``f00.png`` ... in sorted order."""
    import cv2

    from mask2former.data.synthetic import generate_field

    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(n):
        path = os.path.join(folder, f"f{i:02d}.png")
        cv2.imwrite(path, generate_field(size, seed=seed + i, pixel_scale=0.5).image)
        paths.append(path)
    return paths


def save_tiny_checkpoint(path, seed: int = 0, opts: tuple = (), input_scale: dict | None = None) -> str:
    """A tiny Stage 2 model (16 queries) with random weights drawn from ``seed``, saved with its
    config (``opts`` applied) and class names like a model_final.pth, and with ``input_scale``
    recorded as training records it: two seeds, two different models."""
    import torch

    from mask2former.modeling.build import build_model

    cfg = load_config(TINY_STAGE2, [str(o) for o in (*UNIT_DEFAULTS, *opts)])
    torch.manual_seed(seed)
    state = {"model": build_model(cfg, ["myotube"]).state_dict(), "class_names": ["myotube"], "cfg": cfg.dump()}
    if input_scale is not None:
        state["input_scale"] = input_scale
    torch.save(state, path)
    return str(path)
