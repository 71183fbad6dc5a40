"""Read manual annotations from the tools people use: COCO, CVAT XML, LabelMe, VIA, label images.

``load_manual_annotations(path)`` detects the format (``detect_format``) and returns an
:class:`ImportedDataset`; the detection rules are listed in ``docs/organize.md``.
"""

from __future__ import annotations

import os

from ...errors import DatasetError
from .base import TEST, TRAIN, UNLABELLED, ImportedDataset, ImportedImage, ImportedInstance, read_json
from .coco import is_coco, load_coco
from .cvat import decode_cvat_rle, is_cvat_xml, load_cvat
from .label_images import LABEL_FOLDERS, find_label_pairs, label_stem, load_label_images
from .labelme import is_labelme, load_labelme
from .via import is_via, is_via3, load_via

FORMATS = ("coco", "cvat", "labelme", "via", "labels")

__all__ = [
    "FORMATS",
    "TEST",
    "TRAIN",
    "UNLABELLED",
    "ImportedDataset",
    "ImportedImage",
    "ImportedInstance",
    "decode_cvat_rle",
    "detect_format",
    "find_label_pairs",
    "load_manual_annotations",
]

_LOADERS = {
    "coco": load_coco,
    "cvat": load_cvat,
    "labelme": load_labelme,
    "via": load_via,
    "labels": load_label_images,
}


def classify_json(data: object) -> str | None:
    """Which format a parsed JSON document is, or None."""
    if is_coco(data):
        return "coco"
    if is_labelme(data):
        return "labelme"
    if is_via(data):
        return "via"
    return None


def detect_format(path: str | os.PathLike) -> str:
    """One of :data:`FORMATS` for a file or folder; DatasetError if none or several match.

    Files: ``.xml`` with an ``<annotations>`` root is CVAT; ``.json`` is COCO (``images``,
    ``annotations``, ``categories`` lists), LabelMe (``shapes`` + ``imagePath``) or VIA
    (``_via_img_metadata``, or per-image ``filename``/``regions`` entries). Folders: the JSON and XML
    files at the top, in ``annotations/`` and in train/test/val sub-folders are classified the same
    way, and label images are recognised by the pairing rule of :mod:`.label_images`.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DatasetError(path, "manual annotations not found")
    if os.path.isfile(path):
        return _detect_file(path)
    found: dict[str, list[str]] = {}
    for candidate in _candidate_files(path):
        if candidate.lower().endswith(".xml"):
            kind = "cvat" if is_cvat_xml(candidate) else None
        else:
            data = read_json(candidate)
            if is_via3(data):
                raise DatasetError(
                    candidate,
                    "VIA 3 project files are not supported; export the annotations from VIA 2 as JSON",
                )
            kind = classify_json(data)
        if kind:
            found.setdefault(kind, []).append(os.path.relpath(candidate, path))
    if _has_label_images(path):
        found.setdefault("labels", []).append("label images")
    if len(found) == 1:
        return next(iter(found))
    if not found:
        raise DatasetError(
            path,
            "no annotations found "
            "(looked for COCO/LabelMe/VIA JSON, CVAT XML and label images; see docs/organize.md)",
        )
    listing = "; ".join(
        f"{kind}: {', '.join(files[:3])}{' ...' if len(files) > 3 else ''}" for kind, files in found.items()
    )
    raise DatasetError(path, f"several annotation formats found ({listing}); choose one with --manual_format")


def load_manual_annotations(
    path: str | os.PathLike, fmt: str = "auto", image_dir: str | os.PathLike | None = None
) -> ImportedDataset:
    """Import manual annotations of format ``fmt`` ("auto" detects it) from a file or folder.

    ``image_dir`` is searched first for the annotated images (see each format's lookup rule).
    """
    path = os.fspath(path)
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt not in _LOADERS:
        raise DatasetError(
            None, f"unknown annotation format {fmt!r} (choose from auto, {', '.join(FORMATS)})"
        )
    if not os.path.exists(path):
        raise DatasetError(path, "manual annotations not found")
    return _LOADERS[fmt](path, image_dir=os.fspath(image_dir) if image_dir is not None else None)


def _detect_file(path: str) -> str:
    lower = path.lower()
    if lower.endswith(".xml"):
        if is_cvat_xml(path):
            return "cvat"
        raise DatasetError(
            path, "not a CVAT XML file (expected an <annotations> root: export 'CVAT for images 1.1')"
        )
    if lower.endswith(".json"):
        data = read_json(path)
        if is_via3(data):
            raise DatasetError(
                path, "VIA 3 project files are not supported; export the annotations from VIA 2 as JSON"
            )
        kind = classify_json(data)
        if kind is None:
            raise DatasetError(
                path, "JSON is neither COCO, LabelMe nor VIA (see docs/organize.md for what each needs)"
            )
        return kind
    raise DatasetError(path, "give a COCO/LabelMe/VIA .json file, a CVAT .xml file or a folder")


def _candidate_files(folder: str) -> list[str]:
    dirs = [folder, os.path.join(folder, "annotations")]
    dirs += [
        os.path.join(folder, d)
        for d in sorted(os.listdir(folder))
        if d.lower() in ("train", "test", "val", "validation")
    ]
    files = []
    for d in dirs:
        if os.path.isdir(d):
            files += [
                os.path.join(d, f)
                for f in sorted(os.listdir(d))
                if f.lower().endswith((".json", ".xml")) and os.path.isfile(os.path.join(d, f))
            ]
    return files


def _has_label_images(folder: str) -> bool:
    for sub in LABEL_FOLDERS:
        if os.path.isdir(os.path.join(folder, sub)) and os.path.isdir(os.path.join(folder, "images")):
            return True
    return any(label_stem(f) is not None for f in os.listdir(folder))
