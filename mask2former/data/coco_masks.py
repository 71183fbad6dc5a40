"""COCO segmentations as masks and back: polygons and RLE to boolean masks, masks to annotations.

Every dataset, prediction and result file stores instances as COCO segmentations; this module is
the one place that converts between them and numpy masks, through pycocotools, so that training,
evaluation and export all rasterise a polygon to the same pixels. Overlapping instances stay
whole: each mask is encoded on its own. ``rle_string_counts`` decodes a compressed RLE string in
Python with bounds checks, because pycocotools' C decoder trusts its input and a user's file
must be checked before it reaches it (see :mod:`mask2former.data.coco_validation`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


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
