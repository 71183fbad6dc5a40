"""How an image maps onto the model input."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ResizeInfo:
    """How an original image maps onto the model input: ``input = original * scale`` then padding."""

    original_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    padded_hw: tuple[int, int]
    scale: float
