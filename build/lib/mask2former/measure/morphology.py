"""Per-myotube shape measurements from an instance mask.

Definitions (all computed on the mask alone, in pixels; :func:`measure_myotube` converts units):

- skeleton: ``skimage.morphology.skeletonize`` of the mask, then short side spurs pruned: an
  end branch is a spur when its length (plus the tip extension below) is at most
  ``prune_factor`` times the tube's radius at the junction it leaves. Boundary noise makes such
  spurs; a real branch sticks out of its parent by at least the parent's radius.
- length: the longest path through the pruned skeleton (geodesic diameter, found with two
  shortest-path passes over skan's branch graph), extended at both free ends by the distance
  from the end pixel to the mask boundary, so a straight tube measures tip to tip. A mask of
  several disconnected pieces gets the sum of its pieces' lengths.
- total_length: every pruned skeleton branch plus the tip extension at every free end
  (a Y-shaped tube: all three arms).
- width_mean: area / total_length (the width of a tube of that area and length).
- width_median: median over skeleton pixels of the local width ``2 * distance - 0.5``, where
  ``distance`` is the largest Euclidean distance-transform value within one pixel of the skeleton
  pixel (the skeleton of a slanted tube runs up to a pixel off the true medial ridge), measured
  to the nearest background pixel centre (the boundary lies half a pixel nearer; the 0.5 splits
  the difference between odd and even widths). Quantised: within about half a pixel.
- branch_points: connected clusters of skeleton pixels with three or more skeleton neighbours.
- orientation: the mask's principal axis, in degrees in [0, 180), counter-clockwise from the
  image's x axis as displayed (0 = horizontal, 90 = vertical).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra


@dataclass
class ShapeAnalysis:
    """Skeleton-based description of one mask (arrays in the mask's own coordinates)."""

    skeleton: np.ndarray  # bool, pruned skeleton
    distance: np.ndarray  # float, Euclidean distance transform of the mask
    length: float
    total_length: float
    branch_points: int
    width_median: float


_OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]


def _neighbour_count(skeleton: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Skeleton neighbours of the skeleton pixels (ys, xs), which lie off the array's edge."""
    return sum(skeleton[ys + dy, xs + dx].astype(np.int32) for dy, dx in _OFFSETS)


def _max_around(values: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Largest value in the 3x3 neighbourhood of each pixel (ys, xs), which lie off the array's edge."""
    best = values[ys, xs]
    for dy, dx in _OFFSETS:
        best = np.maximum(best, values[ys + dy, xs + dx])
    return best


def _tip(distance_value: float) -> float:
    return max(float(distance_value) - 0.5, 0.0)


def path_length(coords: np.ndarray, sigma: float = 2.0) -> float:
    """Length of a pixel path, smoothed first.

    Summing raw 8-connected steps (1 or sqrt 2) overestimates a line at 30 degrees by 7 %;
    smoothing the coordinates along the path removes the staircase but not real bends.
    """
    coords = np.asarray(coords, float)
    if len(coords) < 2:
        return 0.0
    if len(coords) > 2 and sigma > 0:
        smooth = ndi.gaussian_filter1d(coords, sigma, axis=0, mode="nearest")
        # Pin the ends: 'nearest' padding pulls them inwards by a fraction of a pixel per sigma.
        smooth[0], smooth[-1] = coords[0], coords[-1]
        coords = smooth
    return float(np.sum(np.hypot(*np.diff(coords, axis=0).T)))


def _branches(sk) -> tuple[list[np.ndarray], np.ndarray]:
    paths = [np.asarray(sk.path(i)) for i in range(sk.n_paths)]
    lengths = np.array([path_length(sk.coordinates[p]) for p in paths], float)
    return paths, lengths


def _prune_spurs(
    skeleton: np.ndarray, distance: np.ndarray, prune_factor: float, max_rounds: int = 3
) -> tuple[np.ndarray, tuple | None]:
    """The pruned skeleton, and skan's graph of it with its branches when the last round found
    nothing to prune (so the caller need not build the same graph again), else None."""
    from skan.csr import Skeleton

    for _ in range(max_rounds):
        if np.count_nonzero(skeleton) < 3:
            return skeleton, None
        sk = Skeleton(skeleton)
        paths, lengths = _branches(sk)
        deg = sk.degrees
        coords = np.round(sk.coordinates).astype(int)
        spurs_at: dict[int, list[tuple[float, int]]] = {}
        branches_at: dict[int, int] = {}
        for i, path in enumerate(paths):
            a, b = int(path[0]), int(path[-1])
            for node in (a, b):
                if deg[node] > 2:
                    branches_at[node] = branches_at.get(node, 0) + 1
            if (deg[a] > 2) == (deg[b] > 2) or min(deg[a], deg[b]) != 1:
                continue  # spurs run from a junction to a free end
            junction, end = (a, b) if deg[a] > 2 else (b, a)
            radius = _tip(distance[tuple(coords[junction])])
            reach = lengths[i] + _tip(distance[tuple(coords[end])])
            if reach <= prune_factor * radius:
                spurs_at.setdefault(junction, []).append((reach, i))
        to_prune: list[int] = []
        for junction, spurs in spurs_at.items():
            spurs.sort()
            # Never strip a junction bare: a blob-like star of spurs keeps its two longest arms.
            keep = 2 if len(spurs) >= branches_at.get(junction, 0) else 0
            to_prune.extend(i for _, i in spurs[: max(0, len(spurs) - keep)])
        if not to_prune:
            return skeleton, (sk, paths, lengths)
        pruned = _wipe_paths(sk, skeleton, sorted(set(to_prune)))
        if not pruned.any():
            return skeleton, (sk, paths, lengths)
        skeleton = pruned
    return skeleton, None


def _wipe_paths(sk, skeleton: np.ndarray, indices: list[int]) -> np.ndarray:
    """Remove the given skan paths (keeping their junction pixels), then re-thin around those
    junctions: a spur's junction can leave a small knot (a triangle of pixels) behind.

    skan's own ``prune_paths`` re-skeletonises the whole image, which costs 0.3 s per
    2048x2048 crop and round; only a few pixels around each junction can change.
    """
    from skimage.morphology import skeletonize

    out = skeleton.copy()
    junctions: list[tuple[int, int]] = []
    for i in indices:
        ids = np.asarray(sk.path(i))
        is_junction = sk.degrees[ids] > 2
        coords = np.round(sk.coordinates[ids[~is_junction]]).astype(int)
        out[coords[:, 0], coords[:, 1]] = False
        junctions.extend(map(tuple, np.round(sk.coordinates[ids[is_junction]]).astype(int)))
    h, w = out.shape
    for y, x in set(junctions):
        y0, x0, y1, x1 = max(y - 3, 0), max(x - 3, 0), min(y + 4, h), min(x + 4, w)
        window = out[y0:y1, x0:x1]
        thin = skeletonize(window)
        # Thinning treats the window's edge as background; keep the edge ring as it was
        # (except where it is the image's own edge) so paths leaving the window stay connected.
        inner = np.ones(window.shape, bool)
        if y0 > 0:
            inner[0, :] = False
        if y1 < h:
            inner[-1, :] = False
        if x0 > 0:
            inner[:, 0] = False
        if x1 < w:
            inner[:, -1] = False
        window[inner] = thin[inner]
    return out


def _longest_path(sk, distance: np.ndarray, branches: tuple | None = None) -> tuple[float, float]:
    """(sum over pieces of the longest tip-to-tip path, total length with tips)."""
    paths, lengths = branches if branches is not None else _branches(sk)
    deg = sk.degrees
    coords = np.round(sk.coordinates).astype(int)
    tip = {}
    edges: dict[tuple[int, int], float] = {}
    loops: dict[int, float] = {}
    for path, length in zip(paths, lengths):
        a, b = int(path[0]), int(path[-1])
        for node in (a, b):
            if deg[node] == 1:
                tip[node] = _tip(distance[tuple(coords[node])])
        if a == b:
            loops[a] = max(loops.get(a, 0.0), float(length))
            continue
        key = (min(a, b), max(a, b))
        # Two parallel branches between the same nodes (a loop): the shorter one is the geodesic.
        edges[key] = min(edges.get(key, math.inf), float(length))
    total = float(np.sum(lengths)) + sum(tip.values())
    nodes = sorted({n for e in edges for n in e} | set(loops))
    if not nodes:
        return 0.0, total
    index = {n: k for k, n in enumerate(nodes)}
    if edges:
        rows = [index[a] for a, _ in edges]
        cols = [index[b] for _, b in edges]
        graph = coo_matrix((list(edges.values()), (rows, cols)), shape=(len(nodes), len(nodes))).tocsr()
    else:
        graph = coo_matrix((len(nodes), len(nodes))).tocsr()
    ext = np.array([tip.get(n, 0.0) for n in nodes])
    seen = np.zeros(len(nodes), bool)
    length_sum = 0.0
    for start in range(len(nodes)):
        if seen[start]:
            continue
        d0 = dijkstra(graph, directed=False, indices=start)
        piece = np.isfinite(d0)
        seen |= piece
        # Farthest node (counting its tip) from an arbitrary start, then farthest from that: the
        # geodesic diameter of a tree, a close lower bound for a skeleton with loops.
        far = int(np.argmax(np.where(piece, d0 + ext, -1.0)))
        d1 = dijkstra(graph, directed=False, indices=far)
        score = np.where(np.isfinite(d1), d1 + ext + ext[far], -1.0)
        best = float(score.max())
        loop_here = max((loops[n] / 2.0 for n in nodes if n in loops and piece[index[n]]), default=0.0)
        length_sum += max(best, loop_here)
    return length_sum, total


def euclidean_distance(mask: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance of each foreground pixel to the background (as scipy's
    distance_transform_edt, in float32), with OpenCV's exact algorithm: several times faster."""
    return cv2.distanceTransform(np.asarray(mask, np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def analyze_shape(mask: np.ndarray, prune_factor: float = 2.0) -> ShapeAnalysis:
    """Skeleton, lengths, branch points and median width of one (cropped) mask."""
    from skimage.morphology import skeletonize

    mask = np.asarray(mask, bool)
    # One pixel of background around the crop: the distance transform and thinning need a border.
    padded = np.pad(mask, 1)
    distance = euclidean_distance(padded)
    skeleton = skeletonize(padded)
    if not skeleton.any():
        empty = np.zeros_like(mask)
        return ShapeAnalysis(empty, distance[1:-1, 1:-1], 0.0, 0.0, 0, 0.0)
    skeleton, graph = _prune_spurs(skeleton, distance, prune_factor)

    # Isolated skeleton pixels (round blobs) are not paths for skan: a disc of radius r has
    # length 2r.
    ys, xs = np.nonzero(skeleton)
    degree = _neighbour_count(skeleton, ys, xs)
    single = degree == 0
    length = total = float(sum(2 * _tip(d) for d in distance[ys[single], xs[single]]))
    if not single.all():
        from skan.csr import Skeleton

        if graph is not None and not single.any():
            piece_length, piece_total = _longest_path(graph[0], distance, graph[1:])
        else:
            rest = skeleton.copy()
            rest[ys[single], xs[single]] = False
            piece_length, piece_total = _longest_path(Skeleton(rest), distance)
        length += piece_length
        total += piece_total

    junction = np.zeros_like(skeleton)
    junction[ys[degree >= 3], xs[degree >= 3]] = True
    _, branch_points = ndi.label(junction, structure=np.ones((3, 3)))
    widths = 2.0 * _max_around(distance, ys, xs) - 0.5
    return ShapeAnalysis(
        skeleton=skeleton[1:-1, 1:-1],
        distance=distance[1:-1, 1:-1],
        length=length,
        total_length=total,
        branch_points=int(branch_points),
        width_median=float(np.median(widths)) if len(widths) else 0.0,
    )


def orientation_degrees(mask: np.ndarray) -> float:
    """Principal-axis angle in [0, 180), counter-clockwise from the x axis as displayed."""
    ys, xs = np.nonzero(mask)
    if len(xs) < 2:
        return 0.0
    x = xs - xs.mean()
    y = -(ys - ys.mean())  # image rows grow downwards; flip so angles turn counter-clockwise on screen
    cov = np.cov(np.vstack([x, y]))
    evals, evecs = np.linalg.eigh(cov)
    vx, vy = evecs[:, int(np.argmax(evals))]
    return float(math.degrees(math.atan2(vy, vx)) % 180.0)


def unit_suffix(pixel_size: float | None) -> str:
    return "um" if pixel_size else "px"


def measure_myotube(
    mask: np.ndarray,
    y0: int = 0,
    x0: int = 0,
    score: float = float("nan"),
    pixel_size: float | None = None,
    shape: ShapeAnalysis | None = None,
) -> dict:
    """One row of measurements for a (cropped) mask placed at ``(y0, x0)`` in the image.

    Lengths are in microns when ``pixel_size`` (microns per pixel) is given, else in pixels;
    the column names say which (``length_um`` / ``length_px``). Boxes and centroids stay in pixels.
    """
    mask = np.asarray(mask, bool)
    shape = shape if shape is not None else analyze_shape(mask)
    scale = float(pixel_size) if pixel_size else 1.0
    u = unit_suffix(pixel_size)
    area = int(np.count_nonzero(mask))
    ys, xs = np.nonzero(mask)
    return {
        "score": float(score),
        f"area_{u}2": area * scale * scale,
        f"length_{u}": shape.length * scale,
        f"total_length_{u}": shape.total_length * scale,
        f"width_mean_{u}": (area / shape.total_length * scale) if shape.total_length > 0 else 0.0,
        f"width_median_{u}": shape.width_median * scale,
        "elongation": (shape.length * shape.total_length / area) if area else 0.0,
        "orientation_deg": orientation_degrees(mask),
        "branch_points": shape.branch_points,
        "centroid_x": float(xs.mean() + x0) if area else float("nan"),
        "centroid_y": float(ys.mean() + y0) if area else float("nan"),
        "bbox_x0": int(x0 + xs.min()) if area else x0,
        "bbox_y0": int(y0 + ys.min()) if area else y0,
        "bbox_x1": int(x0 + xs.max() + 1) if area else x0,
        "bbox_y1": int(y0 + ys.max() + 1) if area else y0,
    }


def elongation(mask: np.ndarray) -> float:
    """length / width_mean, with width_mean = area / total_length (a 10:1 straight tube: 10)."""
    area = int(np.count_nonzero(mask))
    if area == 0:
        return 0.0
    shape = analyze_shape(mask)
    if shape.total_length <= 0:
        return 0.0
    return shape.length / (area / shape.total_length)
