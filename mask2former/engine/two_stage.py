"""What train_two_stage.py and train_net.py do, so the root scripts stay thin."""

from __future__ import annotations

import logging
import os

from ..config import CfgNode, load_config, resolve_device
from ..data.catalog import ANNOTATION_FILES, dataset_paths, is_registered, register_two_stage_datasets
from ..data.coco import dataset_statistics
from ..errors import ConfigError, WeightsError
from ..evaluation.evaluator import format_table
from ..inference.predictor import class_names_for_weights
from ..modeling.weights import checkpoint_architecture, load_model, weights_kind
from ..utils import comm
from .checkpoint import FINAL
from .evaluate import evaluate_test_sets
from .loader import training_records
from .trainer import batch_per_process, class_names_of, train

logger = logging.getLogger("mask2former.train")

STAGE_OUTPUT_NAMES = {1: "output_stage1_algorithmic", 2: "output_stage2_manual"}


def dataset_counts_text(dataset_root: str) -> str:
    lines = [f"Dataset {os.path.abspath(dataset_root)}:"]
    for name, (json_file, _) in dataset_paths(dataset_root).items():
        if os.path.isfile(json_file):
            st = dataset_statistics(json_file)
            lines.append(f"  {name:<28} {st['images']:>5} images {st['instances']:>7} instances")
        else:
            lines.append(f"  {name:<28} (no annotations/{ANNOTATION_FILES[name]})")
    return "\n".join(lines)


def stage_configs(config_dir: str, stages: list[int], opts: list[str]) -> dict[int, CfgNode]:
    """Configs of the stages to run. With both stages, Stage 2 starts from Stage 1's final model;
    an OUTPUT_DIR given in ``opts`` then names the parent folder of the two stage folders."""
    opts = list(opts)
    parent = None
    if len(stages) > 1 and "OUTPUT_DIR" in opts[::2]:
        i = opts[::2].index("OUTPUT_DIR") * 2
        parent = opts[i + 1]
        del opts[i : i + 2]
    cfgs = {}
    for stage in stages:
        cfg = load_config(os.path.join(config_dir, f"stage{stage}_config.yaml"), opts, freeze=False)
        if parent is not None:
            cfg.OUTPUT_DIR = os.path.join(parent, STAGE_OUTPUT_NAMES[stage])
        cfgs[stage] = cfg
    if 1 in cfgs and 2 in cfgs:
        cfgs[2].MODEL.WEIGHTS = os.path.join(cfgs[1].OUTPUT_DIR, FINAL)
    for cfg in cfgs.values():
        cfg.freeze()
    return cfgs


def run_two_stage(
    config_dir: str, dataset_root: str, stages: list[int], opts: list[str], resume: bool
) -> dict[int, str]:
    if not os.path.isdir(config_dir):
        raise ConfigError(
            config_dir, "config folder not found (it must hold stage1_config.yaml and stage2_config.yaml)"
        )
    cfgs = stage_configs(config_dir, stages, opts)
    register_two_stage_datasets(dataset_root)
    if comm.is_main_process():
        print(dataset_counts_text(dataset_root), flush=True)
    if stages == [2]:
        weights = cfgs[2].MODEL.WEIGHTS
        if weights_kind(weights) == "checkpoint" and not os.path.isfile(weights):
            raise WeightsError(
                weights,
                "Stage 1 checkpoint not found: run Stage 1 first (python train_two_stage.py --stage 1)",
            )
    # Every stage's training data is validated now, not hours later when its stage starts.
    for stage in stages:
        class_names_of(cfgs[stage].DATASETS.TRAIN)
        training_records(cfgs[stage])
        # Said before Stage 1 starts, not when Stage 2 does.
        _, note = batch_per_process(cfgs[stage].SOLVER.IMS_PER_BATCH, comm.launched_world_size())
        if note and comm.is_main_process():
            print(f"Stage {stage}: {note}", flush=True)
    finals = {}
    for stage in stages:
        cfg = cfgs[stage]
        if comm.is_main_process():
            print(
                f"== Stage {stage}: {', '.join(cfg.DATASETS.TRAIN)} -> {cfg.OUTPUT_DIR} "
                f"(classes {class_names_of(cfg.DATASETS.TRAIN)}, "
                f"weights {cfg.MODEL.WEIGHTS or 'random init'}, "
                f"{cfg.SOLVER.MAX_ITER} iterations, batch {cfg.SOLVER.IMS_PER_BATCH}, "
                f"LR {cfg.SOLVER.BASE_LR:g})",
                flush=True,
            )
        finals[stage] = train(cfg, resume=resume)
    return finals


def eval_weights(cfg: CfgNode, opts: list[str]) -> tuple[str, str]:
    """What ``--eval-only`` evaluates, and why: MODEL.WEIGHTS when given on the command line, else
    this config's own trained model (OUTPUT_DIR/model_final.pth) when it exists, else MODEL.WEIGHTS.

    A Stage 2 config's MODEL.WEIGHTS is Stage 1's model, the one it starts from: evaluating it would
    report Stage 1 under Stage 2's name.
    """
    if "MODEL.WEIGHTS" in list(opts)[::2]:
        return cfg.MODEL.WEIGHTS, "MODEL.WEIGHTS given on the command line"
    final = os.path.normpath(os.path.join(cfg.OUTPUT_DIR, FINAL))
    if os.path.isfile(final):
        return (
            final,
            f"the model this config trained (OUTPUT_DIR {cfg.OUTPUT_DIR}); "
            "give MODEL.WEIGHTS to evaluate another",
        )
    return cfg.MODEL.WEIGHTS, f"MODEL.WEIGHTS of the config ({final} does not exist)"


def run_train_net(
    config_file: str, dataset_root: str, opts: list[str], eval_only: bool, resume: bool
) -> dict:
    """Train one config, or with ``eval_only`` evaluate it (see :func:`eval_weights`) on DATASETS.TEST."""
    cfg = load_config(config_file, opts)
    # Pretraining on generated fields needs no dataset folder (its test splits are used when present).
    if not (cfg.SYNTHETIC.ENABLED and not eval_only and not os.path.isdir(dataset_root)):
        register_two_stage_datasets(dataset_root)
    if not eval_only:
        return {"model_final": train(cfg, resume=resume)}
    weights, why = eval_weights(cfg, opts)
    device = comm.init_distributed(resolve_device(cfg))
    names = [n for n in cfg.DATASETS.TEST if is_registered(n)]
    if not names:
        raise ConfigError(
            config_file, f"none of DATASETS.TEST {list(cfg.DATASETS.TEST)} exists in {dataset_root}"
        )
    class_names = class_names_for_weights(weights, class_names_of(names))
    cfg, changes = checkpoint_architecture(cfg, weights)
    for change in changes:
        logger.info("Architecture from %s: %s", weights, change)
    model, described = load_model(cfg, class_names, weights)
    if comm.is_main_process():
        print(f"Evaluating {weights or 'random initialisation'} ({why})", flush=True)
    logger.info("Evaluating %s", described)
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    results = evaluate_test_sets(cfg, model.to(device), device)
    if comm.is_main_process():
        print(format_table(results))
    return results
