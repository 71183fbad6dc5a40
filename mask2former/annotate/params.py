"""Parameters of the classical annotator, in one dataclass with the reasons for each default.

Lengths are in pixels of a *reference field* whose longest side is ``reference_size`` (1500 px,
the resolution the toolkit trains at). :meth:`AnnotatorParams.pixel_scale` turns them into pixels
of the image at hand, so the same parameters serve a 750 px preview and a 3000 px original of the
same field of view. Intensities are fractions of the image's full scale (see
:func:`mask2former.annotate.foreground.normalize_intensity`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class AnnotatorParams:
    # ---- geometry reference
    reference_size: int = 1500
    """Longest side (px) of a full field for which the lengths below are given."""
    scale: float | None = None
    """Pixels of this image per reference pixel; ``None`` = longest side / ``reference_size``
    (the image is a whole field). Set 1.0 for crops taken at the reference resolution."""
    reference_pixel_size_um: float | None = None
    """Microns per reference pixel. When set, each image's scale comes from its own pixel size
    (:meth:`physical_scale`) instead of its size, so crops, tiles and whole fields of any
    magnification are measured alike."""

    # ---- foreground (semantic) mask
    smoothing_sigma: float = 1.5
    """Gaussian sigma before thresholding: suppresses shot noise without widening thin tubes."""
    contrast_percentile: float = 99.0
    """Percentile of the background-subtracted image taken as the field's bright level."""
    relative_threshold: float = 0.08
    """Threshold = ``min_contrast`` + this fraction of the bright level above background."""
    min_contrast: float = 3.5 / 255.0
    """Absolute part of the threshold (fraction of full scale): keeps dim, noisy fields from
    being thresholded inside their noise, where a purely relative threshold would go."""
    background_window: float = 0.0
    """0: one global background level (median). >0: a local background (low percentile over
    windows of this many reference pixels) for strongly uneven illumination."""
    fill_holes_area: float = 1500.0
    """Holes smaller than this (reference px², nuclei appear dark in the myosin channel) are filled."""
    min_length: float = 80.0
    """Components whose bounding box is shorter than this (reference px) are debris or round
    mononuclear cells, not myotubes."""
    min_area: float = 300.0
    """Components smaller than this (reference px²) are dropped."""
    min_elongation: float = 1.5
    """Compact components (major/minor axis ratio below this) smaller than ``round_max_area``
    are round mononuclear cells."""
    round_max_area: float = 6000.0

    # ---- instance splitting on the skeleton graph
    analysis_size: int = 800
    """Skeleton analysis runs on the mask downsampled so its longest side is at most this."""
    spur_length: float = 40.0
    """Skeleton side branches shorter than this (reference px, and shorter than
    ``spur_width_factor`` x the local tube width) are skeletonisation artefacts."""
    spur_width_factor: float = 1.0
    junction_merge_distance: float = 12.0
    """Junctions joined by a skeleton segment shorter than this (reference px) or than
    ``junction_merge_width_factor`` x their radii are one crossing (an X skeletonises as two Ys)."""
    junction_merge_width_factor: float = 1.2
    direction_length: float = 55.0
    """Length (reference px) of skeleton beyond a junction's own radius used to measure a
    branch's direction."""
    pair_angle: float = 45.0
    """Two branches leaving a junction continue one another (one tube passing through) if their
    directions deviate from a straight line by less than this (degrees)."""
    bend_angle: float = 50.0
    """Where only two branches meet (a junction whose side branches were pruned), they are one
    tube unless it turns by more than this (degrees): a V of two tubes meeting end to end."""
    fork_angle: float = 30.0
    """An unpaired branch joins the tube it leaves at a shallow angle (deviation from straight
    below this, degrees) as a branch of that myotube; at steeper angles it is a separate,
    touching myotube."""
    min_instance_length: float = 120.0
    """Unpaired branches shorter than this (reference px) stay with their neighbour instead of
    becoming a myotube of their own."""

    def pixel_scale(self, height: int, width: int) -> float:
        if self.scale is not None:
            return float(self.scale)
        return max(height, width) / float(self.reference_size)

    def physical_scale(self, pixel_size_um: float) -> float:
        """Pixels of an image with ``pixel_size_um`` microns per pixel per reference pixel."""
        if not self.reference_pixel_size_um:
            raise ValueError("physical_scale needs reference_pixel_size_um")
        return float(self.reference_pixel_size_um) / float(pixel_size_um)

    def replace(self, **changes) -> AnnotatorParams:
        return dataclasses.replace(self, **changes)
