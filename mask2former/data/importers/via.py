"""VGG Image Annotator (VIA) 2.x JSON: a saved project (``_via_img_metadata``) or the exported
annotations (a flat ``{key: {filename, size, regions, file_attributes}}`` dict). VIA 1.x files
(``regions`` as a dict) are read too.

Regions: ``polygon`` and ``polyline`` (closed by joining the last point to the first: an outline
traced without closing it) become polygon instances; ``rect``, ``circle``, ``ellipse`` and ``point``
are skipped with a warning. The class is the region attribute named ``label``, ``class``,
``category``, ``name``, ``type`` or ``object`` (first present), else the only region attribute
used in the file; with no region attributes at all every region is a myotube. VIA does not store
image sizes: the image file decides.

Images are looked up in: ``image_dir``, the project's ``default_filepath`` (relative to the JSON),
the JSON's folder and its ``images/`` subfolder; the name as written first, then its base name.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from ...errors import DatasetError
from .base import (
    UNLABELLED,
    ImportedDataset,
    ImportedImage,
    ImportedInstance,
    as_label,
    note_lines,
    polygon_from_xy,
    read_json,
    resolve_image,
    short,
)

LABEL_ATTRIBUTES = ("label", "class", "category", "name", "type", "object")
_SKIPPED_SHAPES = {"rect", "circle", "ellipse", "point"}


def via_metadata(data: Any) -> dict | None:
    """The per-image dict of a VIA 2 project or annotation export, else None."""
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("_via_img_metadata"), dict):
        return data["_via_img_metadata"]
    if data and all(isinstance(v, dict) and "filename" in v and "regions" in v for v in data.values()):
        return data
    return None


def is_via(data: Any) -> bool:
    return via_metadata(data) is not None


def is_via3(data: Any) -> bool:
    return isinstance(data, dict) and {"project", "file", "metadata"} <= set(data)


def find_via_files(folder: str) -> list[str]:
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(".json"))
    return [f for f in files if is_via(read_json(f))]


def load_via(path: str, image_dir: str | None = None) -> ImportedDataset:
    path, data, metadata = _read_via_file(os.fspath(path))
    dirs = _image_dirs(data, path, image_dir)
    entries = _image_entries(metadata, path)
    label_key = _label_attribute(entries, path)
    dataset = ImportedDataset(source=path, format="via")
    notes: Counter = Counter()
    seen: set[str] = set()
    for name, regions in entries:
        if name in seen:
            raise DatasetError(path, f"image {name!r} is listed twice")
        seen.add(name)
        image = ImportedImage(name=name, annotation_file=path, path=resolve_image(name, dirs, path))
        for k, region in enumerate(regions):
            instance = _region_instance(region, f"image {name!r} region #{k}", label_key, path, notes)
            if instance is not None:
                image.instances.append(instance)
        dataset.images.append(image)
    if not dataset.images:
        raise DatasetError(path, "lists no image")
    dataset.warnings.extend(note_lines(path, notes))
    return dataset


def _read_via_file(path: str) -> tuple[str, Any, dict]:
    """The VIA 2 file (the only one, if ``path`` is a folder), its parsed JSON and its per-image dict."""
    if os.path.isdir(path):
        files = find_via_files(path)
        if len(files) != 1:
            found = ", ".join(os.path.basename(f) for f in files) or "none"
            raise DatasetError(path, f"expected one VIA JSON file here, found {found}; pass the file itself")
        path = files[0]
    data = read_json(path)
    if is_via3(data):
        raise DatasetError(
            path, "VIA 3 project files are not supported; export the annotations from VIA 2 as JSON"
        )
    metadata = via_metadata(data)
    if metadata is None:
        raise DatasetError(
            path, "not a VIA 2 file (no '_via_img_metadata' and no per-image 'filename'/'regions' entries)"
        )
    return path, data, metadata


def _image_dirs(data: Any, path: str, image_dir: str | None) -> list[str | None]:
    """Where the images are looked for, first hit wins."""
    here = os.path.dirname(os.path.abspath(path))
    default_path = ""
    settings = data.get("_via_settings") if isinstance(data, dict) else None
    if isinstance(settings, dict) and isinstance(settings.get("core"), dict):
        value = settings["core"].get("default_filepath")
        default_path = value if isinstance(value, str) and "://" not in value else ""
    return [
        image_dir,
        os.path.join(here, default_path) if default_path else None,
        here,
        os.path.join(here, "images"),
    ]


def _image_entries(metadata: dict, path: str) -> list[tuple[str, list]]:
    """(file name, regions) of every image, VIA 1.x region dicts read as lists."""
    entries = []
    for key, entry in metadata.items():
        if not isinstance(entry, dict):
            raise DatasetError(path, f"entry {key!r} is not an object")
        name = entry.get("filename")
        if not isinstance(name, str) or not name.strip():
            raise DatasetError(path, f"entry {key!r} has no filename")
        regions = entry.get("regions")
        if isinstance(regions, dict):  # VIA 1.x: {"0": region, "1": region}
            regions = list(regions.values())
        if not isinstance(regions, list):
            raise DatasetError(path, f"image {name!r}: 'regions' must be a list")
        entries.append((name, regions))
    return entries


def _region_instance(
    region: Any, where: str, label_key: str | None, path: str, notes: Counter
) -> ImportedInstance | None:
    """A polygon or polyline region as an instance; None (counted in ``notes``) for a skipped one."""
    if not isinstance(region, dict) or not isinstance(region.get("shape_attributes"), dict):
        raise DatasetError(path, f"{where} has no shape_attributes")
    shape = region["shape_attributes"]
    kind = shape.get("name")
    if not isinstance(kind, str):
        raise DatasetError(path, f"{where}: region shape name must be a string, got {short(kind)}")
    if kind in _SKIPPED_SHAPES:
        notes[f"{kind} regions skipped (no outline of an object; draw polygons)"] += 1
        return None
    if kind not in ("polygon", "polyline"):
        raise DatasetError(path, f"{where}: unknown region shape {short(kind)}")
    polygon = polygon_from_xy(shape.get("all_points_x"), shape.get("all_points_y"), where, path)
    if len(polygon) < 6:
        notes["regions with fewer than 3 points skipped"] += 1
        return None
    if kind == "polyline":
        notes["polyline regions closed into polygons"] += 1
    label = "myotube" if label_key is None else _region_label(region.get("region_attributes"), label_key)
    return ImportedInstance(label, [polygon], where=where)


def _label_attribute(entries: list[tuple[str, list]], path: str) -> str | None:
    keys: Counter = Counter()
    for _name, regions in entries:
        for region in regions:
            attrs = region.get("region_attributes") if isinstance(region, dict) else None
            if isinstance(attrs, dict):
                keys.update(k for k, v in attrs.items() if v not in ("", None, {}))
    for key in LABEL_ATTRIBUTES:
        if key in keys:
            return key
    if not keys:
        return None
    if len(keys) == 1:
        return next(iter(keys))
    raise DatasetError(
        path,
        "cannot tell which region attribute holds the class "
        f"(found {', '.join(repr(k) for k in sorted(keys))}); rename it to 'label'",
    )


def _region_label(attrs: Any, key: str) -> str:
    value = attrs.get(key) if isinstance(attrs, dict) else None
    if isinstance(value, dict):  # checkbox attributes: {"myotube": true}
        chosen = [k for k, v in value.items() if v]
        return as_label(chosen[0]) if len(chosen) == 1 else UNLABELLED
    if isinstance(value, (list, tuple)):
        return UNLABELLED
    return as_label(value)
