"""The pixel scale a model sees its fields at: measured on the training data, kept with the model,
applied again at prediction.

Training resizes each field so its longest side is ``INPUT.IMAGE_SIZE``, and the annotator has
usually resized the microscope's image before that (2048 px fields written at 1500 px). A model
therefore knows myotubes at one scale: model-input pixels per pixel of the microscope's image.
``predict.py`` must resize new fields by the same factor before tiling, or tubes look wider or
thinner than anything the model was trained on.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class InputScale:
    """``factor``: model-input pixels per pixel of the original (microscope) image.

    ``pixel_size_um``: microns per model-input pixel, when the training fields carried a pixel
    size. ``low``/``high``: the smallest and largest factor over the training fields (they differ
    when the fields came in several sizes).
    """

    factor: float
    pixel_size_um: float | None = None
    low: float | None = None
    high: float | None = None
    fields: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> InputScale | None:
        if not isinstance(data, dict) or not _positive(data.get("factor")):
            return None
        size = data.get("pixel_size_um")
        return cls(
            factor=float(data["factor"]),
            pixel_size_um=float(size) if _positive(size) else None,
            low=data.get("low"),
            high=data.get("high"),
            fields=int(data.get("fields") or 0),
        )

    def describe(self) -> str:
        text = f"{self.factor:.4g} model pixels per original pixel"
        if self.low is not None and self.high is not None and self.high - self.low > 1e-3 * self.factor:
            text += f" (median of {self.fields} training fields, {self.low:.4g}-{self.high:.4g})"
        if self.pixel_size_um:
            text += f", {self.pixel_size_um:.4g} um per model pixel"
        return text


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def record_factor(record: dict, image_size: int, jitter: tuple[float, float] = (1.0, 1.0)) -> float:
    """Model-input pixels per original pixel for one training record (``load_coco_instances``).

    ``jitter``: INPUT.MIN_SCALE and MAX_SCALE; the mapper draws the scale uniformly between them,
    so their mean is the nominal training scale (a jitter around ``side / crop`` trains on crops at
    the field's own scale).
    """
    side = max(record["height"], record["width"])
    to_model = image_size / side * (jitter[0] + jitter[1]) / 2
    original = max(record.get("original_height") or 0, record.get("original_width") or 0)
    return to_model * (side / original if original > 0 else 1.0)


def record_pixel_size(
    record: dict, image_size: int, jitter: tuple[float, float] = (1.0, 1.0)
) -> float | None:
    """Microns per model-input pixel for one record, when its image entry gives ``pixel_size_um``
    (microns per pixel of the stored image)."""
    size = record.get("pixel_size_um")
    if not _positive(size):
        return None
    return float(size) * max(record["height"], record["width"]) / (image_size * (jitter[0] + jitter[1]) / 2)


def training_input_scale(
    records: Iterable[dict], image_size: int, jitter: tuple[float, float] = (1.0, 1.0)
) -> InputScale | None:
    """The scale of a training set: the median over its fields (None for no fields)."""
    records = list(records)
    if not records:
        return None
    factors = [record_factor(r, image_size, jitter) for r in records]
    sizes = [s for s in (record_pixel_size(r, image_size, jitter) for r in records) if s is not None]
    # A pixel size is only meaningful when every field carries one.
    pixel_size = statistics.median(sizes) if len(sizes) == len(records) else None
    return InputScale(statistics.median(factors), pixel_size, min(factors), max(factors), len(records))


def prediction_scale(
    recorded: InputScale | None, override: float = 0.0, pixel_size_um: float | None = None
) -> tuple[float, str]:
    """The factor to resize new images by before tiling, and why.

    ``override`` (> 0) wins (``--scale``); then an input pixel size against the model's; then the
    model's recorded factor; weights without a record (hub weights, older checkpoints) predict at
    the input's own pixel scale.
    """
    if override > 0:
        return float(override), "given with --scale / INFERENCE.INPUT_SCALE"
    if recorded is None:
        return 1.0, "the weights record no training scale: the input's own pixels (give --scale to change it)"
    if pixel_size_um and recorded.pixel_size_um:
        factor = pixel_size_um / recorded.pixel_size_um
        return (
            factor,
            f"input pixel size {pixel_size_um:.4g} um against the model's "
            f"{recorded.pixel_size_um:.4g} um per model pixel",
        )
    return recorded.factor, f"the training scale recorded with the weights ({recorded.describe()})"
