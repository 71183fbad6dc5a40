"""LabelMe JSON files (one per image), as LabelMe 3.x-5.x writes them.

Accepted input: one LabelMe JSON, or a folder of them. In a folder, files at the top level have
no split; files in sub-folders named ``train``/``test``/``val`` take that split.

Shapes: ``polygon`` (or no ``shape_type``) becomes a polygon instance with the points as written,
which is what LabelMe's own ``labelme2coco`` does; ``mask`` (LabelMe ≥ 5.3: a base64 PNG of the box
whose top-left corner is ``points[0]``) becomes a mask instance. Shapes sharing a ``group_id`` and
label are one object. ``rectangle``, ``circle``, ``line``, ``linestrip`` and ``point`` are skipped with
a warning. The image is ``imagePath`` relative to the JSON file (then ``image_dir`` and the JSON's
folder by base name); if it is missing but the JSON embeds ``imageData``, those bytes are the image.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections import Counter, defaultdict
from typing import Any

import cv2
import numpy as np

from ...errors import DatasetError
from ..coco_masks import mask_to_rle
from ..io import read_all_channels
from .base import (
    ImportedDataset,
    ImportedImage,
    ImportedInstance,
    as_image_size,
    as_label,
    merge_segmentations,
    normalise_relpath,
    note_lines,
    place_mask,
    polygon_from_pairs,
    read_json,
    resolve_image,
    short,
    split_from_name,
)

_SKIPPED_SHAPES = {"rectangle", "circle", "line", "linestrip", "point", "points"}
_MAGIC = (
    (b"\x89PNG", ".png"),
    (b"\xff\xd8", ".jpg"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
    (b"BM", ".bmp"),
)


def is_labelme(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and isinstance(data.get("shapes"), list)
        and ("imagePath" in data or "imageData" in data)
    )


def find_labelme_files(folder: str) -> list[tuple[str, str | None]]:
    """(file, split) for LabelMe JSONs at the top of ``folder`` and in train/test/val sub-folders."""
    found: list[tuple[str, str | None]] = []
    for entry in sorted(os.listdir(folder)):
        full = os.path.join(folder, entry)
        if entry.lower().endswith(".json") and os.path.isfile(full):
            found.append((full, None))
        elif os.path.isdir(full) and split_from_name(entry):
            found += [
                (os.path.join(full, f), split_from_name(entry))
                for f in sorted(os.listdir(full))
                if f.lower().endswith(".json")
            ]
    return found


def load_labelme(path: str, image_dir: str | None = None) -> ImportedDataset:
    path = os.fspath(path)
    dataset = ImportedDataset(source=path, format="labelme")
    notes: Counter = Counter()
    if os.path.isdir(path):
        candidates = find_labelme_files(path)
    else:
        candidates = [(path, None)]
    for json_file, split in candidates:
        data = read_json(json_file)
        if not is_labelme(data):
            if os.path.isdir(path):
                dataset.warnings.append(
                    f"{json_file}: not a LabelMe file (no 'shapes' and 'imagePath'), ignored"
                )
                continue
            raise DatasetError(json_file, "not a LabelMe file (needs 'shapes' and 'imagePath')")
        dataset.images.append(_load_one(json_file, data, split, image_dir, notes, dataset.warnings))
    if not dataset.images:
        raise DatasetError(path, "no LabelMe JSON file found")
    dataset.warnings.extend(note_lines(path, notes))
    return dataset


def _load_one(
    json_file: str, data: dict, split: str | None, image_dir: str | None, notes: Counter, warnings: list[str]
) -> ImportedImage:
    image = _annotated_image(json_file, data, split, image_dir)
    groups = _shape_groups(data["shapes"], image, json_file, notes, warnings)
    for (label, _group), parts in groups.items():
        if len(parts) > 1 and any(isinstance(p, dict) for p, _ in parts) and image.height is None:
            image.height, image.width = _image_size(image)
        segm = merge_segmentations([p for p, _ in parts], image.height, image.width, parts[0][1], json_file)
        image.instances.append(ImportedInstance(label, segm, where=f"{json_file} {parts[0][1]}"))
    return image


def _annotated_image(json_file: str, data: dict, split: str | None, image_dir: str | None) -> ImportedImage:
    """The image a LabelMe file annotates: its file on disk, else the embedded ``imageData``."""
    here = os.path.dirname(os.path.abspath(json_file))
    image_path_field = data.get("imagePath")
    embedded = data.get("imageData")
    if image_path_field is not None and not isinstance(image_path_field, str):
        raise DatasetError(json_file, f"imagePath must be a string, got {short(image_path_field)}")
    if embedded is not None and not isinstance(embedded, str):
        raise DatasetError(json_file, "imageData must be a base64 string")
    name = normalise_relpath(image_path_field) if image_path_field else ""
    image = ImportedImage(
        name=os.path.basename(name) or os.path.splitext(os.path.basename(json_file))[0],
        annotation_file=json_file,
        split=split,
    )
    try:
        if not name:
            raise DatasetError(json_file, "no imagePath")
        image.path = resolve_image(name, [here, image_dir], json_file)
    except DatasetError:
        if not embedded:
            raise
        image.data = _b64(embedded, "imageData", json_file)
        ext = next((e for magic, e in _MAGIC if image.data.startswith(magic)), None)
        if ext is None:
            raise DatasetError(json_file, "imageData is not a PNG, JPEG, TIFF or BMP file") from None
        stem = os.path.splitext(image.name)[0]
        image.name = stem + (
            os.path.splitext(image.name)[1]
            if os.path.splitext(image.name)[1].lower() in _same_format(ext)
            else ext
        )
    if data.get("imageHeight") is not None or data.get("imageWidth") is not None:
        image.height, image.width = as_image_size(
            data.get("imageHeight"), data.get("imageWidth"), "imageHeight/imageWidth:", json_file
        )
    return image


def _shape_groups(
    shapes: list, image: ImportedImage, json_file: str, notes: Counter, warnings: list[str]
) -> dict[tuple[str, Any], list]:
    """(segmentation, where) of each usable shape, keyed by (label, group): one list per object."""
    groups: dict[tuple[str, Any], list] = defaultdict(list)
    for k, shape in enumerate(shapes):
        where = f"shape #{k}"
        if not isinstance(shape, dict):
            raise DatasetError(json_file, f"{where} is not an object: {short(shape)}")
        shape_type = shape.get("shape_type") or "polygon"
        if not isinstance(shape_type, str):
            raise DatasetError(json_file, f"{where}: shape_type must be a string, got {short(shape_type)}")
        if shape_type in _SKIPPED_SHAPES:
            notes[f"{shape_type} shapes skipped (no outline of an object; draw polygons or masks)"] += 1
            continue
        if shape_type == "polygon":
            polygon = polygon_from_pairs(shape.get("points"), where, json_file)
            if len(polygon) < 6:
                points = len(polygon) // 2
                warnings.append(
                    f"{json_file}: {where} (label {shape.get('label')!r}) is a polygon of {points} "
                    f"point{'' if points == 1 else 's'}: "
                    "skipped (a polygon needs at least 3)"
                )
                continue
            segmentation: list[list[float]] | dict = [polygon]
        elif shape_type == "mask":
            if image.height is None:
                image.height, image.width = _image_size(image)
            segmentation = _mask_shape(shape, where, json_file, image.height, image.width, notes)  # type: ignore[arg-type]
        else:
            notes[f"shapes of unknown type {shape_type!r} skipped"] += 1
            continue
        label = as_label(shape.get("label"))
        group = shape.get("group_id")
        if not isinstance(group, (int, str)) or isinstance(group, bool):
            group = None
        key = (label, group if group is not None else f"shape{k}")
        groups[key].append((segmentation, where))
    return groups


def _mask_shape(shape: dict, where: str, json_file: str, height: int, width: int, notes: Counter) -> dict:
    corners = polygon_from_pairs(shape.get("points"), where, json_file)
    if len(corners) < 2:
        raise DatasetError(json_file, f"{where}: a mask shape needs its box corner in 'points'")
    encoded = shape.get("mask")
    if not isinstance(encoded, str) or not encoded:
        raise DatasetError(json_file, f"{where}: mask shape without 'mask' data")
    decoded = cv2.imdecode(
        np.frombuffer(_b64(encoded, f"{where} mask", json_file), np.uint8), cv2.IMREAD_UNCHANGED
    )
    if decoded is None:
        raise DatasetError(json_file, f"{where}: 'mask' is not a PNG image")
    patch = decoded > 0 if decoded.ndim == 2 else (decoded > 0).any(axis=2)
    canvas, clipped = place_mask(patch, int(corners[0]), int(corners[1]), height, width)
    if clipped:
        notes["masks cut at the image border (they extended outside it)"] += 1
    return mask_to_rle(canvas)


def _b64(text: str, what: str, json_file: str) -> bytes:
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        raise DatasetError(json_file, f"{what} is not valid base64") from None


def _image_size(image: ImportedImage) -> tuple[int, int]:
    """Mask shapes need the canvas size; old LabelMe files do not store it."""
    if image.path is not None:
        array = read_all_channels(image.path)
    else:
        array = cv2.imdecode(np.frombuffer(image.data or b"", np.uint8), cv2.IMREAD_UNCHANGED)
        if array is None:
            raise DatasetError(image.annotation_file, "imageData cannot be decoded")
    return int(array.shape[0]), int(array.shape[1])


def _same_format(ext: str) -> tuple[str, ...]:
    return {".jpg": (".jpg", ".jpeg"), ".tif": (".tif", ".tiff")}.get(ext, (ext,))
