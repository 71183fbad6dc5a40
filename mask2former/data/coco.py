"""The COCO instances file itself: its one category, reading it, writing it, and counting what is in it.

Every dataset and result file of the toolkit is a COCO instances JSON with the single ``myotube``
category. Reading turns the ways a user's file can be broken (missing, not UTF-8, truncated, not
a COCO file) into a one-line :class:`~mask2former.errors.DatasetError` naming the file; writing is
atomic, so an interrupted run never leaves half a file. The other jobs live beside this module:
checking a dataset's contents in :mod:`mask2former.data.coco_validation`, loading it as training
records in :mod:`mask2former.data.coco_records`, segmentations and masks in
:mod:`mask2former.data.coco_masks`. The small JSON value checks here are shared by them.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from typing import Any

import numpy as np

from ..errors import DatasetError
from ..utils.fileio import atomic_write_json

# The one category of every dataset and result file.
MYOTUBE = "myotube"
CATEGORIES = [{"id": 1, "name": MYOTUBE, "supercategory": "cell"}]

# Optional image-entry keys that say how the stored image relates to the microscope's: the size it
# was resized from, and microns per stored pixel (see data/scale.py).
SCALE_KEYS = ("original_height", "original_width", "pixel_size_um")


def is_int(value: Any) -> bool:
    """A JSON integer (``true`` and ``false`` are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_id(value: Any) -> bool:
    """A valid COCO image or annotation id: an integer or a string."""
    return is_int(value) or isinstance(value, str)


def is_finite_number(value: Any) -> bool:
    """A JSON number that is finite (and, for an integer, not absurdly large)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) < 1e300 if isinstance(value, int) else math.isfinite(value)


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a one-line DatasetError for missing, non-UTF-8 or truncated files."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DatasetError(path, "annotation file not found")
    try:
        with open(path, encoding="utf-8-sig") as f:  # -sig: Windows tools write a BOM
            return json.load(f)
    except UnicodeDecodeError:
        raise DatasetError(path, "not UTF-8 text (is this a JSON file?)") from None
    except json.JSONDecodeError as err:
        raise DatasetError(
            path, f"not valid JSON ({err.msg} at line {err.lineno} column {err.colno}; truncated?)"
        ) from None
    except RecursionError:
        raise DatasetError(path, "JSON nested too deeply") from None
    except OSError as err:
        raise DatasetError(path, f"cannot read the file ({err.strerror or err})") from None


def read_coco_json(json_file: str | os.PathLike) -> dict:
    """Parse a COCO instances file; raise a one-line DatasetError if it is not one."""
    json_file = os.fspath(json_file)
    data = read_json(json_file)
    if not isinstance(data, dict):
        raise DatasetError(json_file, "not a COCO instances file (top level is not an object)")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(json_file, f"not a COCO instances file (missing '{key}' list)")
    return data


def scale_keys(image_entry: dict) -> dict:
    """The valid optional scale keys of a COCO image entry (invalid ones are ignored)."""
    out: dict = {}
    oh, ow = image_entry.get("original_height"), image_entry.get("original_width")
    if all(is_int(v) and v > 0 for v in (oh, ow)):
        out["original_height"], out["original_width"] = oh, ow
    size = image_entry.get("pixel_size_um")
    if is_finite_number(size) and size > 0:
        out["pixel_size_um"] = float(size)
    return out


def coco_categories(json_file: str | os.PathLike) -> list[dict]:
    """Categories sorted by COCO id: index i is the contiguous class id i."""
    data = read_coco_json(json_file)
    return sorted(data["categories"], key=lambda c: c["id"])


def dataset_statistics(json_file: str | os.PathLike) -> dict:
    """Counts read from the JSON: images, instances, instances per image (min/median/max)."""
    data = read_coco_json(json_file)
    # Also called on files that failed validation (setup diagnostics): skip what is malformed.
    per_image = Counter(
        {img["id"]: 0 for img in data["images"] if isinstance(img, dict) and is_id(img.get("id"))}
    )
    for ann in data["annotations"]:
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        if is_id(image_id) and image_id in per_image:
            per_image[image_id] += 1
    counts = list(per_image.values()) or [0]
    return {
        "images": len(data["images"]),
        "instances": len(data["annotations"]),
        "instances_per_image": {
            "min": int(min(counts)),
            "median": float(np.median(counts)),
            "max": int(max(counts)),
        },
        "categories": [str(c.get("name", c.get("id"))) for c in data["categories"] if isinstance(c, dict)],
    }


def write_coco_json(
    path: str | os.PathLike, images: list[dict], annotations: list[dict], categories: list[dict] | None = None
) -> None:
    """Write a COCO instances file atomically."""
    if categories is None:
        categories = CATEGORIES
    atomic_write_json(path, {"images": images, "annotations": annotations, "categories": categories})
