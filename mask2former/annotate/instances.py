"""Classical myotube instances: foreground mask → skeleton graph → one mask per myotube.

Masks may overlap where myotubes cross: the pixels of a crossing belong to every myotube that
passes through it.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..structures import Instances
from .foreground import Foreground, foreground_mask
from .params import AnnotatorParams
from .skeleton_graph import GroupingParams, build_skeleton_graph, group_segments


def annotate_image(image: np.ndarray, params: AnnotatorParams | None = None) -> np.ndarray:
    """Myotube instance masks of one myosin-channel image, ``(N, H, W)`` bool (overlaps allowed)."""
    return annotate_instances(image, params).masks


def annotate_instances(image: np.ndarray, params: AnnotatorParams | None = None) -> Instances:
    """Like :func:`annotate_image`, with a confidence per instance (its mean contrast relative to
    the threshold) for ranking metrics such as COCO AP."""
    params = params or AnnotatorParams()
    fg = foreground_mask(image, params)
    h, w = fg.mask.shape
    masks = split_instances(fg.mask, params, params.pixel_scale(h, w))
    return Instances(masks, _scores(masks, fg))


def _scores(masks: np.ndarray, fg: Foreground) -> np.ndarray:
    scores = np.zeros(len(masks), np.float32)
    for i, m in enumerate(masks):
        mean_contrast = float(fg.contrast[m].mean()) if m.any() else 0.0
        scores[i] = 1.0 - fg.threshold / mean_contrast if mean_contrast > fg.threshold else 0.0
    return np.clip(scores, 0.01, 1.0)


def split_instances(mask: np.ndarray, params: AnnotatorParams, scale: float) -> np.ndarray:
    """Split a foreground mask into myotube instances, ``(N, H, W)`` bool."""
    h, w = mask.shape
    if not mask.any():
        return np.zeros((0, h, w), bool)
    factor = min(1.0, params.analysis_size / max(h, w))
    if factor < 1.0:
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        small = cv2.resize(mask.astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA) >= 128
    else:
        small = mask
    s = scale * factor  # analysis pixels per reference pixel
    graph = build_skeleton_graph(small)
    grouping = group_segments(
        graph,
        GroupingParams(
            spur_length=params.spur_length * s,
            spur_width_factor=params.spur_width_factor,
            junction_merge_distance=params.junction_merge_distance * s,
            junction_merge_width_factor=params.junction_merge_width_factor,
            direction_length=params.direction_length * s,
            pair_angle=params.pair_angle,
            fork_angle=params.fork_angle,
            bend_angle=params.bend_angle,
            min_instance_length=params.min_instance_length * s,
        ),
    )
    small_masks = _reconstruct(small, graph, grouping)
    if len(small_masks) == 0:
        return np.zeros((0, h, w), bool)
    if factor == 1.0:
        return small_masks
    return _upsample(small_masks, mask)


def _reconstruct(mask: np.ndarray, graph, grouping) -> np.ndarray:
    """Every foreground pixel goes to the myotube whose skeleton is nearest. Around a junction
    shared by several myotubes, each one also takes the pixels within its own half-width of its
    axis through the junction, so crossing pixels belong to every tube that crosses there."""
    h, w = mask.shape
    n_inst = len(grouping.segment_groups)
    owner = np.zeros((h, w), np.int32)  # >0: instance id; <0: -(cluster index + 1)
    for i, group in enumerate(grouping.segment_groups, start=1):
        for si in group:
            px = graph.segments[si - 1].pixels
            owner[px[:, 0], px[:, 1]] = i
    cluster_members: list[list[int]] = [[] for _ in grouping.cluster_pixels]
    for i, clusters in enumerate(grouping.instance_clusters, start=1):
        for c in clusters:
            cluster_members[c].append(i)
    for c, px in enumerate(grouping.cluster_pixels):
        if not cluster_members[c]:  # a blob whose whole skeleton is junction: its own instance
            n_inst += 1
            cluster_members[c].append(n_inst)
        owner[px[:, 0], px[:, 1]] = -(c + 1)
    if n_inst == 0:
        return np.zeros((0, h, w), bool)

    seeds = owner != 0
    _, nearest = cv2.distanceTransformWithLabels(
        (~seeds).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    seed_owner = np.concatenate(
        [[0], owner.ravel()[np.flatnonzero(seeds.ravel())]]
    )  # labels follow raster order
    nearest_owner = np.where(mask, seed_owner[nearest], 0)

    masks = np.zeros((n_inst, h, w), bool)
    for i in range(1, n_inst + 1):
        masks[i - 1] = nearest_owner == i
    for c, members in enumerate(cluster_members):
        if len(members) == 1:
            masks[members[0] - 1] |= nearest_owner == -(c + 1)
            continue
        _share_crossing(masks, mask, nearest_owner, c, members, grouping)
    keep = masks.reshape(n_inst, -1).any(axis=1)
    return masks[keep]


def _share_crossing(masks, mask, nearest_owner, c: int, members: list[int], grouping) -> None:
    h, w = mask.shape
    cy, cx = grouping.cluster_centroid[c]
    reach = 2.0 * grouping.cluster_radius[c] + 2
    y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 2)
    x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 2)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    inside = mask[y0:y1, x0:x1] & (dy * dy + dx * dx <= reach * reach)
    orphan = inside & (nearest_owner[y0:y1, x0:x1] == -(c + 1))
    best_distance = np.full(inside.shape, np.inf, np.float32)
    best_member = np.zeros(inside.shape, np.int32)
    through_claims = np.zeros(inside.shape, bool)
    # Tubes passing through first: where they cross, the pixels belong to both. A tube that ends
    # here (touching the side of another) stops at the other's edge instead of overlapping it.
    ordered = sorted(members, key=lambda i: -len(grouping.passages[c].get(i - 1, [])))
    for i in ordered:
        ends = grouping.passages[c].get(i - 1, [])
        if not ends:
            continue
        if len(ends) >= 2:
            axis = ends[0].direction - ends[1].direction  # through-going: from one end to the other
        else:
            axis = ends[0].direction
        norm = float(np.linalg.norm(axis))
        if norm < 1e-6:
            continue
        ay, ax = axis / norm
        half_width = max(e.half_width for e in ends) + 1.0
        across = np.abs(dy * ax - dx * ay)
        claim = inside & (across <= half_width)
        if len(ends) >= 2:
            through_claims |= claim
        else:
            claim &= ((dy * ay + dx * ax) >= -half_width) & ~through_claims
        masks[i - 1, y0:y1, x0:x1] |= claim
        closer = across < best_distance
        best_distance[closer] = across[closer]
        best_member[closer] = i
    # Junction pixels no tube claims go to the tube whose axis is nearest.
    for i in members:
        masks[i - 1, y0:y1, x0:x1] |= orphan & (best_member == i)
    unclaimed = (nearest_owner == -(c + 1)) & ~masks[[i - 1 for i in members]].any(axis=0)
    if unclaimed.any():
        masks[members[0] - 1] |= unclaimed


def _upsample(small_masks: np.ndarray, full_mask: np.ndarray) -> np.ndarray:
    h, w = full_mask.shape
    sh, sw = small_masks.shape[1:]
    fy, fx = h / sh, w / sw
    out = np.zeros((len(small_masks), h, w), bool)
    primary = np.zeros((sh, sw), np.int32)
    for i, m in enumerate(small_masks, start=1):
        primary[m & (primary == 0)] = i
        ys, xs = np.nonzero(m)
        y0, y1 = max(0, int(ys.min() - 1)), min(sh, int(ys.max() + 2))
        x0, x1 = max(0, int(xs.min() - 1)), min(sw, int(xs.max() + 2))
        Y0, Y1 = int(np.floor(y0 * fy)), min(h, int(np.ceil(y1 * fy)))
        X0, X1 = int(np.floor(x0 * fx)), min(w, int(np.ceil(x1 * fx)))
        crop = m[y0:y1, x0:x1].astype(np.uint8) * 255
        # Map the crop onto exactly the full-resolution pixels it covers.
        up = cv2.warpAffine(
            crop,
            np.array(
                [[1 / fx, 0, (X0 + 0.5) / fx - 0.5 - x0], [0, 1 / fy, (Y0 + 0.5) / fy - 0.5 - y0]], np.float32
            ),
            (X1 - X0, Y1 - Y0),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
        )
        out[i - 1, Y0:Y1, X0:X1] = (up >= 128) & full_mask[Y0:Y1, X0:X1]
    # Foreground pixels lost at the boundary by resampling go to their nearest instance.
    covered = out.any(axis=0)
    missing = full_mask & ~covered
    if missing.any():
        primary_up = cv2.resize(primary, (w, h), interpolation=cv2.INTER_NEAREST)
        grown = cv2.dilate(primary_up.astype(np.float32), np.ones((5, 5), np.uint8)).astype(np.int32)
        fill = np.where(primary_up > 0, primary_up, grown)
        ys, xs = np.nonzero(missing)
        ids = fill[ys, xs]
        ok = ids > 0
        out[ids[ok] - 1, ys[ok], xs[ok]] = True
    return out
