"""Joining the pieces of one myotube that a model predicted as separate instances.

A model often cuts one long tube into pieces that meet end to end, inside a tile as well as at
tile borders (where stitching already joins pieces that overlap). Two pieces are joined when
one continues the other:

- the gap between an end of each is at most ``max_gap`` tube widths;
- at those ends the two skeletons point at each other, within ``max_angle`` degrees (the outward
  direction of one end is opposite to the other's);
- the second end lies within one tube width of the first piece's axis, prolonged;
- the two are about as wide (the narrower at least ``min_width_ratio`` of the wider).

Each end joins at most one other end, the best-aligned pairs first, so a chain of pieces becomes
one tube. Two crossing tubes meet at a large angle and are never joined; nor are two parallel
tubes lying side by side (their ends are offset across the axis). The joined instance is the
union of its pieces, with the highest score among them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import DisjointSet
from scipy.ndimage import convolve
from skimage.morphology import skeletonize

from ..structures import CroppedInstances, CroppedMask, union_of

_NEIGHBOURS = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], np.uint8)


@dataclass(frozen=True)
class PieceEnd:
    """One end of a piece's skeleton: position (y, x) in image pixels, outward unit direction,
    and the piece's mean width."""

    piece: int
    point: np.ndarray
    direction: np.ndarray
    width: float


def piece_ends(mask: CroppedMask, piece: int) -> list[PieceEnd]:
    """The skeleton's end points of one instance with their outward directions (none for blobs)."""
    skeleton = skeletonize(mask.mask)
    length = int(skeleton.sum())
    if length < 3:
        return []
    width = mask.area / length
    neighbours = convolve(skeleton.astype(np.uint8), _NEIGHBOURS, mode="constant")
    ys, xs = np.nonzero(skeleton & (neighbours == 1))
    sy, sx = np.nonzero(skeleton)
    skeleton_points = np.column_stack([sy, sx]).astype(float)
    # A square or frayed end forks the skeleton into end points a width apart: one end each.
    tips: list[list[np.ndarray]] = []
    for point in np.column_stack([ys, xs]).astype(float):
        group = next((g for g in tips if np.linalg.norm(g[0] - point) <= width), None)
        if group is None:
            tips.append([point])
        else:
            group.append(point)
    # The direction at an end: the skeleton within a few widths of it, from its mean to the end.
    reach = max(3.0 * width, 8.0)
    ends = []
    for group in tips:
        tip = np.mean(group, axis=0)
        near = skeleton_points[np.linalg.norm(skeleton_points - tip, axis=1) <= reach]
        outward = tip - near.mean(axis=0)
        norm = float(np.linalg.norm(outward))
        if norm < 1e-6:
            continue
        ends.append(PieceEnd(piece, tip + (mask.y0, mask.x0), outward / norm, width))
    return ends


def continuation_cost(
    a: PieceEnd, b: PieceEnd, max_gap: float, max_angle: float, min_width_ratio: float
) -> float | None:
    """How badly end ``b`` continues end ``a`` (lower is better), or None when it does not."""
    wide, narrow = max(a.width, b.width), min(a.width, b.width)
    if narrow < min_width_ratio * wide:
        return None
    offset = b.point - a.point
    # A skeleton stops about half a width short of its mask's end, at each of the two ends.
    gap = max(0.0, float(np.linalg.norm(offset)) - wide)
    if gap > max_gap * wide:
        return None
    cos_limit = math.cos(math.radians(max_angle))
    facing = -float(a.direction @ b.direction)
    if facing < cos_limit:
        return None
    # Across the axis: how far b lies from a's axis line, prolonged, and a's from b's.
    across = max(
        abs(a.direction[0] * offset[1] - a.direction[1] * offset[0]),
        abs(b.direction[0] * offset[1] - b.direction[1] * offset[0]),
    )
    if across > wide:
        return None
    return (1.0 - facing) + gap / (max_gap * wide)


def join_groups(
    instances: CroppedInstances, max_gap: float = 2.0, max_angle: float = 30.0, min_width_ratio: float = 0.5
) -> list[list[int]]:
    """Indices of the instances that form one tube each (single instances included), in order of
    their first member."""
    if len(instances) < 2:
        return [[k] for k in range(len(instances))]
    ends = [end for k, mask in enumerate(instances) for end in piece_ends(mask, k)]
    pairs = []
    for i, a in enumerate(ends):
        for j in range(i + 1, len(ends)):
            b = ends[j]
            if a.piece == b.piece:
                continue
            cost = continuation_cost(a, b, max_gap, max_angle, min_width_ratio)
            if cost is not None:
                pairs.append((cost, i, j))
    used: set[int] = set()
    groups = DisjointSet(range(len(instances)))
    for _, i, j in sorted(pairs):
        if i in used or j in used or groups.connected(ends[i].piece, ends[j].piece):
            continue
        used.update((i, j))
        groups.merge(ends[i].piece, ends[j].piece)
    return sorted((sorted(g) for g in groups.subsets()), key=min)


def join_pieces(
    instances: CroppedInstances, max_gap: float = 2.0, max_angle: float = 30.0, min_width_ratio: float = 0.5
) -> CroppedInstances:
    """Join pieces that continue each other end to end (see the module doc)."""
    joined = []
    for group in join_groups(instances, max_gap, max_angle, min_width_ratio):
        members = [instances[k] for k in group]
        joined.append(members[0] if len(members) == 1 else union_of(members, max(m.score for m in members)))
    return instances.with_items(joined)


__all__ = ["PieceEnd", "continuation_cost", "join_groups", "join_pieces", "piece_ends"]
