"""Score a predictor on dataset records: COCO mask AP plus F1, PQ and semantic IoU/Dice; result tables.

Any object with ``predict_all(image) -> Instances`` (every candidate, for AP) is a predictor; one
that also has ``kept(candidates) -> Instances`` (what a user gets after post-processing) is scored on
those for F1, PQ and semantic IoU. Running a model over a registered dataset is
:mod:`mask2former.engine.evaluate`.
"""

from __future__ import annotations

import logging
import os

from tqdm import tqdm

from ..config import CfgNode, score_threshold_in_force
from ..data.coco_records import record_masks
from ..data.io import read_image
from ..utils import comm
from .metrics import InstanceEvaluator

logger = logging.getLogger(__name__)

TABLE_KEYS = (
    "AP",
    "AP50",
    "AP75",
    "f1@0.5",
    "precision@0.5",
    "recall@0.5",
    "pq",
    "semantic_iou",
    "semantic_dice",
)


def evaluate_predictor(predictor, records: list[dict], cfg: CfgNode, desc: str = "eval") -> dict:
    """Run ``predictor`` over ``records`` (sharded over ranks) and return the pooled metrics."""
    evaluator = InstanceEvaluator(score_threshold=score_threshold_in_force(cfg))
    mine = records[comm.get_rank() :: comm.get_world_size()]
    for record in tqdm(mine, desc=desc, disable=not comm.is_main_process(), leave=False):
        image = read_image(record["file_name"], channel=cfg.INPUT.CHANNEL, z_project=cfg.INPUT.Z_PROJECT)
        pred = predictor.predict_all(image)
        kept = predictor.kept(pred, image=image) if hasattr(predictor, "kept") else None
        evaluator.add(record_masks(record), pred, name=os.path.basename(record["file_name"]), kept=kept)
    states = comm.all_gather_object(evaluator.state())
    if not comm.is_main_process():
        return {}
    total = InstanceEvaluator(score_threshold=evaluator.score_threshold)
    for state in states:
        total.merge(state)
    results = total.summarize()
    results["per_image"] = total.per_image
    return results


def format_table(rows: dict[str, dict], keys: tuple[str, ...] = TABLE_KEYS) -> str:
    """A markdown table: one row per name, AP in percent, the rest as fractions."""
    header = "| | " + " | ".join(keys) + " |"
    lines = [header, "|" + "---|" * (len(keys) + 1)]
    for name, res in rows.items():
        cells = []
        for k in keys:
            v = res.get(k)
            cells.append("-" if v is None else (f"{v:.1f}" if k.startswith("AP") else f"{v:.3f}"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


ERROR_COLUMNS = (
    ("gt_matched", "true tubes found"),
    ("gt_merged", "merged with another"),
    ("gt_split", "cut into pieces"),
    ("gt_missed", "missed"),
    ("gt_poor_mask", "outline off"),
    ("pred_background", "false: background"),
    ("pred_duplicate", "false: duplicate"),
    ("pred_fragment", "false: fragment"),
    ("pred_merge", "false: merge"),
    ("pred_other", "false: other"),
)


def format_error_table(rows: dict[str, dict]) -> str:
    """A markdown table of each row's error breakdown (see :func:`metrics.error_breakdown`)."""
    lines = [
        "| | " + " | ".join(title for _, title in ERROR_COLUMNS) + " |",
        "|" + "---|" * (len(ERROR_COLUMNS) + 1),
    ]
    for name, res in rows.items():
        errors = res.get("errors", {})
        lines.append(
            f"| {name} | " + " | ".join(str(errors.get(key, "-")) for key, _ in ERROR_COLUMNS) + " |"
        )
    return "\n".join(lines)
