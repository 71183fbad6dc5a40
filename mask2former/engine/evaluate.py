"""Evaluate a model on the registered test splits (during training, and for ``--eval-only``)."""

from __future__ import annotations

import logging
import os

from ..config import CfgNode
from ..data.catalog import get_dataset_dicts, is_registered
from ..evaluation.evaluator import evaluate_predictor, format_table
from ..inference.predictor import MyotubePredictor
from ..utils import comm
from ..utils.fileio import atomic_write_json
from .events import MetricsWriter

logger = logging.getLogger("mask2former.train")


def evaluate_dataset(
    model, cfg: CfgNode, dataset_name: str, output_dir: str | None = None, device: str = "cpu"
) -> dict:
    """Evaluate on ``dataset_name``; the main process writes ``eval_<dataset>.json`` and logs a table."""
    was_training = model.training
    predictor = MyotubePredictor(cfg, model=model, device=device)
    try:
        results = evaluate_predictor(
            predictor,
            get_dataset_dicts(dataset_name, channel=cfg.INPUT.CHANNEL, z_project=cfg.INPUT.Z_PROJECT),
            cfg,
            desc=f"eval {dataset_name}",
        )
    finally:
        model.train(was_training)
    if comm.is_main_process():
        results["dataset"] = dataset_name
        if output_dir:
            atomic_write_json(os.path.join(output_dir, f"eval_{dataset_name}.json"), results, indent=2)
        logger.info(
            "Evaluation on %s (%d images):\n%s",
            dataset_name,
            results["images"],
            format_table({dataset_name: results}),
        )
    return results


def evaluate_test_sets(
    cfg: CfgNode, model, device: str, metrics: MetricsWriter | None = None, iteration: int = -1
) -> dict:
    """Evaluate ``model`` (unwrapped) on every registered DATASETS.TEST split; with ``metrics``,
    the scalar results also go into metrics.json at ``iteration``."""
    all_results = {}
    for name in cfg.DATASETS.TEST:
        if not is_registered(name):
            logger.warning("Skipping evaluation on %s: not in the dataset folder", name)
            continue
        results = evaluate_dataset(model, cfg, name, cfg.OUTPUT_DIR, device)
        if metrics is not None and comm.is_main_process():
            metrics.write(
                {
                    "iteration": iteration,
                    **{f"{name}/{k}": v for k, v in results.items() if isinstance(v, (int, float))},
                }
            )
        all_results[name] = results
    return all_results
