"""The four dataset splits, registered by name from one unified dataset folder.

Registration is explicit (call :func:`register_two_stage_datasets` in ``main()``), never an import
side effect, so worker processes started with ``spawn`` can redo it. When detectron2 is importable
the same splits are registered in its ``DatasetCatalog``/``MetadataCatalog`` too.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from ..errors import DatasetError
from .coco import coco_categories
from .coco_records import load_coco_instances

logger = logging.getLogger(__name__)

ANNOTATION_FILES = {
    "myotube_algorithmic_train": "algorithmic_train_annotations.json",
    "myotube_algorithmic_test": "algorithmic_test_annotations.json",
    "myotube_manual_train": "manual_train_annotations.json",
    "myotube_manual_test": "manual_test_annotations.json",
}
OPTIONAL_SPLITS = {"myotube_manual_test"}
DEFAULT_DATASET_ROOT = "./myotube_dataset"


@dataclass
class DatasetEntry:
    name: str
    json_file: str
    image_root: str
    _records: list | None = field(default=None, repr=False)
    _metadata: dict | None = field(default=None, repr=False)

    def load(self, check_images: bool = True, channel: int = -1, z_project: bool = False) -> list[dict]:
        """Validated records (cached). ``channel`` is ``INPUT.CHANNEL``: multi-channel images
        are only readable once a channel is chosen."""
        if self._records is None:
            self._records = load_coco_instances(
                self.json_file,
                self.image_root,
                self.name,
                check_images=check_images,
                channel=channel,
                z_project=z_project,
            )
        return self._records

    def metadata(self) -> dict:
        """Category names and ids (cached: every stage asks for the class names several times)."""
        if self._metadata is None:
            self._metadata = self._read_metadata()
        return self._metadata

    def _read_metadata(self) -> dict:
        cats = coco_categories(self.json_file)
        return {
            "name": self.name,
            "json_file": self.json_file,
            "image_root": self.image_root,
            "thing_classes": [c.get("name", str(c["id"])) for c in cats],
            "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(cats)},
            "evaluator_type": "coco",
        }


_CATALOG: dict[str, DatasetEntry] = {}


def dataset_paths(root: str | os.PathLike) -> dict[str, tuple[str, str]]:
    """Name → (annotation JSON, image folder) for the four splits of a unified dataset."""
    root = os.path.abspath(os.fspath(root))
    return {
        name: (os.path.join(root, "annotations", fname), os.path.join(root, "images"))
        for name, fname in ANNOTATION_FILES.items()
    }


def register_two_stage_datasets(root: str | os.PathLike = DEFAULT_DATASET_ROOT) -> list[str]:
    """Register every split whose JSON exists under ``root``; return the registered names.

    Re-registering (e.g. in a second process or a test) replaces the previous entry.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise DatasetError(
            root,
            "dataset folder not found (expected images/ and annotations/; "
            "create it with organize_unified_dataset.py)",
        )
    registered = []
    for name, (json_file, image_root) in dataset_paths(root).items():
        if not os.path.isfile(json_file):
            _CATALOG.pop(name, None)
            continue
        _CATALOG[name] = DatasetEntry(name, json_file, image_root)
        registered.append(name)
    _register_with_detectron2(registered)
    return registered


def is_registered(name: str) -> bool:
    return name in _CATALOG


def registered_names() -> list[str]:
    return sorted(_CATALOG)


def get_dataset(name: str) -> DatasetEntry:
    if name not in _CATALOG:
        known = ", ".join(sorted(_CATALOG)) or "none"
        hint = ANNOTATION_FILES.get(name)
        where = f" (expected annotations/{hint} in the dataset folder)" if hint else ""
        raise DatasetError(None, f"dataset '{name}' is not registered{where}; registered: {known}")
    return _CATALOG[name]


def get_dataset_dicts(
    name: str, check_images: bool = True, channel: int = -1, z_project: bool = False
) -> list[dict]:
    return get_dataset(name).load(check_images=check_images, channel=channel, z_project=z_project)


def get_metadata(name: str) -> dict:
    return get_dataset(name).metadata()


def _register_with_detectron2(names: list[str]) -> None:
    try:
        from detectron2.data import DatasetCatalog, MetadataCatalog  # type: ignore[import-not-found]
    except Exception:
        return
    for name in names:
        entry = _CATALOG[name]
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        DatasetCatalog.register(name, lambda entry=entry: entry.load())
        meta = entry.metadata()
        MetadataCatalog.get(name).set(
            json_file=meta["json_file"],
            image_root=meta["image_root"],
            thing_classes=meta["thing_classes"],
            thing_dataset_id_to_contiguous_id=meta["thing_dataset_id_to_contiguous_id"],
            evaluator_type="coco",
        )
    logger.info("Registered %s with detectron2 too", ", ".join(names))
