"""Read and validate COCO instance-segmentation datasets (polygons and RLE, overlaps allowed).

``validate_coco`` lists every problem as a :class:`Finding` (one line naming the file);
``load_coco_instances`` returns detectron2-style records and refuses a dataset with errors.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from ..errors import DatasetError, ImageReadError
from ..utils.fileio import atomic_write_json
from .io import read_all_channels, read_image

logger = logging.getLogger(__name__)

# The one category of every dataset and result file.
MYOTUBE = "myotube"
CATEGORIES = [{"id": 1, "name": MYOTUBE, "supercategory": "cell"}]

BBOX_MODE_XYWH_ABS = 1  # detectron2's BoxMode.XYWH_ABS


@dataclass(frozen=True)
class Finding:
    level: str  # "error" or "warning"
    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


# --------------------------------------------------------------------------- masks


def segmentation_to_rle(segmentation: Any, height: int, width: int) -> dict:
    """Polygon list, uncompressed RLE or compressed RLE → one compressed RLE."""
    if isinstance(segmentation, list):
        rles = mask_utils.frPyObjects([list(map(float, p)) for p in segmentation], height, width)
        return mask_utils.merge(rles)
    if isinstance(segmentation, dict):
        counts = segmentation.get("counts")
        if isinstance(counts, list):
            return mask_utils.frPyObjects(segmentation, height, width)
        if isinstance(counts, str):
            return {"size": list(segmentation["size"]), "counts": counts.encode("ascii")}
        return segmentation
    raise ValueError(f"unsupported segmentation type {type(segmentation).__name__}")


def segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Rasterise one annotation's segmentation to a boolean ``(height, width)`` mask."""
    return mask_utils.decode(segmentation_to_rle(segmentation, height, width)).astype(bool)


def mask_to_rle(mask: np.ndarray) -> dict:
    """Boolean mask → JSON-ready compressed RLE (``counts`` as str)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def bbox_of_mask(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def mask_annotations(
    masks: Iterable[np.ndarray],
    image_id: int,
    first_id: int = 1,
    scores: Iterable[float] | None = None,
    category_id: int = 1,
) -> list[dict]:
    """COCO annotations of full-size boolean masks: compressed RLE (overlaps kept whole), XYWH box,
    area, ids from ``first_id``; with ``scores``, each annotation's score (predictions)."""
    anns = []
    score_list = None if scores is None else [round(float(s), 6) for s in scores]
    for k, mask in enumerate(masks):
        ann = {
            "id": first_id + k,
            "image_id": image_id,
            "category_id": category_id,
            "segmentation": mask_to_rle(mask),
            "bbox": bbox_of_mask(mask),
            "area": float(np.count_nonzero(mask)),
            "iscrowd": 0,
        }
        if score_list is not None:
            ann["score"] = score_list[k]
        anns.append(ann)
    return anns


# --------------------------------------------------------------------------- reading


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
        if not _is_int(cat["id"]):
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
        if not _is_id(img["id"]):
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
        if not _is_id(aid):
            error(f"annotation id must be an integer or a string, got {str(aid)[:40]}")
            continue
        if aid in ann_ids:
            error(f"duplicate annotation id {aid}")
        ann_ids.add(aid)
        image_id = ann.get("image_id")
        img = images.get(image_id) if _is_id(image_id) else None
        if img is None:
            error(f"{label} points at unknown image id {str(image_id)[:40]}")
            continue
        label += f" (image '{img['file_name']}')"
        category_id = ann.get("category_id")
        if not _is_int(category_id) or category_id not in categories:
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


# pycocotools rasterises polygons in C ints at 5x resolution; no microscopy field comes near this.
MAX_IMAGE_SIDE = 2**24


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_id(value: Any) -> bool:
    return _is_int(value) or isinstance(value, str)


def _valid_side(value: Any) -> bool:
    return _is_int(value) and 0 < value <= MAX_IMAGE_SIDE


def segmentation_problem(segm: Any, height: int, width: int) -> str | None:
    if segm is None or segm == [] or segm == {}:
        return "has no segmentation"
    if isinstance(segm, list):
        for poly in segm:
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
            if (
                pts[:, 0].min() >= width
                or pts[:, 1].min() >= height
                or pts[:, 0].max() < 0
                or pts[:, 1].max() < 0
            ):
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
        area = int(mask_utils.area(segmentation_to_rle(segm, height, width)))
        if area == 0:
            return "polygon covers no pixel"
        return None
    if isinstance(segm, dict):
        size = segm.get("size")
        if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)):
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
        if not all(_is_int(c) and c >= 0 for c in runs):
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
    return f"unsupported segmentation type {type(segm).__name__}"


def rle_string_counts(counts: str) -> list[int]:
    """Run lengths of a COCO compressed RLE string (pycocotools' rleFrString, with bounds checks).

    pycocotools trusts the string and writes past its buffer on garbage, so a user's RLE is
    checked here before it is ever handed to the C code. ValueError says what is wrong.
    """
    runs: list[int] = []
    p, n = 0, len(counts)
    while p < n:
        value, k, more = 0, 0, True
        while more:
            if p >= n:
                raise ValueError("RLE string ends in the middle of a number")
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:  # the encoder only writes characters '0'..'o'
                raise ValueError("RLE string has a character outside the COCO alphabet")
            value |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                value |= -1 << (5 * k)
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


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


# --------------------------------------------------------------------------- loading


def load_coco_instances(
    json_file: str | os.PathLike,
    image_root: str | os.PathLike,
    dataset_name: str | None = None,
    check_images: bool = True,
    channel: int = -1,
    z_project: bool = False,
) -> list[dict]:
    """Validated detectron2-style records: one dict per image with its annotations.

    Category ids become contiguous indices 0..K-1 in the order of sorted COCO ids (see
    :func:`coco_categories`). Crowd annotations are kept with ``iscrowd=1``. ``channel`` is
    ``INPUT.CHANNEL``, used when checking that every image can be read.
    """
    json_file = os.fspath(json_file)
    findings = validate_coco(
        json_file, image_root, check_images=check_images, channel=channel, z_project=z_project
    )
    errors = [f for f in findings if f.level == "error"]
    for f in findings:
        if f.level == "warning":
            logger.warning("%s", f)
    if errors:
        extra = len(errors) - 1
        more = (
            f" (and {extra} more problem{'s' if extra > 1 else ''}; run setup_two_stage.py to list them)"
            if extra
            else ""
        )
        raise DatasetError(errors[0].file, errors[0].message + more)
    data = read_coco_json(json_file)
    contiguous = {cid: i for i, cid in enumerate(sorted(c["id"] for c in data["categories"]))}
    by_image: dict[Any, list] = {img["id"]: [] for img in data["images"]}
    for ann in data["annotations"]:
        by_image[ann["image_id"]].append(ann)
    records = []
    for img in data["images"]:
        anns = []
        for ann in by_image[img["id"]]:
            segm = ann["segmentation"]
            bbox = ann.get("bbox")
            if not _valid_bbox(bbox):
                bbox = mask_utils.toBbox(segmentation_to_rle(segm, img["height"], img["width"])).tolist()
            anns.append(
                {
                    "id": ann["id"],
                    "segmentation": segm,
                    "bbox": [float(v) for v in bbox],
                    "bbox_mode": BBOX_MODE_XYWH_ABS,
                    "category_id": contiguous[ann["category_id"]],
                    "iscrowd": int(ann.get("iscrowd", 0)),
                }
            )
        record = {
            "file_name": os.path.join(os.fspath(image_root), img["file_name"]),
            "height": img["height"],
            "width": img["width"],
            "image_id": img["id"],
            "annotations": anns,
        }
        record.update(scale_keys(img))
        records.append(record)
    if dataset_name:
        logger.info(
            "Loaded %d images, %d instances from %s (%s)",
            len(records),
            sum(len(r["annotations"]) for r in records),
            json_file,
            dataset_name,
        )
    return records


# Optional image-entry keys that say how the stored image relates to the microscope's: the size it
# was resized from, and microns per stored pixel (see data/scale.py).
SCALE_KEYS = ("original_height", "original_width", "pixel_size_um")


def scale_keys(image_entry: dict) -> dict:
    """The valid optional scale keys of a COCO image entry (invalid ones are ignored)."""
    out: dict = {}
    oh, ow = image_entry.get("original_height"), image_entry.get("original_width")
    if all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (oh, ow)):
        out["original_height"], out["original_width"] = oh, ow
    size = image_entry.get("pixel_size_um")
    if _finite_number(size) and size > 0:
        out["pixel_size_um"] = float(size)
    return out


def _valid_bbox(bbox: Any) -> bool:
    return isinstance(bbox, list) and len(bbox) == 4 and all(_finite_number(v) for v in bbox)


def _finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) < 1e300 if isinstance(value, int) else math.isfinite(value)


def coco_categories(json_file: str | os.PathLike) -> list[dict]:
    """Categories sorted by COCO id: index i is the contiguous class id i."""
    data = read_coco_json(json_file)
    return sorted(data["categories"], key=lambda c: c["id"])


def record_masks(record: dict) -> np.ndarray:
    """All instance masks of a record as ``(N, H, W)`` bool (overlaps kept)."""
    h, w = record["height"], record["width"]
    anns = [a for a in record["annotations"] if not a.get("iscrowd")]
    if not anns:
        return np.zeros((0, h, w), dtype=bool)
    return np.stack([segmentation_to_mask(a["segmentation"], h, w) for a in anns])


def dataset_statistics(json_file: str | os.PathLike) -> dict:
    """Counts read from the JSON: images, instances, instances per image (min/median/max)."""
    data = read_coco_json(json_file)
    # Also called on files that failed validation (setup diagnostics): skip what is malformed.
    per_image = Counter(
        {img["id"]: 0 for img in data["images"] if isinstance(img, dict) and _is_id(img.get("id"))}
    )
    for ann in data["annotations"]:
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        if _is_id(image_id) and image_id in per_image:
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
