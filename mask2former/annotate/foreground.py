"""Foreground (all-myotube) mask of a myosin-channel image.

Steps: intensity normalised by bit depth → Gaussian smoothing → background subtraction →
threshold ``min_contrast + relative_threshold x bright level`` → fill nuclei holes → drop debris,
short fragments and round mononuclear cells. docs/annotator.md explains the choices.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi

from .params import AnnotatorParams


def full_scale(image: np.ndarray) -> float:
    """The value that means 'saturated' for this image: 255 for 8-bit data, 4095 for 12-bit data
    stored in 16-bit files (most microscope cameras), 65535 for full 16-bit, and so on."""
    if image.dtype == np.uint8:
        return 255.0
    peak = float(np.max(image)) if image.size else 0.0
    if image.dtype.kind == "f" and peak <= 1.0:
        return 1.0
    bits = max(8, int(np.ceil(np.log2(max(peak, 1.0) + 1.0))))
    return float(2**bits - 1)


def normalize_intensity(image: np.ndarray) -> np.ndarray:
    """Any image from :func:`mask2former.data.io.read_image` → float32 (H, W) in [0, 1].

    Colour images are reduced to their per-pixel maximum: a false-coloured fluorescence RGB keeps
    its signal in one channel, and the maximum keeps it whichever channel that is.
    """
    img = np.asarray(image)
    if img.ndim == 3:
        img = img.max(axis=2)
    if img.ndim != 2:
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {img.shape}")
    if img.dtype.kind == "f" and not np.isfinite(img).all():
        img = np.nan_to_num(img, nan=0.0, posinf=0.0, neginf=0.0)  # dead pixels in float exports
    out = img.astype(np.float32)
    out *= np.float32(1.0 / full_scale(img))
    return out


@dataclass
class Foreground:
    mask: np.ndarray  # (H, W) bool
    contrast: np.ndarray  # (H, W) float32, smoothed intensity above background (full scale = 1)
    threshold: float  # in contrast units
    bright_level: float  # contrast_percentile of the contrast image


def foreground_mask(image: np.ndarray, params: AnnotatorParams | None = None) -> Foreground:
    """Semantic myotube mask of ``image`` (any dtype; see :func:`normalize_intensity`)."""
    params = params or AnnotatorParams()
    fg = thresholded(image, params)
    fg.mask = cleaned(fg.mask, params)
    return fg


def cleaned(mask: np.ndarray, params: AnnotatorParams) -> np.ndarray:
    """The steps of :func:`foreground_mask` after its threshold: small holes filled, non-myotube
    components dropped. Apart, so that one contrast image can be cut at several thresholds."""
    scale = params.pixel_scale(*mask.shape)
    return remove_non_myotube_components(
        fill_small_holes(mask, params.fill_holes_area * scale**2), params, scale
    )


def thresholded(
    image: np.ndarray, params: AnnotatorParams | None = None, fill_holes: bool = False
) -> Foreground:
    """The first steps of :func:`foreground_mask`: every pixel brighter than the field's threshold
    (with ``fill_holes``, also the small dark holes inside it, such as nuclei), before non-myotube
    components are dropped. The threshold follows the field's own bright level, so a faint tube
    next to bright ones falls below it."""
    params = params or AnnotatorParams()
    img = normalize_intensity(image)
    h, w = img.shape
    scale = params.pixel_scale(h, w)
    sigma = max(params.smoothing_sigma * scale, 0.3)
    smooth = cv2.GaussianBlur(img, (0, 0), sigma)
    contrast = smooth - _background(smooth, params.background_window * scale)
    sample = contrast[:: _sample_step(h, w), :: _sample_step(h, w)]
    bright = float(np.percentile(sample, params.contrast_percentile))
    threshold = params.min_contrast + params.relative_threshold * max(bright, 0.0)
    mask = contrast > threshold
    if fill_holes:
        mask = fill_small_holes(mask, params.fill_holes_area * scale**2)
    return Foreground(mask=mask, contrast=contrast, threshold=threshold, bright_level=bright)


def _sample_step(h: int, w: int) -> int:
    # Percentiles of ~250k pixels are as good as of all of them and much cheaper.
    return max(1, int(np.sqrt(h * w / 250_000)))


def _background(smooth: np.ndarray, window: float) -> np.ndarray | float:
    h, w = smooth.shape
    if window <= 0:
        step = _sample_step(h, w)
        return float(np.median(smooth[::step, ::step]))
    # Local background: 20th percentile over windows, computed on a grid 8 cells per window.
    cell = max(1, int(window / 8))
    small = cv2.resize(smooth, (max(1, w // cell), max(1, h // cell)), interpolation=cv2.INTER_AREA)
    small = ndi.percentile_filter(small, 20, size=9, mode="nearest")
    small = cv2.GaussianBlur(small, (0, 0), 2.0)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def fill_small_holes(mask: np.ndarray, max_area: float) -> np.ndarray:
    """Fill enclosed background regions smaller than ``max_area`` pixels (nuclei, noise)."""
    if max_area <= 0 or not mask.any():
        return mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats((~mask).astype(np.uint8), connectivity=4)
    h, w = mask.shape
    x, y, bw, bh, area = (stats[:, i] for i in range(5))
    touches_border = (x == 0) | (y == 0) | (x + bw == w) | (y + bh == h)
    fill = (area < max_area) & ~touches_border
    fill[0] = False  # label 0 is the mask itself
    if not fill.any():
        return mask
    return mask | fill[labels]


def remove_non_myotube_components(mask: np.ndarray, params: AnnotatorParams, scale: float) -> np.ndarray:
    """Drop debris, short fragments and compact round cells; keep everything tube-like."""
    if not mask.any():
        return mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    x, y, bw, bh, area = (stats[:, i] for i in range(5))
    # Floors: a thumbnail of a whole field must still not turn every noise speck into a myotube.
    keep = (np.maximum(bw, bh) >= max(params.min_length * scale, 8.0)) & (
        area >= max(params.min_area * scale**2, 16.0)
    )
    keep[0] = False
    round_limit = params.round_max_area * scale**2
    for i in np.flatnonzero(keep & (area < round_limit)):
        crop = (labels[y[i] : y[i] + bh[i], x[i] : x[i] + bw[i]] == i).astype(np.uint8)
        if elongation(crop) < params.min_elongation:
            keep[i] = False
    return keep[labels]


def elongation(mask: np.ndarray) -> float:
    """Major/minor axis ratio of the ellipse with the same second moments."""
    m = cv2.moments(mask, binaryImage=True)
    if m["m00"] == 0:
        return 0.0
    mu20, mu02, mu11 = m["mu20"] / m["m00"], m["mu02"] / m["m00"], m["mu11"] / m["m00"]
    common = np.sqrt(4 * mu11**2 + (mu20 - mu02) ** 2)
    major, minor = (mu20 + mu02 + common) / 2, (mu20 + mu02 - common) / 2
    return float(np.sqrt(major / max(minor, 1e-6)))
