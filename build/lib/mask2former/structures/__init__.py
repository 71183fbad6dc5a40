"""The types every layer passes around: instance masks (full-size or cropped) and resize records."""

from .cropped import (
    CroppedInstances,
    CroppedMask,
    Window,
    candidate_pairs,
    intersect_windows,
    intersection_area,
    label_image,
    union_of,
)
from .instances import Instances
from .resize import ResizeInfo

__all__ = [
    "CroppedInstances",
    "CroppedMask",
    "Instances",
    "ResizeInfo",
    "Window",
    "candidate_pairs",
    "intersect_windows",
    "intersection_area",
    "label_image",
    "union_of",
]
