"""Validate a COCO instances dataset before anything trains on it: every problem, each naming its file.

``validate_coco`` reads the JSON and checks categories, image entries, annotations (ids, image and
category references, each segmentation's geometry) and, optionally, that every image file decodes
the way training will read it, at the size the JSON says. It reports all problems at once as
:class:`Finding` lines instead of stopping at the first, so a user fixes a dataset in one pass;
:func:`~mask2former.data.coco_records.load_coco_instances` refuses a dataset with errors.
Segmentations are checked in Python before pycocotools' C code sees them: it has no bounds checks.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from ..errors import DatasetError, ImageReadError
from .coco import is_id, is_int, read_coco_json
from .coco_masks import rle_string_counts, segmentation_to_rle
from .io import read_all_channels, read_image

# pycocotools rasterises polygons in C ints at 5x resolution; no microscopy field comes near this.
MAX_IMAGE_SIDE = 2**24


@dataclass(frozen=True)
class Finding:
    """One problem of a dataset: an error (training refuses the dataset) or a warning."""

    level: str  # "error" or "warning"
    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


def validate_coco(
    json_file: str | os.PathLike,
    image_root: str | os.PathLike,
    check_images: bool = True,
    num_workers: int = 4,
    channel: int | None = -1,
    z_project: bool = False,
) -> list[Finding]:
    """Every problem of a COCO dataset, errors and warnings, each naming its file.

    Images are decoded as training will read them: ``channel`` is ``INPUT.CHANNEL`` (a
    multi-channel image is only valid once a channel is chosen); None accepts any channel count.
    """
    json_file = os.fspath(json_file)
    try:
        data = read_coco_json(json_file)
    except DatasetError as err:
        return [Finding("error", json_file, err.problem)]
    findings: list[Finding] = []

    def error(msg: str, file: str = json_file) -> None:
        findings.append(Finding("error", file, msg))

    def warning(msg: str, file: str = json_file) -> None:
        findings.append(Finding("warning", file, msg))

    categories = _check_categories(data["categories"], error)
    images = _check_images(data["images"], error)
    per_image = _check_annotations(data["annotations"], images, categories, error)

    for img in images.values():
        if per_image[img["id"]] == 0 and data["annotations"]:
            warning(f"image '{img['file_name']}' has no annotations (used as pure background)")

    if check_images:
        findings.extend(
            _check_image_files(images.values(), os.fspath(image_root), num_workers, channel, z_project)
        )
    return findings


def _check_categories(entries: list, error: Callable[[str], None]) -> dict[int, Any]:
    """Category names by id, reporting malformed and duplicate entries."""
    categories = {}
    for cat in entries:
        if not isinstance(cat, dict) or "id" not in cat:
            error(f"category entry without an id: {str(cat)[:80]}")
            continue
        if not is_int(cat["id"]):
            error(f"category id must be an integer, got {str(cat['id'])[:40]}")
            continue
        if cat["id"] in categories:
            error(f"duplicate category id {cat['id']}")
        categories[cat["id"]] = cat.get("name", str(cat["id"]))
    if not categories:
        error("no categories")
    return categories


def _check_images(entries: list, error: Callable[[str], None]) -> dict[Any, dict]:
    """The valid image entries by id, reporting the others and file names listed twice."""
    images: dict[Any, dict] = {}
    for img in entries:
        if not isinstance(img, dict) or not {"id", "file_name", "height", "width"} <= set(img):
            error(f"image entry needs id, file_name, height and width: {str(img)[:80]}")
            continue
        if not is_id(img["id"]):
            error(f"image id must be an integer or a string, got {str(img['id'])[:40]}")
            continue
        if not isinstance(img["file_name"], str) or not img["file_name"] or "\0" in img["file_name"]:
            error(f"image id {img['id']} has an invalid file_name {str(img['file_name'])[:80]!r}")
            continue
        if not (_valid_side(img["height"]) and _valid_side(img["width"])):
            error(
                f"image id {img['id']} ('{img['file_name']}') has invalid size "
                f"{str(img['height'])[:20]}x{str(img['width'])[:20]}"
            )
            continue
        if img["id"] in images:
            error(f"duplicate image id {img['id']} ('{img['file_name']}')")
            continue
        images[img["id"]] = img
    for name, n in Counter(img["file_name"] for img in images.values()).items():
        if n > 1:
            error(f"image file '{name}' is listed {n} times")
    return images


def _check_annotations(
    entries: list, images: dict[Any, dict], categories: dict[int, Any], error: Callable[[str], None]
) -> Counter:
    """Valid annotations per image id, reporting every annotation that is not valid."""
    ann_ids: set = set()
    per_image: Counter = Counter()
    for ann in entries:
        if not isinstance(ann, dict):
            error(f"annotation entry is not an object: {str(ann)[:80]}")
            continue
        aid = ann.get("id")
        label = f"annotation id {str(aid)[:40]}"
        if aid is None:
            error(f"annotation without an id (image_id {str(ann.get('image_id'))[:40]})")
            continue
        if not is_id(aid):
            error(f"annotation id must be an integer or a string, got {str(aid)[:40]}")
            continue
        if aid in ann_ids:
            error(f"duplicate annotation id {aid}")
        ann_ids.add(aid)
        image_id = ann.get("image_id")
        img = images.get(image_id) if is_id(image_id) else None
        if img is None:
            error(f"{label} points at unknown image id {str(image_id)[:40]}")
            continue
        label += f" (image '{img['file_name']}')"
        category_id = ann.get("category_id")
        if not is_int(category_id) or category_id not in categories:
            error(f"{label} has unknown category id {str(category_id)[:40]}")
            continue
        if ann.get("iscrowd", 0) not in (0, 1):
            error(f"{label}: iscrowd must be 0 or 1, got {str(ann.get('iscrowd'))[:40]}")
            continue
        problem = segmentation_problem(ann.get("segmentation"), img["height"], img["width"])
        if problem:
            error(f"{label}: {problem}")
            continue
        per_image[img["id"]] += 1
    if not entries:
        error("no annotations: the file lists no instances at all")
    return per_image


def _valid_side(value: Any) -> bool:
    return is_int(value) and 0 < value <= MAX_IMAGE_SIDE


def segmentation_problem(segm: Any, height: int, width: int) -> str | None:
    """What is wrong with one annotation's segmentation on a ``height`` x ``width`` image (None: nothing)."""
    if segm is None or segm == [] or segm == {}:
        return "has no segmentation"
    if isinstance(segm, list):
        return _polygons_problem(segm, height, width)
    if isinstance(segm, dict):
        return _rle_problem(segm, height, width)
    return f"unsupported segmentation type {type(segm).__name__}"


def _polygons_problem(segm: list, height: int, width: int) -> str | None:
    for poly in segm:
        problem = _polygon_problem(poly, height, width)
        if problem:
            return problem
    area = int(mask_utils.area(segmentation_to_rle(segm, height, width)))
    if area == 0:
        return "polygon covers no pixel"
    return None


def _polygon_problem(poly: Any, height: int, width: int) -> str | None:
    if not isinstance(poly, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in poly
    ):
        return "polygon must be a flat list of numbers [x1, y1, x2, y2, ...]"
    if len(poly) % 2:
        return f"polygon has an odd number of coordinates ({len(poly)})"
    if len(poly) < 6:
        return f"polygon has {len(poly) // 2} points (needs at least 3)"
    pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
    if not np.all(np.isfinite(pts)):
        return "polygon has non-finite coordinates"
    if pts[:, 0].min() >= width or pts[:, 1].min() >= height or pts[:, 0].max() < 0 or pts[:, 1].max() < 0:
        return f"polygon lies outside the {width}x{height} image"
    margin = 1.0
    if (
        pts[:, 0].min() < -margin
        or pts[:, 1].min() < -margin
        or pts[:, 0].max() > width + margin
        or pts[:, 1].max() > height + margin
    ):
        return f"polygon extends outside the {width}x{height} image"
    # A bow-tie's signed area cancels out: report the crossing, not "zero area".
    if _self_intersects(pts):
        return "polygon is self-intersecting"
    if abs(_shoelace(pts)) < 1e-6:
        return "polygon has zero area"
    return None


def _rle_problem(segm: dict, height: int, width: int) -> str | None:
    size = segm.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(is_int(v) for v in size)):
        return "RLE needs 'size': [height, width] (integers)"
    if list(size) != [height, width]:
        return f"RLE size {size[0]}x{size[1]} differs from the image size {height}x{width}"
    counts = segm.get("counts")
    if not isinstance(counts, (list, str)):
        return "RLE needs 'counts' (list or string)"
    # pycocotools decodes run lengths in C without bounds checks: garbage counts would give
    # garbage masks (or worse), so check they are non-negative and cover the image exactly.
    try:
        runs = rle_string_counts(counts) if isinstance(counts, str) else counts
    except ValueError:
        return "RLE 'counts' string is not a valid COCO compressed RLE"
    if not all(is_int(c) and c >= 0 for c in runs):
        return "RLE 'counts' must be non-negative integers"
    if sum(runs) != height * width:
        return f"RLE counts cover {sum(runs)} pixels, image has {height * width}"
    try:
        area = int(mask_utils.area(segmentation_to_rle(segm, height, width)))
    except Exception as err:  # pycocotools raises bare exceptions on garbage counts
        return f"RLE cannot be decoded ({err})"
    if area == 0:
        return "RLE mask is empty"
    return None


def _shoelace(pts: np.ndarray) -> float:
    x, y = pts[:, 0], pts[:, 1]
    with np.errstate(over="ignore", invalid="ignore"):
        return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _self_intersects(pts: np.ndarray) -> bool:
    """True if two non-adjacent edges cross properly (touching at a vertex is allowed)."""
    n = len(pts)
    if n < 4:
        return False
    a = pts
    b = np.roll(pts, -1, axis=0)
    for start in range(0, n, 256):
        i = np.arange(start, min(n, start + 256))[:, None]
        j = np.arange(n)[None, :]
        valid = (j > i + 1) & ~((i == 0) & (j == n - 1))
        if not valid.any():
            continue
        p, r = a[i[:, 0]][:, None, :], (b - a)[i[:, 0]][:, None, :]
        q, s = a[None, :, :], (b - a)[None, :, :]
        rxs = r[..., 0] * s[..., 1] - r[..., 1] * s[..., 0]
        qp = q - p
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (qp[..., 0] * s[..., 1] - qp[..., 1] * s[..., 0]) / rxs
            u = (qp[..., 0] * r[..., 1] - qp[..., 1] * r[..., 0]) / rxs
        eps = 1e-9
        crossing = valid & (np.abs(rxs) > eps) & (t > eps) & (t < 1 - eps) & (u > eps) & (u < 1 - eps)
        if crossing.any():
            return True
    return False


def _check_image_files(
    images: Iterable[dict],
    image_root: str,
    num_workers: int,
    channel: int | None = -1,
    z_project: bool = False,
) -> list[Finding]:
    images = list(images)

    def check(img: dict) -> Finding | None:
        path = os.path.join(image_root, img["file_name"])
        try:
            # channel None: any channel layout (the organizer, which knows no INPUT.CHANNEL).
            array = (
                read_all_channels(path, z_project=z_project)
                if channel is None
                else read_image(path, channel=channel, z_project=z_project)
            )
        except ImageReadError as err:
            return Finding("error", path, err.problem)
        h, w = array.shape[:2]
        if (h, w) != (img["height"], img["width"]):
            return Finding(
                "error", path, f"image is {w}x{h} but the JSON says {img['width']}x{img['height']}"
            )
        return None

    if num_workers > 1 and len(images) > 1:
        with ThreadPoolExecutor(max_workers=num_workers) as pool:  # decoders release the GIL
            results = list(pool.map(check, images))
    else:
        results = [check(img) for img in images]
    return [r for r in results if r is not None]
