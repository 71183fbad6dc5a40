"""Whole tubes or pieces: how a method's instances cover the isolated tubes of a human mask, and
where the pieces of a cut tube meet (on a tile border or inside a tile). Shared by the real-field
benchmarks (``bench/real_two_stage.py``, ``bench/predict.py``).

The human masks are semantic (touching tubes share one region), so only isolated tubes (regions
whose skeleton has no branch point) are single myotubes; those are scored.
"""

from __future__ import annotations

import cv2
import numpy as np


def isolated_tubes(human: np.ndarray, min_area: int) -> np.ndarray:
    from bench.annotator import single_myotube_regions

    singles, _ = single_myotube_regions(human, min_area=min_area)
    return singles


def instance_proxy(singles: np.ndarray, masks: np.ndarray) -> dict:
    """Isolated human tubes matched one-to-one at IoU > 0.5, and predicted pieces touching each."""
    from mask2former.evaluation.metrics import instance_f1

    if not len(singles):
        return {"tubes": 0, "matched": 0, "pieces": 0}
    matched = instance_f1(singles, masks)["tp"] if len(masks) else 0
    pieces = 0
    if len(masks):
        s = singles.reshape(len(singles), -1).astype(np.float32)
        m = masks.reshape(len(masks), -1).astype(np.float32)
        inter = s @ m.T
        touching = (inter >= 0.05 * s.sum(1)[:, None]) | (inter >= 0.05 * np.maximum(m.sum(1)[None, :], 1))
        pieces = int((touching & (inter > 0)).sum())
    return {"tubes": len(singles), "matched": int(matched), "pieces": pieces}


UNMATCHED_CAUSES = ("missed", "merged", "split", "outline")


def unmatched_causes(singles: np.ndarray, masks: np.ndarray) -> dict[str, int]:
    """Why each isolated tube that no instance matches (IoU > 0.5) is unmatched, in this order:

    - ``missed``: the instances together cover less than half of it;
    - ``merged``: the instance that covers most of it lies mostly outside it (it runs on into a
      neighbour or the background);
    - ``split``: no single instance covers half of it, though together they do;
    - ``outline``: one instance covers half of it and lies mostly inside it, but its outline is
      too narrow or too wide for IoU > 0.5.
    """
    out = dict.fromkeys(UNMATCHED_CAUSES, 0)
    if not len(singles):
        return out
    if not len(masks):
        out["missed"] = len(singles)
        return out
    s = singles.reshape(len(singles), -1).astype(np.float32)
    m = masks.reshape(len(masks), -1).astype(np.float32)
    inter = s @ m.T
    tube_px, mask_px = s.sum(1), m.sum(1)
    iou = inter / np.maximum(tube_px[:, None] + mask_px[None, :] - inter, 1)
    covered = (s * (m.max(axis=0) > 0)).sum(1)
    for k in np.flatnonzero(iou.max(axis=1) <= 0.5):
        main = inter[k].argmax()
        if covered[k] < 0.5 * tube_px[k]:
            out["missed"] += 1
        elif inter[k, main] < 0.5 * mask_px[main]:
            out["merged"] += 1
        elif inter[k, main] < 0.5 * tube_px[k]:
            out["split"] += 1
        else:
            out["outline"] += 1
    return out


def tile_edges(shape: tuple[int, int], tile: int, overlap: float, reach: int = 3) -> np.ndarray:
    """Pixels within ``reach`` of an inner tile border of prediction's tiling (the field's own edges
    are no tile border)."""
    from mask2former.inference.tiling import tile_grid

    h, w = shape
    edges = np.zeros((h, w), bool)
    for t in tile_grid(h, w, tile, overlap):
        for y in (t.y0, t.y1):
            if 0 < y < h:
                edges[max(0, y - reach) : y + reach, t.x0 : t.x1] = True
        for x in (t.x0, t.x1):
            if 0 < x < w:
                edges[t.y0 : t.y1, max(0, x - reach) : x + reach] = True
    return edges


def seam_breakdown(singles: np.ndarray, masks: np.ndarray, edges: np.ndarray) -> dict:
    """Where the pieces of each cut isolated tube meet: on a tile border or inside a tile; and how
    much of the instances' outlines lies on tile borders.

    Each pixel of a tube's skeleton belongs to the highest-scoring instance covering it (``masks``
    come sorted by score), or to none. A tube is cut when its skeleton runs through two or more
    instances; its pieces meet where neighbouring skeleton pixels belong to different ones. The cut
    is "at a tile border" when most of those meeting pixels lie on one (``edges``).
    """
    from skimage.morphology import skeletonize

    kernel = np.ones((3, 3), np.uint8)
    outline_px = on_border_px = 0
    for m in masks:
        outline = m & ~cv2.erode(m.astype(np.uint8), kernel).astype(bool)
        outline_px += int(outline.sum())
        on_border_px += int((outline & edges).sum())
    cut = at_border = 0
    for tube in singles:
        ys, xs = np.nonzero(tube)
        if not len(ys):
            continue
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        skeleton = skeletonize(tube[y0:y1, x0:x1])
        owner = np.full(skeleton.shape, -1, np.int32)
        for k in range(len(masks) - 1, -1, -1):  # the highest score is written last
            owner[masks[k, y0:y1, x0:x1] & skeleton] = k
        if len(set(np.unique(owner[skeleton]).tolist()) - {-1}) < 2:
            continue
        cut += 1
        padded = np.pad(np.where(skeleton, owner, -2), 1, constant_values=-2)
        meeting = np.zeros(skeleton.shape, bool)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                neighbour = padded[1 + dy : 1 + dy + skeleton.shape[0], 1 + dx : 1 + dx + skeleton.shape[1]]
                meeting |= skeleton & (neighbour != -2) & (neighbour != owner)
        if meeting.any() and (meeting & edges[y0:y1, x0:x1]).sum() * 2 >= meeting.sum():
            at_border += 1
    return {
        "cut_tubes": cut,
        "cut_at_tile_border": at_border,
        "outline_px": outline_px,
        "outline_on_tile_border_px": on_border_px,
    }
