"""Instances: what every predictor, post-processing step, exporter and metric passes around."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Instances:
    """N instance masks of one image; masks may overlap (one myotube crossing another).

    masks:  (N, H, W) bool, at the image's own resolution
    scores: (N,) float32 in [0, 1]
    boxes:  (N, 4) float32, XYXY in pixels (x1, y1 inclusive; x2, y2 exclusive)
    """

    masks: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.masks = np.asarray(self.masks, dtype=bool)
        if self.masks.ndim != 3:
            raise ValueError(f"masks must be (N, H, W), got shape {self.masks.shape}")
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if len(self.scores) != len(self.masks):
            raise ValueError(f"{len(self.masks)} masks but {len(self.scores)} scores")
        if self.boxes is None:
            self.boxes = masks_to_boxes(self.masks)
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)

    def __len__(self) -> int:
        return len(self.masks)

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    @classmethod
    def empty(cls, height: int, width: int) -> Instances:
        return cls(np.zeros((0, height, width), bool), np.zeros(0, np.float32), np.zeros((0, 4), np.float32))

    def subset(self, keep: np.ndarray | list) -> Instances:
        keep = np.asarray(keep)
        return Instances(self.masks[keep], self.scores[keep], self.boxes[keep])

    def sorted_by_score(self) -> Instances:
        return self.subset(np.argsort(-self.scores, kind="stable"))


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """XYXY boxes of boolean masks; an empty mask gets a zero box."""
    boxes = np.zeros((len(masks), 4), np.float32)
    for i, m in enumerate(masks):
        rows = np.flatnonzero(m.any(axis=1))
        cols = np.flatnonzero(m.any(axis=0))
        if len(rows):
            boxes[i] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes
