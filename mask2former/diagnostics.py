"""Readiness report behind ``setup_two_stage.py``: dataset counts, validation, environment, weights."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from collections.abc import Sequence
from typing import Any

from .config import load_config
from .data.catalog import ANNOTATION_FILES, OPTIONAL_SPLITS, dataset_paths
from .data.coco import dataset_statistics
from .data.coco_validation import Finding, validate_coco
from .errors import DatasetError

PACKAGES = (
    "torch",
    "transformers",
    "pycocotools",
    "numpy",
    "opencv-python-headless",
    "scikit-image",
    "scipy",
    "tifffile",
    "fvcore",
    "skan",
)


# Which stage's config (and so which INPUT.CHANNEL) reads each split.
SPLIT_STAGE = {
    "myotube_algorithmic_train": 1,
    "myotube_algorithmic_test": 1,
    "myotube_manual_train": 2,
    "myotube_manual_test": 2,
}


def collect_report(dataset_root: str, config_dir: str, opts: Sequence[str] = ()) -> dict[str, Any]:
    """Everything a user needs to know before training, as one JSON-ready dict.

    ``opts`` are the KEY VALUE overrides training will get (e.g. ``INPUT.CHANNEL 1``): images
    are validated the way the stage that uses them will read them.
    """
    report: dict[str, Any] = {
        "dataset": os.path.abspath(dataset_root),
        "splits": {},
        "findings": [],
        "next_steps": [],
    }
    configs = _stage_configs(config_dir, opts)
    if not os.path.isdir(dataset_root):
        _report_missing_dataset(report, dataset_root)
        ready = False
    else:
        # Every split is checked (a list, not all()'s short cut): each one's findings are reported.
        splits_ready = [
            _check_split(report, name, json_file, image_root, configs)
            for name, (json_file, image_root) in dataset_paths(dataset_root).items()
        ]
        ready = all(splits_ready)
    setup_ready = _check_setup(report, config_dir, configs)
    report["ready"] = ready and setup_ready
    return report


def _report_missing_dataset(report: dict[str, Any], dataset_root: str) -> None:
    report["findings"].append({"level": "error", "file": dataset_root, "message": "dataset folder not found"})
    report["next_steps"].append(
        "Create the unified dataset: python organize_unified_dataset.py "
        f"--algorithmic_dataset ANNOTATOR_OUT --manual_dataset MANUAL --output_dataset {dataset_root}"
    )


def _check_split(
    report: dict[str, Any], name: str, json_file: str, image_root: str, configs: dict[int, Any]
) -> bool:
    """Validate split ``name`` the way the config of the stage that uses it reads its images; its
    statistics, findings and next steps go into ``report``. Returns whether it is fit to train on
    (an optional split may be absent)."""
    split: dict[str, Any] = {"json_file": json_file, "present": os.path.isfile(json_file)}
    report["splits"][name] = split
    if not split["present"]:
        if name in OPTIONAL_SPLITS:
            return True
        report["findings"].append({"level": "error", "file": json_file, "message": "annotation file missing"})
        report["next_steps"].append(
            f"Add annotations/{ANNOTATION_FILES[name]} (organize_unified_dataset.py writes it)"
        )
        return False
    cfg = configs[SPLIT_STAGE[name]]
    channel = cfg.INPUT.CHANNEL if not isinstance(cfg, Exception) else -1
    z_project = cfg.INPUT.Z_PROJECT if not isinstance(cfg, Exception) else False
    findings: list[Finding] = validate_coco(json_file, image_root, channel=channel, z_project=z_project)
    try:
        split.update(dataset_statistics(json_file))
    except DatasetError:  # the findings already say why
        pass
    for f in findings:
        report["findings"].append({"level": f.level, "file": f.file, "message": f.message, "split": name})
    if any(f.level == "error" for f in findings):
        report["next_steps"].append(
            f"Fix the errors listed for {name}, or regenerate it with organize_unified_dataset.py "
            "(myotube-organize)"
        )
        return False
    return True


def _check_setup(report: dict[str, Any], config_dir: str, configs: dict[int, Any]) -> bool:
    """The environment and each stage's weights, into ``report``. Returns False when Stage 1 has
    no weights to start from; no GPU is a next step, not a stop."""
    report["environment"] = _environment()
    report["weights"] = _weights_status(config_dir, configs)
    ready = True
    if report["weights"]["stage1"]["status"] == "missing":
        ready = False
        report["next_steps"].append(report["weights"]["stage1"]["hint"])
    if not report["environment"]["torch"]["cuda_available"]:
        report["next_steps"].append(
            "No CUDA GPU: full-size Swin-B training is GPU work. On CPU use the tiny preset: "
            "python train_two_stage.py --config-dir configs/cpu_tiny "
            "(installed: myotube-train-two-stage --config-dir cpu_tiny)"
        )
    return ready


def _environment() -> dict[str, Any]:
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
    }
    try:
        import torch

        cuda = torch.cuda.is_available()
        env["torch"] = {
            "version": torch.__version__,
            "cuda_available": cuda,
            "cuda_version": torch.version.cuda,
            "gpus": [
                {
                    "name": torch.cuda.get_device_name(i),
                    "memory_gb": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1),
                }
                for i in range(torch.cuda.device_count())
            ]
            if cuda
            else [],
        }
    except Exception as err:
        env["torch"] = {"version": None, "cuda_available": False, "error": str(err)}
    try:
        import detectron2  # type: ignore[import-not-found]  # noqa: F401

        env["detectron2"] = True
    except Exception:
        env["detectron2"] = False
    return env


def _stage_configs(config_dir: str, opts: Sequence[str]) -> dict[int, Any]:
    """Stage number → its loaded config, or the error that stopped it loading."""
    configs: dict[int, Any] = {}
    for stage in (1, 2):
        path = os.path.join(config_dir, f"stage{stage}_config.yaml")
        try:
            configs[stage] = load_config(path, opts)
        except Exception as err:
            configs[stage] = err
    return configs


def _weights_status(config_dir: str, configs: dict[int, Any]) -> dict[str, Any]:
    from .modeling.weights import describe_weights

    out: dict[str, Any] = {}
    for stage, cfg in configs.items():
        path = os.path.join(config_dir, f"stage{stage}_config.yaml")
        if isinstance(cfg, Exception):
            out[f"stage{stage}"] = {"config": path, "status": "missing", "hint": f"Config problem: {cfg}"}
            continue
        out[f"stage{stage}"] = {"config": path, **describe_weights(cfg.MODEL.WEIGHTS, stage=stage)}
    return out


def format_report(report: dict[str, Any]) -> str:
    lines = [f"Dataset: {report['dataset']}"]
    if report["splits"]:
        lines.append(f"  {'split':<28}{'images':>8}{'instances':>11}{'  per image min/median/max'}")
        for name, split in report["splits"].items():
            if not split["present"]:
                lines.append(
                    f"  {name:<28}{'-':>8}{'-':>11}  "
                    f"(missing{', optional' if name in OPTIONAL_SPLITS else ''})"
                )
                continue
            if "images" not in split:
                lines.append(f"  {name:<28}{'?':>8}{'?':>11}  (unreadable)")
                continue
            ipi = split["instances_per_image"]
            lines.append(
                f"  {name:<28}{split['images']:>8}{split['instances']:>11}  "
                f"{ipi['min']}/{ipi['median']:g}/{ipi['max']}"
            )
    errors = [f for f in report["findings"] if f["level"] == "error"]
    warnings = [f for f in report["findings"] if f["level"] == "warning"]
    lines.append(f"Validation: {len(errors)} errors, {len(warnings)} warnings")
    for f in errors:
        lines.append(f"  ERROR   {f['file']}: {f['message']}")
    for f in warnings[:20]:
        lines.append(f"  warning {f['file']}: {f['message']}")
    if len(warnings) > 20:
        lines.append(f"  ... {len(warnings) - 20} more warnings (see --json)")
    env = report["environment"]
    torch_info = env["torch"]
    gpus = ", ".join(f"{g['name']} ({g['memory_gb']} GB)" for g in torch_info.get("gpus", [])) or "none"
    lines.append(
        f"Environment: Python {env['python']}, torch {torch_info.get('version')}, "
        f"CUDA {'yes' if torch_info['cuda_available'] else 'no'}, GPUs: {gpus}, "
        f"detectron2 {'yes' if env['detectron2'] else 'no'}"
    )
    lines.append("  " + ", ".join(f"{k} {v or 'MISSING'}" for k, v in env["packages"].items()))
    for stage, w in report["weights"].items():
        lines.append(
            f"Weights {stage}: {w.get('weights', '')!r} → {w['status']}"
            + (f" ({w['hint']})" if w.get("hint") and w["status"] != "ok" else "")
        )
    if report["next_steps"]:
        lines.append("Next steps:")
        lines.extend(f"  - {s}" for s in dict.fromkeys(report["next_steps"]))
    lines.append("READY to train." if report["ready"] else "NOT READY: fix the errors above.")
    return "\n".join(lines)
