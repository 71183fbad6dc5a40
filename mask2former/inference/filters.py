"""Post-processing of predicted myotubes; each step is one config key and can be switched off.

Order (:func:`postprocess`):

1. score threshold (``MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD``, or
   ``TEST.AUG.OBJECT_MASK_THRESHOLD`` with test-time augmentation): drop low-confidence instances;
2. outline snapping (``INFERENCE.SNAP_REACH``, 0 = off): each instance takes its outline from the
   field's foreground threshold, the classical annotator's, at full resolution
   (:mod:`mask2former.inference.outlines`). The reach is in pixels of a 1500 px field, the
   annotator's reference, and scales with the image's size as the annotator's settings do;
3. splitting disconnected masks (``INFERENCE.SPLIT_DISCONNECTED``): a myotube is one connected
   region, so a mask in several separate parts is one instance per part. A query of the model can
   cover two tubes that do not touch; after step 2 a mask that bridged a dark gap falls apart
   there too. The largest part keeps the score; a smaller part gets the score times its share of
   the mask, so that where it repeats another instance, step 4 keeps that one;
4. duplicate removal (``INFERENCE.DUPLICATE_IOU``): of two instances whose masks have at least that
   IoU, the lower-scoring one goes (mask non-maximum suppression, in score order). Mask2Former's
   queries are not exclusive, so two queries can find the same tube;
5. contained removal (``INFERENCE.REMOVE_CONTAINED``, ``CONTAINED_FRACTION``): an instance with at
   least that fraction of its pixels inside a larger one is a duplicate or a sub-part; drop it;
6. fragment merging (``INFERENCE.MERGE_FRAGMENTS``, ``MERGE_OVERLAP``): two instances whose masks
   overlap by at least that fraction of the smaller one are pieces of one tube; replace them by
   their union (score: the higher one). Crossing tubes share only the crossing, a small fraction
   of either, and stay apart. Runs after steps 4-5 so duplicates are dropped rather than unioned.
   Off by default: unions chain, and one instance covering two tubes pulls in every instance it
   overlaps;
7. joining pieces (``INFERENCE.JOIN_PIECES``, ``JOIN_MAX_GAP``, ``JOIN_MAX_ANGLE``): two instances
   whose skeleton ends continue each other, end to end, are one tube cut in pieces; replace them by
   their union (:mod:`mask2former.inference.joining`). Crossing tubes meet at an angle and stay
   apart. Off by default;
8. minimum area (``INFERENCE.MIN_AREA`` pixels), after merging so fragments count as a whole;
9. minimum elongation (``INFERENCE.MIN_ELONGATION``, 0 = off): skeleton length / mean width,
   as defined in :mod:`mask2former.measure.morphology`. Myotubes are long; round debris is not;
10. minimum bright fraction (``INFERENCE.MIN_BRIGHT_FRACTION``, 0 = off): drop an instance when
    less than this fraction of its pixels lie above the field's foreground threshold, the one the
    classical annotator sets from the field's bright level
    (:func:`mask2former.annotate.foreground.thresholded`). A faint cell next to bright myotubes is
    below it; people who draw masks by hand leave such cells out, and so does the annotator. It
    runs last, on whole tubes.

Steps 2 and 10 need the image the instances were found in.

The result is sorted by score (highest first); output ids follow that order.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.cluster.hierarchy import DisjointSet

from ..annotate import AnnotatorParams
from ..annotate.foreground import Foreground, thresholded
from ..config import get_cfg, score_threshold_in_force
from ..measure.morphology import elongation
from ..structures import CroppedInstances, CroppedMask, candidate_pairs, intersection_area, union_of
from .joining import join_pieces
from .outlines import snap_to_foreground

_DEFAULTS = get_cfg()


@dataclass(frozen=True)
class PostprocessParams:
    """The INFERENCE.* post-processing settings; the defaults are the config's (one place)."""

    score_threshold: float = _DEFAULTS.MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD
    snap_reach: float = _DEFAULTS.INFERENCE.SNAP_REACH
    split_disconnected: bool = _DEFAULTS.INFERENCE.SPLIT_DISCONNECTED
    split_min_fraction: float = _DEFAULTS.INFERENCE.SPLIT_MIN_FRACTION
    duplicate_iou: float = _DEFAULTS.INFERENCE.DUPLICATE_IOU
    remove_contained: bool = _DEFAULTS.INFERENCE.REMOVE_CONTAINED
    contained_fraction: float = _DEFAULTS.INFERENCE.CONTAINED_FRACTION
    merge_fragments: bool = _DEFAULTS.INFERENCE.MERGE_FRAGMENTS
    merge_overlap: float = _DEFAULTS.INFERENCE.MERGE_OVERLAP
    join_pieces: bool = _DEFAULTS.INFERENCE.JOIN_PIECES
    join_max_gap: float = _DEFAULTS.INFERENCE.JOIN_MAX_GAP
    join_max_angle: float = _DEFAULTS.INFERENCE.JOIN_MAX_ANGLE
    min_area: int = _DEFAULTS.INFERENCE.MIN_AREA
    min_elongation: float = _DEFAULTS.INFERENCE.MIN_ELONGATION
    min_bright_fraction: float = _DEFAULTS.INFERENCE.MIN_BRIGHT_FRACTION

    @classmethod
    def from_cfg(cls, cfg) -> PostprocessParams:
        inf = cfg.INFERENCE
        return cls(
            score_threshold=score_threshold_in_force(cfg),
            snap_reach=float(inf.SNAP_REACH),
            split_disconnected=bool(inf.SPLIT_DISCONNECTED),
            split_min_fraction=float(inf.SPLIT_MIN_FRACTION),
            duplicate_iou=float(inf.DUPLICATE_IOU),
            remove_contained=bool(inf.REMOVE_CONTAINED),
            contained_fraction=float(inf.CONTAINED_FRACTION),
            merge_fragments=bool(inf.MERGE_FRAGMENTS),
            merge_overlap=float(inf.MERGE_OVERLAP),
            join_pieces=bool(inf.JOIN_PIECES),
            join_max_gap=float(inf.JOIN_MAX_GAP),
            join_max_angle=float(inf.JOIN_MAX_ANGLE),
            min_area=int(inf.MIN_AREA),
            min_elongation=float(inf.MIN_ELONGATION),
            min_bright_fraction=float(inf.MIN_BRIGHT_FRACTION),
        )


def filter_by_score(instances: CroppedInstances, threshold: float) -> CroppedInstances:
    return instances.subset(k for k, m in enumerate(instances) if m.score >= threshold)


def split_disconnected(instances: CroppedInstances, min_fraction: float = 0.0) -> CroppedInstances:
    """One instance per 8-connected part of each mask; the largest part keeps the score, a smaller
    part gets the score times its share of the mask's area. A part smaller than ``min_fraction``
    of the largest is dropped."""
    items = []
    for m in instances:
        count, labels, stats, _ = cv2.connectedComponentsWithStats(m.mask.astype(np.uint8), connectivity=8)
        if count <= 2:  # background and one part
            items.append(m)
            continue
        areas = stats[1:, cv2.CC_STAT_AREA]  # part k is label k + 1
        largest = int(np.argmax(areas))
        for k, area in enumerate(areas):
            if area < min_fraction * areas[largest]:
                continue
            score = m.score if k == largest else m.score * float(area) / m.area
            items.append(CroppedMask.from_mask(labels == k + 1, score, m.y0, m.x0))
    return instances.with_items(items)


def remove_duplicates(instances: CroppedInstances, iou: float = 0.5) -> CroppedInstances:
    """Greedy mask non-maximum suppression: visiting instances from the highest score down, drop
    each one whose mask IoU with an already kept instance is at least ``iou``."""
    overlapping: dict[int, list[int]] = {}
    for i, j in candidate_pairs(instances.items):
        a, b = instances[i], instances[j]
        common = intersection_area(a, b)
        if common and common >= iou * (a.area + b.area - common):
            overlapping.setdefault(i, []).append(j)
            overlapping.setdefault(j, []).append(i)
    kept: set[int] = set()
    for k in sorted(range(len(instances)), key=lambda k: (-instances[k].score, k)):
        if not any(other in kept for other in overlapping.get(k, ())):
            kept.add(k)
    return instances.subset(k for k in range(len(instances)) if k in kept)


def remove_contained(instances: CroppedInstances, fraction: float = 0.9) -> CroppedInstances:
    """Drop every instance with at least ``fraction`` of its area inside a larger instance.

    Of two near-identical masks (equal area), the lower-scoring one goes.
    """
    drop: set[int] = set()
    for i, j in candidate_pairs(instances.items):
        a, b = instances[i], instances[j]
        common = intersection_area(a, b)
        if common == 0:
            continue
        # The smaller (or, at equal size, lower-scoring, or later) instance is the candidate.
        small, large = (i, j) if (a.area, a.score, -i) < (b.area, b.score, -j) else (j, i)
        if common >= fraction * instances[small].area:
            drop.add(small)
    return instances.subset(k for k in range(len(instances)) if k not in drop)


def merge_fragments(instances: CroppedInstances, overlap: float = 0.5) -> CroppedInstances:
    """Union instances overlapping by at least ``overlap`` of the smaller one (chains merge too)."""
    uf = DisjointSet(range(len(instances)))
    for i, j in candidate_pairs(instances.items):
        a, b = instances[i], instances[j]
        common = intersection_area(a, b)
        if common and common >= overlap * min(a.area, b.area):
            uf.merge(i, j)
    merged = []
    for group in sorted((sorted(g) for g in uf.subsets()), key=min):
        members = [instances[k] for k in group]
        merged.append(members[0] if len(members) == 1 else union_of(members, max(m.score for m in members)))
    return instances.with_items(merged)


def filter_by_area(instances: CroppedInstances, min_area: int) -> CroppedInstances:
    return instances.subset(k for k, m in enumerate(instances) if m.area >= min_area)


def filter_by_elongation(instances: CroppedInstances, min_elongation: float) -> CroppedInstances:
    return instances.subset(k for k, m in enumerate(instances) if elongation(m.mask) >= min_elongation)


def filter_by_brightness(
    instances: CroppedInstances, bright: np.ndarray, min_fraction: float
) -> CroppedInstances:
    """Keep the instances with at least ``min_fraction`` of their pixels inside ``bright`` (a
    boolean image of the instances' size)."""
    return instances.subset(
        k
        for k, m in enumerate(instances)
        if np.count_nonzero(bright[m.y0 : m.y1, m.x0 : m.x1] & m.mask) >= min_fraction * m.area
    )


def postprocess(
    instances: CroppedInstances, params: PostprocessParams, image: np.ndarray | None = None
) -> CroppedInstances:
    """All enabled steps in the order of the module doc; sorted by score, highest first.
    ``image``: the image the instances were found in; the snapping and bright-fraction steps need it."""
    field = _field_foreground(image, params)
    out = filter_by_score(instances, params.score_threshold)
    if params.snap_reach > 0:
        reach = params.snap_reach * AnnotatorParams().pixel_scale(*field.mask.shape)
        out = snap_to_foreground(out, field.mask, reach)
    if params.split_disconnected:
        out = split_disconnected(out, params.split_min_fraction)
    if params.duplicate_iou > 0:
        out = remove_duplicates(out, params.duplicate_iou)
    if params.remove_contained:
        out = remove_contained(out, params.contained_fraction)
    if params.merge_fragments:
        out = merge_fragments(out, params.merge_overlap)
    if params.join_pieces:
        out = join_pieces(out, params.join_max_gap, params.join_max_angle)
    if params.min_area > 0:
        out = filter_by_area(out, params.min_area)
    if params.min_elongation > 0:
        out = filter_by_elongation(out, params.min_elongation)
    if params.min_bright_fraction > 0:
        # Above the threshold itself, before holes are filled.
        out = filter_by_brightness(out, field.contrast > field.threshold, params.min_bright_fraction)
    return out.sorted_by_score()


def _field_foreground(image: np.ndarray | None, params: PostprocessParams) -> Foreground | None:
    """The field's foreground threshold, computed once for the steps that need it (none: None);
    with its small holes filled when outlines are snapped to it."""
    needing = [
        key
        for key, on in (
            ("INFERENCE.SNAP_REACH", params.snap_reach > 0),
            ("INFERENCE.MIN_BRIGHT_FRACTION", params.min_bright_fraction > 0),
        )
        if on
    ]
    if not needing:
        return None
    if image is None:
        verb = "needs" if len(needing) == 1 else "need"
        raise ValueError(f"{' and '.join(needing)} {verb} the image the instances were found in")
    return thresholded(image, fill_holes=params.snap_reach > 0)
