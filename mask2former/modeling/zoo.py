"""Models shipped inside the package, loadable by name (``MODEL.WEIGHTS myotube-base``).

The package folder ``mask2former/model_zoo/`` holds, per model, a project checkpoint (weights,
config, class names, pixel scale: what ``model_final.pth`` holds) and ``models.json``, the
manifest that maps each name to its file, SHA-256 and size. A name resolves to its file only after
the file's checksum matches the manifest: a damaged or half-copied installation would otherwise
load as a model that predicts nonsense, with nothing to say why.

The folder is package data, found beside this package wherever it is installed (no source
checkout needed). :func:`publish` writes a training checkpoint into it; the command
``python -m mask2former.model_zoo.publish`` calls it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import WeightsError
from ..utils.fileio import atomic_open, atomic_write_text

# The zoo folder; tests point it at a temporary folder.
ZOO_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "model_zoo")
MANIFEST = "models.json"
# What a shipped checkpoint keeps of a training checkpoint: no optimizer, scheduler or RNG states.
KEPT_KEYS = ("model", "iteration", "cfg", "class_names", "input_scale")
# A name is one word that cannot be mistaken for a path, a file or a hub id ("owner/name").
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
WEIGHT_SUFFIXES = (".pth", ".pt", ".pkl")
REINSTALL = "reinstall the package (pip install --force-reinstall --no-deps myotube-mask2former)"


@dataclass(frozen=True)
class ZooModel:
    """One manifest entry: ``file`` is relative to the zoo folder; an empty ``sha256`` (with
    ``size_bytes`` 0) means the weights have not been published yet."""

    name: str
    file: str
    sha256: str = ""
    size_bytes: int = 0
    description: str = ""

    @property
    def path(self) -> str:
        return os.path.join(ZOO_DIR, self.file)

    def entry(self) -> dict[str, Any]:
        """The manifest's JSON object for this model (the name is its key)."""
        out = asdict(self)
        del out["name"]
        return out


def manifest_path() -> str:
    return os.path.join(ZOO_DIR, MANIFEST)


def could_be_name(weights: str) -> bool:
    """Whether ``weights`` has the shape of a model name (checked before reading the manifest)."""
    return bool(NAME_PATTERN.match(weights)) and not weights.endswith(WEIGHT_SUFFIXES)


# Manifest contents by (path, mtime, size): weights_kind asks for every MODEL.WEIGHTS it sees.
_MANIFESTS: dict[tuple[str, int, int], dict[str, ZooModel]] = {}


def zoo_models() -> dict[str, ZooModel]:
    """Every model the manifest names (published or not); ``{}`` when there is no manifest."""
    path = manifest_path()
    try:
        st = os.stat(path)
    except OSError:
        return {}
    key = (path, st.st_mtime_ns, st.st_size)
    if key not in _MANIFESTS:
        _MANIFESTS[key] = _read_manifest(path)
    return _MANIFESTS[key]


def _read_manifest(path: str) -> dict[str, ZooModel]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WeightsError(
            path, f"model zoo manifest is unreadable ({type(err).__name__}); {REINSTALL}"
        ) from None
    if not isinstance(data, dict):
        raise WeightsError(path, f"model zoo manifest must map names to entries; {REINSTALL}")
    models = {}
    for name, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or not could_be_name(name):
            raise WeightsError(
                path, f"model zoo entry {name!r} is malformed (it needs at least a 'file'); {REINSTALL}"
            )
        models[name] = ZooModel(
            name=name,
            file=entry["file"],
            sha256=str(entry.get("sha256") or "").lower(),
            size_bytes=int(entry.get("size_bytes") or 0),
            description=str(entry.get("description") or ""),
        )
    return models


def is_zoo_name(weights: str) -> bool:
    """``weights`` names a model of the manifest (whether or not its file is installed)."""
    return could_be_name(weights) and weights in zoo_models()


def available_models() -> list[str]:
    """Names whose file is installed (its checksum is checked when it is loaded), in manifest order."""
    return [name for name, model in zoo_models().items() if model.sha256 and os.path.isfile(model.path)]


# SHA-256 of files already hashed in this process, by (path, mtime, size): a model is resolved
# several times per run (config, class names, pixel scale, weights) and hashing it is not free.
_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str) -> str:
    """Hex SHA-256 of ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cached_sha256(path: str, st: os.stat_result) -> str:
    key = (os.path.realpath(path), st.st_mtime_ns, st.st_size)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_sha256(path)
    return _DIGESTS[key]


def zoo_path(name: str) -> str:
    """The installed file of the model ``name``, after checking it against the manifest.

    Raises :class:`WeightsError` (one line) when the name is unknown, the file is not installed,
    the model was never published (no checksum), or the file's size or checksum does not match.
    """
    models = zoo_models()
    if name not in models:
        known = ", ".join(models) or "none"
        raise WeightsError(name, f"no model of this name in the model zoo (known: {known})")
    model = models[name]
    path = model.path
    if not model.sha256:
        raise WeightsError(
            path,
            f"model {name!r} has not been published in this installation (models.json has no checksum "
            f"for it yet): install a release that ships it, or publish a checkpoint with "
            f"python -m mask2former.model_zoo.publish CHECKPOINT --name {name}",
        )
    try:
        st = os.stat(path)
    except OSError:
        raise WeightsError(
            path, f"model {name!r} is not installed (the file is missing); {REINSTALL}"
        ) from None
    # A file of the wrong size cannot have the right checksum: truncation is found without hashing.
    if st.st_size != model.size_bytes or _cached_sha256(path, st) != model.sha256:
        sizes = (
            f" ({st.st_size} bytes, {model.size_bytes} expected)" if st.st_size != model.size_bytes else ""
        )
        raise WeightsError(
            path,
            f"model {name!r} is damaged: its SHA-256 checksum does not match models.json{sizes}; {REINSTALL}",
        )
    return path


# --------------------------------------------------------------------------- publishing


def publish(
    checkpoint: str, name: str, description: str | None = None, settings: Sequence[str] = ()
) -> ZooModel:
    """Write ``checkpoint`` into the zoo as ``name`` and record its checksum in the manifest.

    ``checkpoint`` is a project checkpoint (``model_final.pth`` or a periodic one) that holds its
    config: named models are predicted without a config file, so one without ``cfg`` is refused.
    Only the weights, iteration, config, class names and pixel scale are kept; tensors are written
    as they are (no dtype change). The file is written through a temp file and renamed, then the
    manifest is updated, so an interrupted publish never leaves a half-written model behind a
    matching checksum. ``description``: kept from the manifest when not given. ``settings``:
    ``KEY VALUE`` pairs written into the model's config (inference settings chosen after training,
    such as the score threshold); a key the config does not have is refused.
    """
    import torch

    if not could_be_name(name):
        raise WeightsError(
            name,
            "a model name is one word of letters, digits, '.', '_' or '-' that does not end in "
            f"{', '.join(WEIGHT_SUFFIXES)}",
        )
    if not os.path.isfile(checkpoint):
        raise WeightsError(checkpoint, "checkpoint not found")
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise WeightsError(
            checkpoint, f"cannot read checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:120]})"
        ) from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict) or not state["model"]:
        raise WeightsError(checkpoint, "not a project checkpoint (no 'model' state dict)")
    if not isinstance(state.get("cfg"), str):
        raise WeightsError(
            checkpoint,
            "holds no config ('cfg'): publish a model_final.pth or a checkpoint written by train_net.py",
        )
    stripped = {key: state[key] for key in KEPT_KEYS if key in state}
    if settings:
        stripped["cfg"] = _with_settings(state["cfg"], list(settings), checkpoint)
    stripped.setdefault("class_names", ["myotube"])

    models = dict(zoo_models())
    previous = models.get(name)
    model = ZooModel(name=name, file=previous.file if previous else f"{name}.pth")
    path = model.path
    with atomic_open(path, "wb") as f:
        torch.save(stripped, f)
    size = os.path.getsize(path)
    model = ZooModel(
        name=name,
        file=model.file,
        sha256=file_sha256(path),
        size_bytes=size,
        description=description if description is not None else (previous.description if previous else ""),
    )
    models[name] = model
    atomic_write_text(manifest_path(), json.dumps({n: m.entry() for n, m in models.items()}, indent=2) + "\n")
    return model


def _with_settings(cfg_text: str, settings: list[str], checkpoint: str) -> str:
    from ..config import CfgNode

    if len(settings) % 2:
        raise WeightsError(checkpoint, f"settings come as KEY VALUE pairs, got {len(settings)} words")
    cfg = CfgNode.load_cfg(cfg_text)
    try:
        cfg.merge_from_list(settings)
    except (KeyError, ValueError, AssertionError) as err:
        raise WeightsError(
            checkpoint, f"cannot apply the settings {settings}: {str(err).splitlines()[0][:160]}"
        ) from None
    return cfg.dump()
