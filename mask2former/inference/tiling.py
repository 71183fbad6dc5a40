"""Tiled prediction of images larger than the model input, and stitching of the tiles' instances.

Tiles are all the same size and spread evenly so that neighbours overlap by at least the
requested fraction. A myotube cut by a tile border is predicted as a fragment in each tile
it touches; two fragments from overlapping tiles are the same myotube when, inside the
region both tiles saw, they cover the same pixels: their IoU restricted to that region is at
least ``match_overlap``, and each fragment is matched to at most one fragment of the other tile
(the assignment with the highest total IoU). Matches are chained across tiles, so a tube
crossing several tiles becomes one instance, the union of its fragments, with the highest
fragment score, the best-matching pairs first. Duplicates (a tube inside the overlap seen whole by
both tiles) merge the same way. Instances from the same tile never end up in one instance, not
even through a chain of matches across other tiles: two crossing tubes predicted by one tile
stay two, and one tile joining two tubes does not join their continuations in every other tile.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import DisjointSet
from scipy.optimize import linear_sum_assignment

from ..structures import (
    CroppedInstances,
    CroppedMask,
    Instances,
    Window,
    intersect_windows,
    intersection_area,
    union_of,
)

PredictFn = Callable[[np.ndarray], Instances]


@dataclass(frozen=True)
class Tile:
    y0: int
    x0: int
    y1: int
    x1: int

    @property
    def window(self) -> Window:
        return (self.y0, self.x0, self.y1, self.x1)


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets along one axis: first at 0, last flush with the end, evenly spaced."""
    if length <= tile:
        return [0]
    stride = max(1, int(tile * (1.0 - overlap)))
    n = math.ceil((length - tile) / stride) + 1
    return [int(v) for v in np.round(np.linspace(0, length - tile, n))]


def tile_grid(height: int, width: int, tile_size: int, overlap: float) -> list[Tile]:
    """Tiles of ``min(tile_size, side)`` pixels covering the image, neighbours overlapping."""
    if tile_size < 1:
        raise ValueError(f"tile size must be >= 1, got {tile_size}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"tile overlap must be in [0, 1), got {overlap}")
    th, tw = min(tile_size, height), min(tile_size, width)
    return [
        Tile(y, x, y + th, x + tw)
        for y in tile_starts(height, th, overlap)
        for x in tile_starts(width, tw, overlap)
    ]


def stitch_tiles(
    tile_predictions: list[tuple[Tile, list[CroppedMask]]],
    match_overlap: float,
) -> list[CroppedMask]:
    """Merge fragments of one object predicted in different, overlapping tiles (see module doc)."""
    items: list[CroppedMask] = []
    owner: list[int] = []
    for t, (_, masks) in enumerate(tile_predictions):
        items.extend(masks)
        owner.extend([t] * len(masks))
    if len(tile_predictions) < 2 or not items:
        return items
    by_tile: list[list[int]] = [[] for _ in tile_predictions]
    for i, t in enumerate(owner):
        by_tile[t].append(i)

    candidates = []  # (IoU inside the shared region, fragment of tile a, fragment of tile b)
    for ta in range(len(tile_predictions)):
        for tb in range(ta + 1, len(tile_predictions)):
            shared = intersect_windows(tile_predictions[ta][0].window, tile_predictions[tb][0].window)
            if shared is not None:
                candidates += _matches_in_shared_region(
                    items, by_tile[ta], by_tile[tb], shared, match_overlap
                )
    merged = []
    for group in _group_matches(len(items), owner, candidates):
        if len(group) == 1:
            merged.append(items[group[0]])
        else:
            members = [items[k] for k in group]
            merged.append(union_of(members, max(m.score for m in members)))
    return merged


def _matches_in_shared_region(
    items: list[CroppedMask], of_a: list[int], of_b: list[int], shared: Window, match_overlap: float
) -> list[tuple[float, int, int]]:
    """(IoU, i, j) of fragment ``i`` of tile a (indices ``of_a`` into ``items``) and fragment ``j``
    of tile b that are one object: their IoU inside the region both tiles saw is at least
    ``match_overlap``, each fragment matched to one of the other tile's at most."""
    in_a = [i for i in of_a if intersect_windows(items[i].window, shared)]
    in_b = [j for j in of_b if intersect_windows(items[j].window, shared)]
    if not in_a or not in_b:
        return []
    iou = np.zeros((len(in_a), len(in_b)))
    area_a = [items[i].area_in(shared) for i in in_a]
    area_b = [items[j].area_in(shared) for j in in_b]
    for r, i in enumerate(in_a):
        for c, j in enumerate(in_b):
            common = intersection_area(items[i], items[j], within=shared)
            if common:
                iou[r, c] = common / (area_a[r] + area_b[c] - common)
    # One-to-one between two tiles: a fragment covering two of the other tile's instances
    # (two crossing tubes predicted as one) is matched to one of them at most.
    return [
        (iou[r, c], in_a[r], in_b[c])
        for r, c in zip(*linear_sum_assignment(-iou))
        if iou[r, c] >= match_overlap
    ]


def _group_matches(n: int, owner: list[int], candidates: list[tuple[float, int, int]]) -> list[list[int]]:
    """The fragments ``0..n-1`` in groups of one object each (sorted, by their first fragment),
    chaining the matches ``candidates`` best first; ``owner[i]`` is fragment ``i``'s tile."""
    # Best matches first; a group never takes two instances of the same tile, so a joined pair of
    # tubes in one tile cannot chain the separate tubes of the other tiles into one instance.
    uf = DisjointSet(range(n))
    tiles_of = {i: {owner[i]} for i in range(n)}
    for _, i, j in sorted(candidates, key=lambda c: -c[0]):
        ri, rj = uf[i], uf[j]
        if ri == rj or tiles_of[ri] & tiles_of[rj]:
            continue
        uf.merge(ri, rj)
        tiles_of[uf[ri]] = tiles_of[ri] | tiles_of[rj]
    return sorted((sorted(g) for g in uf.subsets()), key=min)


def predict_tiled(
    image: np.ndarray,
    predict_fn: PredictFn,
    tile_size: int,
    overlap: float,
    match_overlap: float,
    progress: bool = False,
) -> CroppedInstances:
    """Predict ``image`` whole if it fits ``tile_size``, otherwise tile by tile, then stitch.

    ``predict_fn(tile)`` gets a view of the image (same dtype and channels) and returns
    :class:`Instances` at the tile's resolution; each tile's masks are cropped at once so only
    one tile's full-size masks are alive at a time.
    """
    height, width = image.shape[:2]
    tiles = tile_grid(height, width, tile_size, overlap)
    predictions: list[tuple[Tile, list[CroppedMask]]] = []
    iterator = tiles
    if progress and len(tiles) > 1:
        from tqdm import tqdm

        iterator = tqdm(tiles, desc="tiles", unit="tile", leave=False)
    for tile in iterator:
        tile_image = image[tile.y0 : tile.y1, tile.x0 : tile.x1]
        result = predict_fn(tile_image)
        expected = (tile.y1 - tile.y0, tile.x1 - tile.x0)
        if tuple(result.image_size) != expected:
            raise ValueError(
                f"predictor returned masks of size {result.image_size} for a tile of size {expected}"
            )
        cropped = CroppedInstances.from_instances(result, tile.y0, tile.x0, height, width)
        predictions.append((tile, cropped.items))
        del result
    return CroppedInstances(height, width, stitch_tiles(predictions, match_overlap))
