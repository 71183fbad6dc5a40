"""A validated COCO dataset as detectron2-style records, the form training and evaluation read.

``load_coco_instances`` validates the dataset first (:mod:`mask2former.data.coco_validation`) and
refuses one with errors, so nothing downstream meets a malformed annotation; it then returns one
record per image with its annotations, contiguous category indices and the image's optional
scale keys. ``record_masks`` rasterises a record's instances (overlaps kept).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from ..errors import DatasetError
from .coco import is_finite_number, read_coco_json, scale_keys
from .coco_masks import segmentation_to_mask, segmentation_to_rle
from .coco_validation import Finding, validate_coco

logger = logging.getLogger(__name__)

BBOX_MODE_XYWH_ABS = 1  # detectron2's BoxMode.XYWH_ABS


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
    :func:`~mask2former.data.coco.coco_categories`). Crowd annotations are kept with ``iscrowd=1``.
    ``channel`` is ``INPUT.CHANNEL``, used when checking that every image can be read.
    """
    json_file = os.fspath(json_file)
    _refuse_errors(
        validate_coco(json_file, image_root, check_images=check_images, channel=channel, z_project=z_project)
    )
    data = read_coco_json(json_file)
    contiguous = {cid: i for i, cid in enumerate(sorted(c["id"] for c in data["categories"]))}
    by_image: dict[Any, list] = {img["id"]: [] for img in data["images"]}
    for ann in data["annotations"]:
        by_image[ann["image_id"]].append(ann)
    records = [_record(img, by_image[img["id"]], contiguous, image_root) for img in data["images"]]
    if dataset_name:
        logger.info(
            "Loaded %d images, %d instances from %s (%s)",
            len(records),
            sum(len(r["annotations"]) for r in records),
            json_file,
            dataset_name,
        )
    return records


def _refuse_errors(findings: list[Finding]) -> None:
    """Log the warnings; raise the first error, counting the others, as a DatasetError."""
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


def _record(img: dict, anns: list[dict], contiguous: dict[int, int], image_root: str | os.PathLike) -> dict:
    """The record of one image entry and its (valid) annotations."""
    record = {
        "file_name": os.path.join(os.fspath(image_root), img["file_name"]),
        "height": img["height"],
        "width": img["width"],
        "image_id": img["id"],
        "annotations": [_record_annotation(ann, img, contiguous) for ann in anns],
    }
    record.update(scale_keys(img))
    return record


def _record_annotation(ann: dict, img: dict, contiguous: dict[int, int]) -> dict:
    """One annotation as detectron2 reads it; a missing or malformed box is computed from the mask."""
    segm = ann["segmentation"]
    bbox = ann.get("bbox")
    if not _valid_bbox(bbox):
        bbox = mask_utils.toBbox(segmentation_to_rle(segm, img["height"], img["width"])).tolist()
    return {
        "id": ann["id"],
        "segmentation": segm,
        "bbox": [float(v) for v in bbox],
        "bbox_mode": BBOX_MODE_XYWH_ABS,
        "category_id": contiguous[ann["category_id"]],
        "iscrowd": int(ann.get("iscrowd", 0)),
    }


def _valid_bbox(bbox: Any) -> bool:
    return isinstance(bbox, list) and len(bbox) == 4 and all(is_finite_number(v) for v in bbox)


def record_masks(record: dict) -> np.ndarray:
    """All instance masks of a record as ``(N, H, W)`` bool (overlaps kept)."""
    h, w = record["height"], record["width"]
    anns = [a for a in record["annotations"] if not a.get("iscrowd")]
    if not anns:
        return np.zeros((0, h, w), dtype=bool)
    return np.stack([segmentation_to_mask(a["segmentation"], h, w) for a in anns])
