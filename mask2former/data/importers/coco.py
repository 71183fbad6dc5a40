"""COCO instances JSON (as CVAT's "COCO 1.0" export writes it, or the annotator's own output).

Accepted input: one JSON file, or a folder holding COCO JSON files directly or in ``annotations/``
(CVAT's export layout ``annotations/instances_<subset>.json`` + ``images/``). A file whose name says
test/val (``instances_Test.json``, ``test_annotations.json``) becomes the test split.

Images are looked up, first hit wins, in: ``image_dir`` (``--manual_image_dir``), the JSON's folder,
its ``images/`` subfolder, the ``images/`` folder beside it (``../images``), and
``../images/<subset>`` for CVAT subset exports; each with the file name as written, then its base name.
"""

from __future__ import annotations

import glob
import os
from collections import Counter
from typing import Any

from ...errors import DatasetError
from ..coco import scale_keys
from .base import (
    ImportedDataset,
    ImportedImage,
    ImportedInstance,
    as_coordinates,
    as_image_size,
    as_label,
    coco_rle,
    note_lines,
    read_json,
    resolve_image,
    short,
    split_from_name,
)


def is_coco(data: Any) -> bool:
    return isinstance(data, dict) and all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    )


def find_coco_files(folder: str) -> list[str]:
    """COCO JSON files directly in ``folder`` or in ``folder/annotations`` (sorted)."""
    files = sorted(glob.glob(os.path.join(glob.escape(folder), "*.json")))
    files += sorted(glob.glob(os.path.join(glob.escape(folder), "annotations", "*.json")))
    return [f for f in files if is_coco(read_json(f))]


def load_coco(path: str, image_dir: str | None = None, split: str | None = None) -> ImportedDataset:
    """One COCO file, or every COCO file of a folder (splits taken from the file names)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        files = find_coco_files(path)
        if not files:
            raise DatasetError(
                path, "no COCO annotation file found (looked for *.json here and in annotations/)"
            )
    else:
        files = [path]
    dataset = ImportedDataset(source=path, format="coco")
    for json_file in files:
        file_split = split or (split_from_name(json_file) if len(files) > 1 or os.path.isdir(path) else None)
        images, warnings = load_coco_file(json_file, image_dir=image_dir, split=file_split)
        dataset.images.extend(images)
        dataset.warnings.extend(warnings)
    return dataset


def load_coco_file(
    json_file: str,
    image_dir: str | None = None,
    split: str | None = None,
    search_dirs: list[str] | None = None,
) -> tuple[list[ImportedImage], list[str]]:
    """Images with their instances from one COCO file; polygons kept as polygons, RLE as RLE."""
    data = read_json(json_file)
    if not is_coco(data):
        raise DatasetError(
            json_file, "not a COCO instances file (needs 'images', 'annotations' and 'categories' lists)"
        )
    categories = _read_categories(data["categories"], json_file)
    images = _read_images(data["images"], json_file, image_dir, split, search_dirs)
    notes = _add_annotations(data["annotations"], images, categories, json_file)
    warnings = note_lines(json_file, notes)
    return list(images.values()), warnings


def _read_categories(entries: list, json_file: str) -> dict[Any, str]:
    """Category labels by id."""
    categories: dict[Any, str] = {}
    for i, cat in enumerate(entries):
        if not isinstance(cat, dict) or "id" not in cat or not _hashable(cat["id"]):
            raise DatasetError(json_file, f"category #{i} needs an id: {short(cat)}")
        categories[cat["id"]] = as_label(cat.get("name", cat["id"]))
    return categories


def _read_images(
    entries: list, json_file: str, image_dir: str | None, split: str | None, search_dirs: list[str] | None
) -> dict[Any, ImportedImage]:
    """The images by id, in the file's order, each with its file found on disk."""
    here = os.path.dirname(os.path.abspath(json_file))
    parent = os.path.dirname(here)
    images: dict[Any, ImportedImage] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "id" not in entry or not _hashable(entry["id"]):
            raise DatasetError(json_file, f"image entry #{i} needs an id: {short(entry)}")
        name = entry.get("file_name")
        if not isinstance(name, str) or not name.strip():
            raise DatasetError(json_file, f"image id {short(entry['id'])} has no file_name")
        if entry["id"] in images:
            raise DatasetError(json_file, f"duplicate image id {short(entry['id'])}")
        what = f"image {name!r}"
        height, width = as_image_size(entry.get("height"), entry.get("width"), what, json_file)
        subset_dirs = [os.path.join(parent, "images", split)] if split else []
        dirs = (
            search_dirs
            if search_dirs is not None
            else [image_dir, here, os.path.join(here, "images"), os.path.join(parent, "images"), *subset_dirs]
        )
        image_path = resolve_image(name, dirs, json_file)
        images[entry["id"]] = ImportedImage(
            name=name,
            annotation_file=json_file,
            path=image_path,
            height=height,
            width=width,
            split=split,
            scale_keys=scale_keys(entry),
        )
    return images


def _add_annotations(
    entries: list, images: dict[Any, ImportedImage], categories: dict[Any, str], json_file: str
) -> Counter:
    """Attach each annotation to its image as an instance; the counted notes on what was skipped."""
    notes: Counter = Counter()
    for i, ann in enumerate(entries):
        if not isinstance(ann, dict):
            raise DatasetError(json_file, f"annotation #{i} is not an object: {short(ann)}")
        image_id = ann.get("image_id")
        if not _hashable(image_id) or image_id not in images:
            raise DatasetError(
                json_file,
                f"annotation #{i} (id {short(ann.get('id'))}) points at unknown image id {short(image_id)}",
            )
        image = images[image_id]
        what = f"annotation id {short(ann.get('id'))} (image {image.name!r})"
        category_id = ann.get("category_id")
        if not _hashable(category_id) or category_id not in categories:
            raise DatasetError(json_file, f"{what} has unknown category id {short(category_id)}")
        segm = ann.get("segmentation")
        if segm is None or segm == [] or segm == {}:
            # CVAT writes rectangles as bbox-only annotations: no mask to learn from.
            notes["box-only annotations without segmentation"] += 1
            continue
        if ann.get("iscrowd") in (1, True):
            # CVAT exports masks as iscrowd=1 RLE; crowd regions would be ignored in training.
            notes["iscrowd=1 annotations imported as ordinary instances (CVAT writes masks that way)"] += 1
        segmentation = _segmentation(segm, image, what, json_file, notes)
        if segmentation is None:
            continue
        image.instances.append(ImportedInstance(categories[category_id], segmentation, where=what))
    return notes


def _segmentation(
    segm: Any, image: ImportedImage, what: str, json_file: str, notes: Counter
) -> list[list[float]] | dict | None:
    """Polygons as written or RLE checked against the image size; None if no polygon has 3 points."""
    if isinstance(segm, list):
        polygons = []
        for k, poly in enumerate(segm):
            coords = as_coordinates(poly, f"{what} polygon {k}", json_file)
            if len(coords) % 2:
                raise DatasetError(
                    json_file, f"{what}: polygon {k} has an odd number of coordinates ({len(coords)})"
                )
            if len(coords) < 6:
                notes["polygons with fewer than 3 points"] += 1
                continue
            polygons.append(coords)
        return polygons or None
    if isinstance(segm, dict):
        return coco_rle(segm, image.height, image.width, what, json_file)  # type: ignore[arg-type]
    raise DatasetError(json_file, f"{what}: unsupported segmentation {short(segm)}")


def _hashable(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)
