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
