"""Instance masks stored as tight crops plus offsets.

A 2048x2048 field with 100 myotubes would need 400 MB as full-size boolean masks; each tube
covers a small part of the field, so tiling, merging, post-processing, export and measurement
all work on crops placed at ``(y0, x0)`` in full-image coordinates.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .instances import Instances

# (y0, x0, y1, x1), end-exclusive.
Window = tuple[int, int, int, int]


@dataclass
class CroppedMask:
    """One instance: ``mask`` is the tight bounding-box crop, placed at ``(y0, x0)``."""

    mask: np.ndarray
    y0: int
    x0: int
    score: float
    _area: int | None = field(default=None, repr=False, compare=False)

    @property
    def y1(self) -> int:
        return self.y0 + self.mask.shape[0]

    @property
    def x1(self) -> int:
        return self.x0 + self.mask.shape[1]

    @property
    def window(self) -> Window:
        return (self.y0, self.x0, self.y1, self.x1)

    @property
    def box_xyxy(self) -> tuple[int, int, int, int]:
        return (self.x0, self.y0, self.x1, self.y1)

    @property
    def area(self) -> int:
        if self._area is None:
            self._area = int(np.count_nonzero(self.mask))
        return self._area

    @classmethod
    def from_mask(cls, mask: np.ndarray, score: float, y0: int = 0, x0: int = 0) -> CroppedMask | None:
        """Crop ``mask`` (placed at ``y0, x0``) to its True pixels; ``None`` when it has none."""
        mask = np.asarray(mask, dtype=bool)
        rows = np.flatnonzero(mask.any(axis=1))
        if len(rows) == 0:
            return None
        cols = np.flatnonzero(mask.any(axis=0))
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        crop = np.ascontiguousarray(mask[r0:r1, c0:c1])
        return cls(crop, int(y0 + r0), int(x0 + c0), float(score))

    def crop_to(self, window: Window) -> np.ndarray:
        """The mask inside ``window`` (full-image coordinates), False outside this instance's box."""
        wy0, wx0, wy1, wx1 = window
        out = np.zeros((wy1 - wy0, wx1 - wx0), bool)
        inter = intersect_windows(self.window, window)
        if inter is None:
            return out
        iy0, ix0, iy1, ix1 = inter
        out[iy0 - wy0 : iy1 - wy0, ix0 - wx0 : ix1 - wx0] = self.mask[
            iy0 - self.y0 : iy1 - self.y0, ix0 - self.x0 : ix1 - self.x0
        ]
        return out

    def area_in(self, window: Window) -> int:
        inter = intersect_windows(self.window, window)
        if inter is None:
            return 0
        iy0, ix0, iy1, ix1 = inter
        return int(np.count_nonzero(self.mask[iy0 - self.y0 : iy1 - self.y0, ix0 - self.x0 : ix1 - self.x0]))

    def to_full(self, height: int, width: int) -> np.ndarray:
        return self.crop_to((0, 0, height, width))


def intersect_windows(a: Window, b: Window) -> Window | None:
    y0, x0 = max(a[0], b[0]), max(a[1], b[1])
    y1, x1 = min(a[2], b[2]), min(a[3], b[3])
    if y0 >= y1 or x0 >= x1:
        return None
    return (y0, x0, y1, x1)


def intersection_area(a: CroppedMask, b: CroppedMask, within: Window | None = None) -> int:
    """Pixels in both masks (and inside ``within`` when given)."""
    inter = intersect_windows(a.window, b.window)
    if inter is not None and within is not None:
        inter = intersect_windows(inter, within)
    if inter is None:
        return 0
    y0, x0, y1, x1 = inter
    pa = a.mask[y0 - a.y0 : y1 - a.y0, x0 - a.x0 : x1 - a.x0]
    pb = b.mask[y0 - b.y0 : y1 - b.y0, x0 - b.x0 : x1 - b.x0]
    return int(np.count_nonzero(pa & pb))


def union_of(masks: Sequence[CroppedMask], score: float) -> CroppedMask:
    """One crop covering every pixel of ``masks``."""
    y0 = min(m.y0 for m in masks)
    x0 = min(m.x0 for m in masks)
    y1 = max(m.y1 for m in masks)
    x1 = max(m.x1 for m in masks)
    out = np.zeros((y1 - y0, x1 - x0), bool)
    for m in masks:
        out[m.y0 - y0 : m.y1 - y0, m.x0 - x0 : m.x1 - x0] |= m.mask
    return CroppedMask(out, y0, x0, float(score))


def candidate_pairs(masks: Sequence[CroppedMask]) -> list[tuple[int, int]]:
    """Index pairs ``i < j`` whose bounding boxes intersect (the only ones that can overlap)."""
    if len(masks) < 2:
        return []
    win = np.array([m.window for m in masks], dtype=np.int64)
    y0, x0, y1, x1 = win.T
    overlap = (np.maximum(y0[:, None], y0[None, :]) < np.minimum(y1[:, None], y1[None, :])) & (
        np.maximum(x0[:, None], x0[None, :]) < np.minimum(x1[:, None], x1[None, :])
    )
    ii, jj = np.nonzero(np.triu(overlap, k=1))
    return list(zip(ii.tolist(), jj.tolist()))


@dataclass
class CroppedInstances:
    """The instances of one ``height x width`` image as crops; order is meaningful (ids follow it)."""

    height: int
    width: int
    items: list[CroppedMask] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[CroppedMask]:
        return iter(self.items)

    def __getitem__(self, i: int) -> CroppedMask:
        return self.items[i]

    @property
    def image_size(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def scores(self) -> np.ndarray:
        return np.array([m.score for m in self.items], np.float32)

    @property
    def areas(self) -> np.ndarray:
        return np.array([m.area for m in self.items], np.int64)

    @property
    def boxes(self) -> np.ndarray:
        """(N, 4) XYXY, end-exclusive, as in :class:`~mask2former.structures.Instances`."""
        return np.array([m.box_xyxy for m in self.items], np.float32).reshape(-1, 4)

    def with_items(self, items: Iterable[CroppedMask]) -> CroppedInstances:
        return CroppedInstances(self.height, self.width, list(items))

    def subset(self, keep: Iterable[int]) -> CroppedInstances:
        return self.with_items(self.items[i] for i in keep)

    def sorted_by_score(self) -> CroppedInstances:
        order = np.argsort(-self.scores, kind="stable")
        return self.subset(order.tolist())

    def to_instances(self) -> Instances:
        """Full-size masks (for metrics and callers that want :class:`Instances`)."""
        masks = np.zeros((len(self), self.height, self.width), bool)
        for k, m in enumerate(self.items):
            masks[k, m.y0 : m.y1, m.x0 : m.x1] = m.mask
        return Instances(masks, self.scores, self.boxes)

    @classmethod
    def from_instances(
        cls,
        instances: Instances,
        y_offset: int = 0,
        x_offset: int = 0,
        height: int | None = None,
        width: int | None = None,
    ) -> CroppedInstances:
        """Crop every mask of ``instances``, shifting by the offset (a tile's place in the image)."""
        h, w = instances.image_size
        items = []
        for mask, score in zip(instances.masks, instances.scores):
            crop = CroppedMask.from_mask(mask, float(score), y_offset, x_offset)
            if crop is not None:
                items.append(crop)
        return cls(
            height if height is not None else h + y_offset,
            width if width is not None else w + x_offset,
            items,
        )

    @classmethod
    def from_masks(cls, masks: np.ndarray, scores: Sequence[float] | None = None) -> CroppedInstances:
        """From (N, H, W) boolean masks; every score 1 unless given."""
        masks = np.asarray(masks, bool)
        if scores is None:
            scores = np.ones(len(masks), np.float32)
        return cls.from_instances(Instances(masks, np.asarray(scores, np.float32)))


def label_image(instances: CroppedInstances, dtype: type = np.uint16) -> np.ndarray:
    """0 = background, ``k + 1`` = instance ``k``; where masks overlap the higher score wins."""
    if len(instances) > np.iinfo(dtype).max:
        raise ValueError(f"{len(instances)} instances do not fit a {np.dtype(dtype).name} label image")
    labels = np.zeros((instances.height, instances.width), dtype)
    # Paint low scores first so higher scores overwrite them; on equal scores the lower id wins.
    order = np.lexsort((-np.arange(len(instances)), instances.scores))
    for k in order:
        m = instances[int(k)]
        region = labels[m.y0 : m.y1, m.x0 : m.x1]
        region[m.mask] = k + 1
    return labels
