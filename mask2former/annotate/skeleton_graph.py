"""Skeleton graph of a foreground mask, and the grouping of its branches into myotubes.

The skeleton is cut at junction pixels into *segments*; junction pixel clusters are *nodes*.
Short side spurs are pruned, nodes joined by very short segments are merged (an X crossing of
two thick tubes skeletonises into two nearby Y junctions), and at every node the branches that
continue one another in a straight line are paired: one myotube passing through. A branch that
leaves at a shallow angle is a branch of the same myotube; one that leaves steeply is a separate,
touching myotube.

skan would build the same graph, but it compiles with numba on first use (2-3 s per worker
process) and its table building costs ~0.3 s per image; the pixel-level bookkeeping here is a
few vectorised numpy/scipy calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy import ndimage as ndi
from scipy.cluster.hierarchy import DisjointSet
from skimage.morphology import skeletonize

# Neighbour weights clockwise from the top-left; the 8-bit code indexes the crossing-number table.
_NEIGHBOUR_WEIGHTS = np.array([[1, 2, 4], [128, 0, 8], [64, 32, 16]], np.float32)


def _crossing_number_table() -> np.ndarray:
    """Number of 0→1 transitions around the 8-neighbourhood for every neighbour pattern.

    1 = end point, 2 = line, ≥3 = junction. Unlike a plain neighbour count it does not mistake
    the corner pixels of a staircase line for junctions.
    """
    table = np.zeros(256, np.uint8)
    for code in range(256):
        bits = [(code >> k) & 1 for k in range(8)]
        table[code] = sum(1 for k in range(8) if bits[k] == 0 and bits[(k + 1) % 8] == 1)
    return table


_CROSSING_TABLE = _crossing_number_table()
_EIGHT = np.ones((3, 3), bool)


@dataclass
class Segment:
    index: int
    pixels: np.ndarray  # (K, 2) row, col
    nodes: list[int] = field(default_factory=list)  # node ids touched (0, 1 or 2 entries)
    removed: bool = False

    @property
    def length(self) -> int:
        return len(self.pixels)


@dataclass
class Node:
    index: int
    pixels: np.ndarray  # (K, 2)
    centroid: np.ndarray  # (2,)
    radius: float  # local tube half-width at the junction


@dataclass
class SkeletonGraph:
    skeleton: np.ndarray  # (H, W) bool
    segments: list[Segment]
    nodes: list[Node]
    radius: np.ndarray  # (H, W) float32: distance to background (local half-width on the skeleton)


def build_skeleton_graph(mask: np.ndarray) -> SkeletonGraph:
    radius = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    skeleton = skeletonize(mask)
    code = cv2.filter2D(skeleton.astype(np.float32), -1, _NEIGHBOUR_WEIGHTS, borderType=cv2.BORDER_CONSTANT)
    crossings = _CROSSING_TABLE[np.rint(code).astype(np.int32) & 255]
    neighbours = cv2.filter2D(
        skeleton.astype(np.uint8), -1, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT
    )
    centres = skeleton & ((crossings >= 3) | (neighbours >= 5))  # neighbours counts the pixel itself
    # A junction owns its skeleton neighbours too; otherwise two arms meeting diagonally next to
    # the junction pixel stay connected and come out as one segment.
    junction = skeleton & (cv2.dilate(centres.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)

    node_labels, n_nodes = ndi.label(junction, structure=_EIGHT)
    seg_labels, n_segs = ndi.label(skeleton & ~junction, structure=_EIGHT)

    nodes = []
    if n_nodes:
        node_pixels = _pixels_by_label(node_labels, n_nodes)
        for i, px in enumerate(node_pixels, start=1):
            centroid = px.mean(axis=0)
            nodes.append(Node(i, px, centroid, float(radius[px[:, 0], px[:, 1]].max())))
    segments = [Segment(i, px) for i, px in enumerate(_pixels_by_label(seg_labels, n_segs), start=1)]

    if n_nodes and n_segs:
        # Which node touches which segment: a segment pixel next to a junction pixel.
        near_node = ndi.grey_dilation(node_labels, footprint=_EIGHT)
        touching = (seg_labels > 0) & (near_node > 0)
        pairs = np.unique(np.stack([seg_labels[touching], near_node[touching]], axis=1), axis=0)
        for s, n in pairs:
            segments[s - 1].nodes.append(int(n))
        # A pixel may neighbour two junction clusters; the dilation keeps only the larger label.
        # Recover the other one so the segment still knows both of its ends.
        near_node_min = -ndi.grey_dilation(
            -np.where(node_labels > 0, node_labels, n_nodes + 1), footprint=_EIGHT
        )
        touching_min = (seg_labels > 0) & (near_node_min <= n_nodes)
        pairs = np.unique(np.stack([seg_labels[touching_min], near_node_min[touching_min]], axis=1), axis=0)
        for s, n in pairs:
            if int(n) not in segments[s - 1].nodes:
                segments[s - 1].nodes.append(int(n))
    return SkeletonGraph(skeleton, segments, nodes, radius)


def _pixels_by_label(labels: np.ndarray, n: int) -> list[np.ndarray]:
    flat = labels.ravel()
    idx = np.flatnonzero(flat)
    if n == 0:
        return []
    order = np.argsort(flat[idx], kind="stable")
    idx = idx[order]
    counts = np.bincount(flat[idx], minlength=n + 1)[1:]
    rows, cols = np.unravel_index(idx, labels.shape)
    coords = np.stack([rows, cols], axis=1)
    return np.split(coords, np.cumsum(counts)[:-1])


# --------------------------------------------------------------------------- grouping


@dataclass
class End:
    """Where a segment leaves a junction cluster."""

    segment: int
    cluster: int
    direction: np.ndarray  # unit vector (row, col) pointing away from the cluster
    half_width: float


@dataclass
class Grouping:
    """Which segments form one myotube, and which junction clusters each myotube passes."""

    segment_groups: list[list[int]]  # per instance: segment indices (1-based, as Segment.index)
    cluster_pixels: list[np.ndarray]  # per junction cluster: (K, 2) pixels (nodes + internal segments)
    cluster_radius: list[float]
    cluster_centroid: list[np.ndarray]
    instance_clusters: list[list[int]]  # per instance: indices into cluster_pixels
    passages: list[dict[int, list[End]]]  # per cluster: instance index (0-based) -> its ends there


@dataclass
class GroupingParams:
    spur_length: float
    spur_width_factor: float
    junction_merge_distance: float
    junction_merge_width_factor: float
    direction_length: float
    pair_angle: float
    fork_angle: float
    bend_angle: float
    min_instance_length: float


def group_segments(graph: SkeletonGraph, p: GroupingParams) -> Grouping:
    segments = graph.segments
    nodes = {n.index: n for n in graph.nodes}
    _prune_spurs(segments, nodes, p)
    node_uf, internal = _merge_junctions(segments, nodes, p)
    clusters = _junction_clusters(segments, nodes, node_uf, internal)
    cluster_of, cluster_pixels, cluster_radius, cluster_centroid = clusters

    # Segment ends at each cluster: direction in which the segment leaves it, local half-width.
    live = [s for s in segments if not s.removed and s.index not in internal]
    ends: list[list[End]] = [[] for _ in cluster_pixels]
    for s in live:
        for c in sorted({cluster_of[n] for n in s.nodes}):
            direction, half_width = _direction(
                s.pixels, cluster_centroid[c], cluster_radius[c], p.direction_length, graph.radius
            )
            ends[c].append(End(s.index, c, direction, half_width))

    # 1. Tubes passing straight through a junction: their two ends are paired.
    seg_uf = DisjointSet(range(len(segments) + 1))
    unpaired: list[End] = []
    for cluster_ends in ends:
        unpaired += _pair_through(cluster_ends, seg_uf, p)
    # 2. Chains left with one loose end at a junction are a branch of the tube they leave at a
    #    shallow angle (or too short to be a myotube); otherwise a touching myotube of their own.
    #    At most one attachment per chain, so a chain never bridges two tubes.
    _attach_loose_chains(live, unpaired, ends, seg_uf, p)

    segment_groups, instance_clusters, passages = _instances_from_chains(
        live, segments, seg_uf, cluster_of, ends
    )
    return Grouping(
        segment_groups, cluster_pixels, cluster_radius, cluster_centroid, instance_clusters, passages
    )


def _branch_degree(segments: list[Segment]) -> dict[int, int]:
    """Branches (segments not removed) that end at each node."""
    degree: dict[int, int] = {}
    for s in segments:
        if not s.removed:
            for n in s.nodes:
                degree[n] = degree.get(n, 0) + 1
    return degree


def _merge_junctions(
    segments: list[Segment], nodes: dict[int, Node], p: GroupingParams
) -> tuple[DisjointSet, set[int]]:
    """Merge junctions joined by short segments into clusters (one physical crossing).

    Returns the node union-find and the segments that now lie inside a cluster.
    """
    # Shortest links first; a cluster stops growing at four branches (two crossing tubes), so a
    # dense tangle does not collapse into one giant junction.
    node_uf = DisjointSet(range(len(nodes) + 1))
    internal: set[int] = set()
    cluster_degree = _branch_degree(segments)  # external branch ends per cluster root
    links = sorted((s for s in segments if not s.removed and len(s.nodes) == 2), key=lambda s: s.length)
    for s in links:
        a, b = (nodes[i] for i in s.nodes)
        limit = max(p.junction_merge_distance, p.junction_merge_width_factor * (a.radius + b.radius))
        if s.length > limit:
            break
        ra, rb = node_uf[a.index], node_uf[b.index]
        if ra == rb:
            internal.add(s.index)
            cluster_degree[ra] -= 2
            continue
        merged_degree = cluster_degree.get(ra, 0) + cluster_degree.get(rb, 0) - 2
        if merged_degree > 4:
            continue
        node_uf.merge(ra, rb)
        cluster_degree[node_uf[ra]] = merged_degree
        internal.add(s.index)
    for s in segments:  # a short loop from a junction back to itself is part of that junction
        if (
            not s.removed
            and len(s.nodes) == 1
            and s.length <= 2 * nodes[s.nodes[0]].radius
            and _is_loop(s, nodes)
        ):
            internal.add(s.index)
    return node_uf, internal


def _junction_clusters(
    segments: list[Segment], nodes: dict[int, Node], node_uf: DisjointSet, internal: set[int]
) -> tuple[dict[int, int], list[np.ndarray], list[float], list[np.ndarray]]:
    """The cluster index of every node, and each cluster's pixels (its nodes and internal
    segments), radius and centroid."""
    cluster_of_node = {n: node_uf[n] for n in nodes}
    cluster_ids = sorted(set(cluster_of_node.values()))
    cluster_index = {c: i for i, c in enumerate(cluster_ids)}
    cluster_of = {n: cluster_index[c] for n, c in cluster_of_node.items()}
    members: list[list[int]] = [[] for _ in cluster_ids]
    for n, c in cluster_of.items():
        members[c].append(n)
    cluster_pixels, cluster_radius, cluster_centroid = [], [], []
    for i, node_ids in enumerate(members):
        px = [nodes[n].pixels for n in node_ids]
        px += [segments[s - 1].pixels for s in internal if cluster_of[segments[s - 1].nodes[0]] == i]
        cluster_pixels.append(np.concatenate(px))
        cluster_radius.append(max(nodes[n].radius for n in node_ids))
        weights = np.array([len(nodes[n].pixels) for n in node_ids], float)
        cluster_centroid.append(np.average([nodes[n].centroid for n in node_ids], axis=0, weights=weights))
    return cluster_of, cluster_pixels, cluster_radius, cluster_centroid


def _attach_loose_chains(
    live: list[Segment], unpaired: list[End], ends: list[list[End]], seg_uf: DisjointSet, p: GroupingParams
) -> None:
    """Join each chain with one loose end to the tube it forks from (see group_segments, step 2)."""
    chain_length: dict[int, int] = {}
    for s in live:
        root = seg_uf[s.index]
        chain_length[root] = chain_length.get(root, 0) + s.length
    loose: dict[int, list[End]] = {}
    for e in unpaired:
        loose.setdefault(seg_uf[e.segment], []).append(e)
    fork_cos = np.cos(np.deg2rad(p.fork_angle))
    for root in sorted(loose, key=lambda r: chain_length.get(r, 0)):
        chain_ends = loose[root]
        short = chain_length.get(root, 0) < p.min_instance_length
        if len(chain_ends) > 1 and not short:
            continue  # joins junctions at both ends: a myotube between two others
        best: tuple[float, End, End] | None = None
        for e in chain_ends:
            for other in ends[e.cluster]:
                if seg_uf[other.segment] == seg_uf[e.segment]:
                    continue
                straightness = -float(e.direction @ other.direction)
                if best is None or straightness > best[0]:
                    best = (straightness, e, other)
        if best is not None and (best[0] >= fork_cos or short):
            seg_uf.merge(best[1].segment, best[2].segment)


def _instances_from_chains(
    live: list[Segment],
    segments: list[Segment],
    seg_uf: DisjointSet,
    cluster_of: dict[int, int],
    ends: list[list[End]],
) -> tuple[list[list[int]], list[list[int]], list[dict[int, list[End]]]]:
    """Per instance its segments and the clusters it touches; per cluster each instance's ends there."""
    groups: dict[int, list[int]] = {}
    for s in live:
        groups.setdefault(seg_uf[s.index], []).append(s.index)
    segment_groups = list(groups.values())
    instance_of_segment = {si: k for k, group in enumerate(segment_groups) for si in group}
    instance_clusters = []
    for group in segment_groups:
        touched = set()
        for si in group:
            for n in segments[si - 1].nodes:
                touched.add(cluster_of[n])
        instance_clusters.append(sorted(touched))
    passages: list[dict[int, list[End]]] = []
    for cluster_ends in ends:
        by_instance: dict[int, list[End]] = {}
        for e in cluster_ends:
            by_instance.setdefault(instance_of_segment[e.segment], []).append(e)
        passages.append(by_instance)
    return segment_groups, instance_clusters, passages


def _is_loop(segment: Segment, nodes: dict[int, Node]) -> bool:
    node = nodes[segment.nodes[0]]
    far = np.linalg.norm(segment.pixels - node.centroid, axis=1).max()
    return far <= 2 * node.radius + 2  # both ends within the junction's reach


def _prune_spurs(segments: list[Segment], nodes: dict[int, Node], p: GroupingParams) -> None:
    """Remove short dead-end segments; repeat because removing one can expose another."""
    for _ in range(3):
        degree = _branch_degree(segments)
        changed = False
        for s in segments:
            if s.removed or len(s.nodes) != 1:
                continue
            node = nodes[s.nodes[0]]
            if degree.get(node.index, 0) < 3:
                continue  # the last branches at a junction are the tube itself
            limit = (
                min(p.spur_length, p.spur_width_factor * 2 * node.radius)
                if p.spur_width_factor > 0
                else p.spur_length
            )
            limit = max(limit, node.radius + 2)  # anything inside the junction's own width is a spur
            if s.length <= limit:
                s.removed = True
                degree[node.index] -= 1
                changed = True
        if not changed:
            break


def _direction(
    pixels: np.ndarray, centre: np.ndarray, radius: float, length: float, radius_map: np.ndarray
) -> tuple[np.ndarray, float]:
    """Unit vector from the junction centre towards where the segment goes, and the tube's
    half-width there, both measured beyond the junction's own radius (skeletons bend and the
    distance map swells inside a thick junction)."""
    d = np.linalg.norm(pixels - centre, axis=1)
    ring = (d > radius) & (d <= radius + length)
    pts = pixels[ring] if ring.sum() >= 3 else pixels[d <= max(d.min() + length, radius + length)]
    if len(pts) == 0:
        pts = pixels
    half_width = float(np.median(radius_map[pts[:, 0], pts[:, 1]]))
    v = pts.mean(axis=0) - centre
    norm = np.linalg.norm(v)
    return (v / norm if norm > 1e-6 else np.zeros(2)), half_width


def _pair_through(ends: list[End], uf: DisjointSet, p: GroupingParams) -> list[End]:
    """Pair the ends that continue one another (straightest first); return the unpaired ones."""
    if len(ends) < 2:
        return list(ends)
    if len(ends) == 2:
        # A pruned junction or a bend: the tube goes on, unless it folds back sharply (two tubes
        # meeting end to end in a V).
        straight = -float(ends[0].direction @ ends[1].direction)
        if ends[0].segment != ends[1].segment and straight >= np.cos(np.deg2rad(p.bend_angle)):
            uf.merge(ends[0].segment, ends[1].segment)
            return []
        return list(ends)
    pair_cos = np.cos(np.deg2rad(p.pair_angle))
    dirs = np.stack([e.direction for e in ends])
    straightness = -(dirs @ dirs.T)  # cos(angle between end i and the continuation of end j)
    np.fill_diagonal(straightness, -np.inf)
    for i in range(len(ends)):  # the two ends of one loop segment are not a pair
        for j in range(len(ends)):
            if i != j and ends[i].segment == ends[j].segment:
                straightness[i, j] = -np.inf
    paired = np.zeros(len(ends), bool)
    order = np.dstack(np.unravel_index(np.argsort(-straightness, axis=None), straightness.shape))[0]
    for i, j in order:
        if i >= j or paired[i] or paired[j]:
            continue
        if straightness[i, j] < pair_cos:
            break
        uf.merge(ends[i].segment, ends[j].segment)
        paired[i] = paired[j] = True
    return [e for e, done in zip(ends, paired) if not done]
