"""Where model weights come from: a model of the package's zoo (by name), a local HF directory, a hub
id, a project checkpoint, or nothing."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from ..config import COCO_SWIN_B_WEIGHTS, CfgNode, get_cfg
from ..errors import WeightsError
from ..utils import run_files
from .build import build_hf_config, build_model, configure_trainable_parts
from .detectron2 import (
    ARCHITECTURE_KEYS,
    architecture,
    check_head,
    describe_differences,
    read_detectron2,
    swin_name,
    to_transformers,
)
from .zoo import is_zoo_name, zoo_path

logger = logging.getLogger(__name__)


FINAL = run_files.FINAL
# Where the guide tells users to put downloaded weights: "weights/NAME" is a folder, never a hub id.
LOCAL_WEIGHTS_FOLDER = "weights"


def weights_kind(weights: str) -> str:
    """One of ``"none"``, ``"zoo"`` (a model shipped with the package, by name: see zoo.py),
    ``"checkpoint"`` (.pth/.pt: ours or a detectron2 training checkpoint, told apart by content),
    ``"detectron2"`` (.pkl: the detectron2 model zoo), ``"hf_dir"`` or ``"hub_id"``.

    A zoo name wins over a folder of the same name here (``./NAME`` names the folder).
    ``owner/name`` is a hub id unless it looks local: it exists, starts with ``.``, ``/`` or ``~``,
    its first folder exists here, or that folder is ``weights/`` (the guide's download location).
    """
    if not weights:
        return "none"
    if is_zoo_name(weights):
        return "zoo"
    if weights.endswith((".pth", ".pt")):
        return "checkpoint"
    if weights.endswith(".pkl"):
        return "detectron2"
    path = os.path.expanduser(weights)
    first = weights.split("/")[0]
    if (
        os.path.isdir(path)
        or weights.startswith((".", "/", "~"))
        or first == LOCAL_WEIGHTS_FOLDER
        or (weights.count("/") and os.path.isdir(first))
    ):
        return "hf_dir"
    return "hub_id" if weights.count("/") == 1 else "hf_dir"


def resolve_weights(weights: str) -> str:
    """What to read for ``weights``: a zoo name becomes its installed file, once its checksum has
    been checked (:func:`zoo_path`; one-line :class:`WeightsError` otherwise); anything else is
    returned as it is. Every reader of MODEL.WEIGHTS goes through here."""
    return zoo_path(weights) if weights_kind(weights) == "zoo" else weights


def download_hint(weights: str) -> str:
    """How to get ``weights`` (a hub id), or the COCO weights into the folder ``weights`` names."""
    if weights_kind(weights) == "hub_id":
        repo, local = weights, os.path.join(LOCAL_WEIGHTS_FOLDER, weights.split("/")[-1])
    else:
        repo, local = (
            COCO_SWIN_B_WEIGHTS,
            weights or os.path.join(LOCAL_WEIGHTS_FOLDER, COCO_SWIN_B_WEIGHTS.split("/")[-1]),
        )
    return (
        f"download the weights once with `hf download {repo} --local-dir {local}` (huggingface_hub's CLI) "
        f"on a machine with internet, copy the folder here, and set MODEL.WEIGHTS {local}"
    )


def missing_folder_message(weights: str) -> str:
    path = os.path.expanduser(weights)
    if not os.path.isdir(path):
        return "folder not found; " + download_hint(weights)
    return "not a Hugging Face model folder (no config.json); " + download_hint(weights)


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
    elif kind == "zoo":
        try:
            info.update(status="ok", path=zoo_path(weights), hint="a model shipped with the package")
        except WeightsError as err:
            info.update(status="missing", hint=str(err))
    elif kind == "detectron2":
        info.update(status="ok") if os.path.isfile(weights) else info.update(
            status="missing", hint=f"detectron2 weights {weights} not found"
        )
    elif kind == "checkpoint":
        if os.path.isfile(weights):
            info.update(status="ok")
        elif stage == 2:
            info.update(
                status="pending",
                hint="Stage 1 checkpoint not found yet: run Stage 1 first "
                "(python train_two_stage.py --stage 1)",
            )
        else:
            info.update(status="missing", hint=f"checkpoint {weights} not found")
    elif kind == "hf_dir":
        if os.path.isfile(os.path.join(os.path.expanduser(weights), "config.json")):
            info.update(status="ok")
        else:
            info.update(status="missing", hint=f"{weights}: " + missing_folder_message(weights))
    else:
        if hub_cached(weights):
            info.update(status="ok", hint="found in the local Hugging Face cache")
        else:
            info.update(
                status="download",
                hint="not in the local Hugging Face cache: training downloads it when online; offline, "
                + download_hint(weights),
            )
    return info


# --------------------------------------------------------------------------- loading

QUERY_KEYS = (
    "model.transformer_module.queries_embedder.weight",
    "model.transformer_module.queries_features.weight",
)
# Re-initialised when the class count or query count differs from the source weights.
REINIT_PREFIXES = ("class_predictor.", "criterion.empty_weight") + QUERY_KEYS


# Config nodes that decide the architecture (MODEL.MASK_FORMER.TEST holds inference thresholds).
ARCHITECTURE_NODES = ("BACKBONE", "SWIN", "CONVNEXT", "RESNET", "SEM_SEG_HEAD", "MASK_FORMER")


def checkpoint_architecture(cfg: CfgNode, weights: str) -> tuple[CfgNode, list[str]]:
    """``cfg`` with the architecture of the project checkpoint ``weights``, as it was trained.

    Prediction and evaluation build the model the checkpoint holds, whatever the config file
    says (a config with other query counts would otherwise pad the model with random queries).
    Returns the config (``cfg`` itself when nothing differs) and the changes, for the log.
    """
    weights = resolve_weights(weights)
    if weights_kind(weights) != "checkpoint" or not os.path.isfile(weights):
        return cfg, []
    stored = read_checkpoint(weights).get("cfg")
    if not isinstance(stored, str):
        return cfg, []
    trained = CfgNode.load_cfg(stored)
    changes: list[tuple[str, Any]] = []
    for node in ARCHITECTURE_NODES:
        ours, theirs = cfg.MODEL[node], trained.get("MODEL", {}).get(node, {})
        for key, value in theirs.items():
            if key != "TEST" and key in ours and ours[key] != value and not isinstance(value, dict):
                changes.append((f"MODEL.{node}.{key}", value))
    if not changes:
        return cfg, []
    adopted = cfg.clone()
    adopted.defrost()
    adopted.merge_from_list([item for change in changes for item in change])
    adopted.freeze()
    return adopted, [f"{key} {value} (the config says {_cfg_value(cfg, key)})" for key, value in changes]


def checkpoint_config(weights: str) -> CfgNode:
    """The config a project checkpoint (or a zoo model) was trained with, for predicting without a
    config file: architecture, input and inference settings as trained.

    Keys this version does not know are left out (a checkpoint may come from another release), and
    MODEL.DEVICE becomes ``auto``: the device a model was trained on says nothing about this machine.
    MODEL.WEIGHTS is ``weights`` itself. Raises :class:`WeightsError` for weights that hold no config.
    """
    path = resolve_weights(weights)
    if weights_kind(path) != "checkpoint":
        raise WeightsError(
            weights,
            "only a project checkpoint (.pth) or a named model carries its config: give --config-file",
        )
    state = read_checkpoint(path)
    stored = state.get("cfg") if isinstance(state, dict) else None
    if not isinstance(stored, str):
        raise WeightsError(weights, "the checkpoint holds no config: give --config-file")
    cfg = get_cfg()
    try:
        trained = CfgNode.load_cfg(stored)
    except Exception as err:
        raise WeightsError(
            weights, f"the checkpoint's config is unreadable ({type(err).__name__}): give --config-file"
        ) from None
    known, unknown = _known_keys(trained, cfg)
    if unknown:
        logger.info("%s: config keys unknown to this version, ignored: %s", weights, ", ".join(unknown))
    try:
        cfg.merge_from_other_cfg(CfgNode(known))
    except (KeyError, ValueError, AssertionError, TypeError) as err:
        raise WeightsError(
            weights,
            f"the checkpoint's config does not fit this version ({str(err).splitlines()[0][:160]}): "
            "give --config-file",
        ) from None
    cfg.MODEL.WEIGHTS = weights
    cfg.MODEL.DEVICE = "auto"
    return cfg


def _known_keys(stored: dict, defaults: CfgNode, prefix: str = "") -> tuple[dict, list[str]]:
    """``stored`` without the keys ``defaults`` lacks, and those keys' full names."""
    known: dict = {}
    unknown: list[str] = []
    for key, value in stored.items():
        if key not in defaults:
            unknown.append(prefix + key)
        elif isinstance(value, dict) and isinstance(defaults[key], dict):
            known[key], more = _known_keys(value, defaults[key], f"{prefix}{key}.")
            unknown += more
        else:
            known[key] = value
    return known, unknown


def _cfg_value(cfg: CfgNode, key: str):
    value = cfg
    for part in key.split("."):
        value = value[part]
    return value


def load_model(cfg: CfgNode, class_names: list[str], weights: str | None = None, for_training: bool = False):
    """Build the configured model and load ``weights`` (default ``cfg.MODEL.WEIGHTS``).

    ``for_training``: a checkpoint with fewer queries than the config is grown (learned queries
    kept, new ones added) only when training starts from it; anywhere else a mismatch is refused.
    Returns ``(model, description)``; the description says what was loaded, for the logs.
    """
    weights = cfg.MODEL.WEIGHTS if weights is None else weights
    name = weights if weights_kind(weights) == "zoo" else None
    weights = resolve_weights(weights)
    kind = weights_kind(weights)
    if kind == "none":
        logger.warning("MODEL.WEIGHTS is empty: the model starts from random initialisation")
        return build_model(cfg, class_names), "random initialisation"
    if kind in ("checkpoint", "detectron2"):
        if not os.path.isfile(weights):
            raise WeightsError(
                weights, "checkpoint not found" if kind == "checkpoint" else "weights file not found"
            )
        model = build_model(cfg, class_names)
        d2 = read_detectron2(weights)
        if d2 is not None:
            return model, load_detectron2_state(model, weights, d2, cfg, grow_queries=for_training)
        if kind == "detectron2":
            raise WeightsError(
                weights, "not a detectron2 Mask2Former checkpoint (no backbone.* / sem_seg_head.* weights)"
            )
        n = load_project_checkpoint(model, weights, grow_queries=for_training)
        return model, f"{name} ({weights}, {n} tensors)" if name else f"{weights} ({n} tensors)"
    model = _load_hf_pretrained(weights, build_hf_config(cfg, class_names))
    configure_trainable_parts(model, cfg)
    return model, f"{weights} (Hugging Face weights; class head re-initialised for {class_names})"


def architecture_mismatch(count: int, example: str) -> str:
    return (
        f"checkpoint does not fit the configured architecture ({count} tensors differ, e.g. {example}): "
        "use the same MODEL.BACKBONE / MODEL.SWIN / MODEL.RESNET / MODEL.SEM_SEG_HEAD / MODEL.MASK_FORMER "
        "settings as the run that wrote it"
    )


def query_mismatch(source: int, target: int) -> str:
    return (
        f"checkpoint has {source} queries, the config {target}: predict and evaluate "
        "with MODEL.MASK_FORMER.NUM_OBJECT_QUERIES as trained (only training may add queries)"
    )


def fit_tensors(
    path: str,
    own: dict[str, torch.Tensor],
    source: dict[str, torch.Tensor],
    grow_queries: bool,
    missing_reinitialised: bool = False,
) -> tuple[dict, list[str]]:
    """The one rule for every weight format: which of ``source``'s tensors load into a model whose
    state is ``own``. A tensor of the same shape loads; the learned queries are grown when there
    are fewer than configured (training only, refused elsewhere); the heads that depend on the
    class or query count (REINIT_PREFIXES) are re-initialised when missing or of another shape;
    anything else misshapen refuses the weights, and so does anything else missing unless
    ``missing_reinitialised`` (a converted detectron2 state names only what it converts). Returns
    (loadable, re-initialised keys)."""
    loadable: dict[str, torch.Tensor] = {}
    reinitialised: list[str] = []
    fatal: list[str] = []
    for key, target in own.items():
        tensor = source.get(key)
        if tensor is not None and tuple(tensor.shape) == tuple(target.shape):
            loadable[key] = tensor.to(target.dtype)
        elif tensor is not None and key in QUERY_KEYS:
            if not grow_queries:
                raise WeightsError(path, query_mismatch(tensor.shape[0], target.shape[0]))
            loadable[key] = _grow_queries(tensor.to(target.dtype), target)
        elif key.startswith(REINIT_PREFIXES) or (tensor is None and missing_reinitialised):
            reinitialised.append(key)
        else:
            fatal.append(key)
    if fatal:
        raise WeightsError(path, architecture_mismatch(len(fatal), fatal[0]))
    return loadable, reinitialised


def load_detectron2_state(model, path: str, state: dict, cfg: CfgNode, grow_queries: bool = False) -> str:
    """Load a detectron2 Mask2Former state dict into ``model``; returns what was loaded, for the log.

    The architecture must be the config's (read from the shapes; refused otherwise). Queries are
    grown as from hub weights (training only), the class head is re-initialised when the class
    count differs, and every key loaded, re-initialised or left over is reported.
    """
    check_head(path, state)
    theirs = architecture(state)
    ours = {
        k: list(v) if isinstance(v, (list, tuple)) else v
        for k, v in ((k, _cfg_value(cfg, k)) for k in ARCHITECTURE_KEYS)
    }
    differences = describe_differences(ours, theirs)
    if differences:
        raise WeightsError(
            path,
            f"the checkpoint is a {swin_name(theirs)} Mask2Former that differs from the config: "
            f"{'; '.join(differences[:3])}; set these keys (e.g. --opts) to load it",
        )
    converted, unexpected = to_transformers(state)
    own = model.state_dict()
    loadable, reinitialised = fit_tensors(path, own, converted, grow_queries, missing_reinitialised=True)
    model.load_state_dict(loadable, strict=False)
    unused = sorted(set(converted) - set(own))
    logger.info(
        "detectron2 %s: loaded %d tensors; re-initialised: %s; unexpected (not loaded): %s",
        path,
        len(loadable),
        ", ".join(reinitialised) or "none",
        ", ".join(unexpected + unused) or "none",
    )
    return (
        f"{path} (detectron2 {swin_name(theirs)} Mask2Former, {theirs['classes']} classes; "
        f"{len(loadable)} tensors loaded, {len(reinitialised)} re-initialised)"
    )


def read_checkpoint(path: str) -> dict:
    """torch.load a project checkpoint (or a zoo model, by name); one-line errors for missing or
    corrupt files."""
    path = resolve_weights(path)
    if not os.path.isfile(path):
        raise WeightsError(path, "checkpoint not found")
    try:
        # Our checkpoints hold only tensors, numbers and strings: the safe loader reads them.
        # mmap: reading only the class names (predictor start-up) does not pull in every tensor.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise WeightsError(
            path, f"cannot read checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:120]})"
        ) from None


def load_project_checkpoint(model, path: str, grow_queries: bool = False) -> int:
    """Load a project ``.pth`` (model_final.pth or a periodic checkpoint) into ``model``."""
    state = read_checkpoint(path)
    state_dict = state.get("model", state) if isinstance(state, dict) else None
    if not isinstance(state_dict, dict) or not state_dict:
        raise WeightsError(path, "not a model checkpoint (no 'model' state dict)")
    own = model.state_dict()
    unexpected = [k for k in state_dict if k not in own and not k.startswith(REINIT_PREFIXES)]
    if unexpected:
        raise WeightsError(path, architecture_mismatch(len(unexpected), unexpected[0]))
    loadable, reinitialised = fit_tensors(path, own, state_dict, grow_queries)
    for key in reinitialised:
        if key in state_dict:
            logger.warning(
                "%s: %s has shape %s, model needs %s: re-initialised",
                path,
                key,
                tuple(state_dict[key].shape),
                tuple(own[key].shape),
            )
    model.load_state_dict(loadable, strict=False)
    logger.info("Loaded %d/%d tensors from %s", len(loadable), len(own), path)
    return len(loadable)


def _grow_queries(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Keep the learned queries and add freshly initialised ones (or keep the first ones)."""
    out = target.clone()
    n = min(len(source), len(target))
    out[:n] = source[:n]
    logger.info("Queries: kept %d learned, %d new", n, max(0, len(target) - n))
    return out


def _load_hf_pretrained(weights: str, hf_config):
    from transformers import Mask2FormerForUniversalSegmentation

    location = os.path.expanduser(weights)
    if weights_kind(weights) == "hf_dir" and not os.path.isfile(os.path.join(location, "config.json")):
        raise WeightsError(weights, missing_folder_message(weights))
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report lists every re-initialised tensor; we summarise below
    try:
        model, info = Mask2FormerForUniversalSegmentation.from_pretrained(
            location, config=hf_config, ignore_mismatched_sizes=True, output_loading_info=True
        )
    except (OSError, ValueError) as err:
        first = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise WeightsError(
            weights, f"cannot load pretrained weights ({first}); " + download_hint(weights)
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    mismatched = [k for k, *_ in info.get("mismatched_keys", [])]
    missing = list(info.get("missing_keys", []))
    fatal = [k for k in mismatched + missing if not str(k).startswith(REINIT_PREFIXES)]
    if fatal:
        raise WeightsError(
            weights,
            "pretrained weights do not fit the configured architecture "
            f"({len(fatal)} tensors differ, e.g. {fatal[0]}); MODEL.SWIN must match the checkpoint "
            "(Swin-B: EMBED_DIM 128, DEPTHS [2,2,18,2], NUM_HEADS [4,8,16,32], WINDOW_SIZE 12)",
        )
    logger.info(
        "Loaded pretrained %s; re-initialised: %s", weights, ", ".join(sorted(set(mismatched))) or "nothing"
    )
    queries = [k for k in mismatched if k in QUERY_KEYS]
    if queries:
        source = _read_pretrained_tensors(location, queries)
        with torch.no_grad():
            own = model.state_dict()
            for key, tensor in source.items():
                own[key].copy_(_grow_queries(tensor, own[key]))
    return model


def _read_pretrained_tensors(location: str, keys: list[str]) -> dict[str, torch.Tensor]:
    from transformers.utils import cached_file

    for filename in ("model.safetensors", "pytorch_model.bin"):
        try:
            path = cached_file(location, filename, _raise_exceptions_for_missing_entries=False)
        except OSError:
            path = None
        if not path:
            continue
        if filename.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(path, framework="pt") as f:
                return {k: f.get_tensor(k) for k in keys if k in f.keys()}
        state = torch.load(path, map_location="cpu", weights_only=True)
        return {k: state[k] for k in keys if k in state}
    logger.warning("%s: could not re-read the learned queries; all queries start fresh", location)
    return {}
