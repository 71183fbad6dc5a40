"""Nuclei: classical segmentation, assignment to myotubes, central/peripheral position, fusion index.

Definitions:

- A nucleus belongs to the myotube that covers the largest part of it, provided that part is
  at least ``min_inside`` (default half) of the nucleus area; otherwise it lies outside every
  myotube. Each nucleus is counted once, also where myotubes cross.
- Central vs peripheral: the nucleus centroid's distance to the myotube's medial axis (its
  pruned skeleton), divided by the tube's local radius there (distance-transform value at the
  nearest skeleton pixel). Central when that ratio is at most ``central_ratio`` (default 0.5,
  i.e. in the middle half of the tube's width), peripheral otherwise.
- Fusion index: nuclei inside myotubes that hold at least ``fusion_min_nuclei`` nuclei (default
  two: a myotube is a fused cell), divided by all nuclei in the image (0 when it has none).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy import ndimage as ndi

from ..structures import CroppedInstances
from .morphology import ShapeAnalysis, analyze_shape, euclidean_distance, unit_suffix


def split_touching(binary: np.ndarray, min_distance: int = 7, min_area: int = 30) -> np.ndarray:
    """Label a binary nuclei mask, splitting touching nuclei by a distance-transform watershed.

    ``min_distance`` is about a nucleus radius in pixels: two peaks of the distance map closer
    than that are the same nucleus.
    """
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    binary = np.asarray(binary, bool)
    components, _ = ndi.label(binary)
    # (skimage's remove_small_objects changed its size argument between versions.)
    small = np.bincount(components.ravel()) < min_area
    small[0] = False
    binary = binary & ~small[components]
    components[~binary] = 0
    if not binary.any():
        return np.zeros(binary.shape, np.int32)
    distance = euclidean_distance(binary)
    # Smoothing the distance map keeps ragged outlines from seeding extra nuclei.
    smooth = gaussian_blur(distance, 1.0)
    peaks = peak_local_max(
        smooth, min_distance=max(1, int(min_distance)), labels=components, exclude_border=False
    )
    markers = np.zeros(binary.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # A component without a peak (flat plateau) still becomes one nucleus.
    kept = np.flatnonzero(~small)[1:]
    seeded = np.zeros(len(small), bool)
    seeded[components[tuple(peaks.T)]] = True
    unseeded = kept[~seeded[kept]]
    for k, comp in enumerate(unseeded, start=len(peaks) + 1):
        ys, xs = np.nonzero(components == comp)
        markers[ys[len(ys) // 2], xs[len(xs) // 2]] = k
    # Every marker sits inside the mask, so the labels are already 1..len(markers).
    return watershed(-smooth, markers, mask=binary).astype(np.int32, copy=False)


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 1..n in the order of their values (skimage's relabel_sequential, by a
    lookup table: several times faster on a whole field)."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return labels.astype(np.int32)
    if labels.min() < 0:
        raise ValueError("label images hold non-negative values")
    present = np.zeros(int(labels.max()) + 1, bool)
    present[labels.ravel()] = True
    present[0] = False
    lookup = np.cumsum(present, dtype=np.int32) * present
    return lookup[labels]


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """scipy's gaussian_filter (reflected edges, kernel to 4 sigma) by OpenCV: four times faster,
    equal to float32 rounding."""
    size = 2 * int(4 * sigma + 0.5) + 1
    return cv2.GaussianBlur(np.asarray(image, np.float32), (size, size), sigma, borderType=cv2.BORDER_REFLECT)


def segment_nuclei(
    image: np.ndarray,
    sigma: float = 1.5,
    min_distance: int = 7,
    min_area: int = 30,
    method: str = "otsu",
    block_size: int = 101,
    min_contrast: float = 5.0,
) -> np.ndarray:
    """Nuclei label image (int32, 0 = background) from a nuclear stain such as DAPI or Hoechst.

    Gaussian smoothing (``sigma`` px), then Otsu's global threshold (``method="otsu"``) or a
    local mean threshold over ``block_size`` px (``"local"``, for uneven illumination), holes
    filled, objects under ``min_area`` px dropped, touching nuclei split by
    :func:`split_touching`.

    An image without nuclei (noise only) would still be split in two by Otsu; the foreground
    counts only when its mean exceeds the background mean by ``min_contrast`` background standard
    deviations (pure noise gives about 2.7, DAPI fields 10 to 30).
    """
    from skimage.filters import threshold_local, threshold_otsu

    img = np.asarray(image)
    if img.ndim == 3:
        img = img.max(axis=2)
    img = gaussian_blur(img, sigma) if sigma > 0 else img.astype(np.float32)
    if float(img.max()) <= float(img.min()):
        return np.zeros(img.shape, np.int32)
    otsu = threshold_otsu(img)
    above = (img > otsu).view(np.uint8)
    n_above = int(cv2.countNonZero(above))
    if n_above in (0, img.size):
        return np.zeros(img.shape, np.int32)
    foreground_mean = cv2.mean(img, mask=above)[0]
    background_mean, background_std = (float(v[0][0]) for v in cv2.meanStdDev(img, mask=1 - above))
    if foreground_mean - background_mean < min_contrast * max(background_std, 1e-6):
        return np.zeros(img.shape, np.int32)
    if method == "otsu":
        binary = img > otsu
    elif method == "local":
        block = int(block_size) | 1
        binary = (img > threshold_local(img, block, offset=0)) & (img > otsu * 0.5)
    else:
        raise ValueError(f"unknown nuclei threshold method {method!r} (otsu or local)")
    return split_touching(fill_holes(binary), min_distance=min_distance, min_area=min_area)


def fill_holes(binary: np.ndarray) -> np.ndarray:
    """scipy's binary_fill_holes (background 4-connected to the border stays), by OpenCV's flood fill."""
    h, w = binary.shape
    outside = np.ones((h + 2, w + 2), np.uint8)  # a frame of background around the image
    outside[1:-1, 1:-1] = ~binary
    cv2.floodFill(outside, None, (0, 0), 2, flags=4)
    return binary | (outside[1:-1, 1:-1] == 1)


def nuclei_labels_from_mask(mask: np.ndarray, min_distance: int = 7, min_area: int = 30) -> np.ndarray:
    """A nuclei mask file → labels: a binary mask (0 / one value) is split into nuclei; a label
    image (several values) is used as is."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    values = np.unique(mask)
    if len(values) <= 2:
        return split_touching(mask > 0, min_distance=min_distance, min_area=min_area)
    return _relabel(mask)


@dataclass
class NucleiAssignment:
    """Nuclei of one image against its myotubes."""

    n_nuclei: int
    myotube_of: np.ndarray  # (n_nuclei,) index into the instances, -1 outside every myotube
    central: np.ndarray  # (n_nuclei,) bool, meaningful where myotube_of >= 0
    per_myotube: np.ndarray  # (n_myotubes,) nuclei count
    central_per_myotube: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    centroids: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (n_nuclei, 2) row, column
    areas: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # (n_nuclei,) pixels
    fusion_min_nuclei: int = 2

    @property
    def peripheral_per_myotube(self) -> np.ndarray:
        return self.per_myotube - self.central_per_myotube

    @property
    def nuclei_in_myotubes(self) -> int:
        return int(np.count_nonzero(self.myotube_of >= 0))

    @property
    def nuclei_in_fused(self) -> int:
        """Nuclei inside myotubes holding at least ``fusion_min_nuclei`` nuclei."""
        inside = self.myotube_of[self.myotube_of >= 0]
        return int(np.count_nonzero(self.per_myotube[inside] >= self.fusion_min_nuclei)) if len(inside) else 0

    @property
    def fusion_index(self) -> float:
        return self.nuclei_in_fused / self.n_nuclei if self.n_nuclei else 0.0


def assign_nuclei(
    nuclei_labels: np.ndarray,
    instances: CroppedInstances,
    min_inside: float = 0.5,
    central_ratio: float = 0.5,
    shapes: list[ShapeAnalysis] | None = None,
    fusion_min_nuclei: int = 2,
) -> NucleiAssignment:
    """Count each nucleus in the myotube covering most of it (see the module doc)."""
    labels = np.asarray(nuclei_labels)
    if labels.shape != instances.image_size:
        raise ValueError(f"nuclei labels are {labels.shape} but the image is {instances.image_size}")
    n_nuclei = int(labels.max()) if labels.size else 0
    nucleus_area = np.bincount(labels.ravel(), minlength=n_nuclei + 1)
    best_inside = np.zeros(n_nuclei + 1, np.int64)
    myotube_of = np.full(n_nuclei + 1, -1, np.int64)
    for k, m in enumerate(instances):
        inside = labels[m.y0 : m.y1, m.x0 : m.x1][m.mask]
        counts = np.bincount(inside, minlength=n_nuclei + 1)
        counts[0] = 0
        better = counts > best_inside
        best_inside[better] = counts[better]
        myotube_of[better] = k
    enough = best_inside >= min_inside * np.maximum(nucleus_area, 1)
    myotube_of[~enough] = -1
    myotube_of = myotube_of[1:]

    per_myotube = np.bincount(myotube_of[myotube_of >= 0], minlength=len(instances)).astype(int)
    central = np.zeros(n_nuclei, bool)
    centroids = _centroids(labels, n_nuclei, nucleus_area)
    if n_nuclei and len(instances):
        for k in np.unique(myotube_of[myotube_of >= 0]):
            m = instances[int(k)]
            shape = shapes[int(k)] if shapes is not None else analyze_shape(m.mask)
            sy, sx = np.nonzero(shape.skeleton)
            if len(sy) == 0:
                continue
            radius = np.maximum(shape.distance[sy, sx] - 0.5, 0.5)
            for n in np.flatnonzero(myotube_of == k):
                cy, cx = centroids[n] - (m.y0, m.x0)
                d2 = (sy - cy) ** 2 + (sx - cx) ** 2
                nearest = int(np.argmin(d2))
                central[n] = np.sqrt(d2[nearest]) <= central_ratio * radius[nearest]
    central_per = np.bincount(myotube_of[(myotube_of >= 0) & central], minlength=len(instances)).astype(int)
    return NucleiAssignment(
        n_nuclei,
        myotube_of,
        central,
        per_myotube,
        central_per,
        centroids,
        nucleus_area[1:].astype(int),
        fusion_min_nuclei,
    )


def _centroids(labels: np.ndarray, n: int, areas: np.ndarray) -> np.ndarray:
    """(n, 2) mean row and column of each label 1..n (NaN for an empty label)."""
    if not n:
        return np.zeros((0, 2))
    flat = labels.ravel()
    where = np.flatnonzero(flat)
    rows, cols = np.divmod(where, labels.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        cy = np.bincount(flat[where], rows, minlength=n + 1)[1:] / areas[1:]
        cx = np.bincount(flat[where], cols, minlength=n + 1)[1:] / areas[1:]
    return np.stack([cy, cx], axis=1)


# Columns of the per-nucleus table (NAME_nuclei.csv), in order; "{u}" is the length unit, "um" with
# a pixel size, else "px". Named here so that an image without nuclei still gets the header.
NUCLEUS_COLUMNS = ("id", "centroid_x_{u}", "centroid_y_{u}", "area_{u}2", "myotube", "position")


def nucleus_columns(pixel_size: float | None = None) -> list[str]:
    """The per-nucleus table's columns for this unit (the keys of every :func:`nucleus_rows` row)."""
    u = unit_suffix(pixel_size)
    return [c.format(u=u) for c in NUCLEUS_COLUMNS]


def nucleus_rows(assignment: NucleiAssignment, pixel_size: float | None = None) -> list[dict]:
    """One row per nucleus: id (its value in the label image), centroid, area, the myotube it
    belongs to (id, empty outside every myotube) and its position there."""
    u = unit_suffix(pixel_size)
    scale = pixel_size or 1.0
    rows = []
    for n in range(assignment.n_nuclei):
        k = int(assignment.myotube_of[n])
        y, x = assignment.centroids[n]
        rows.append(
            {
                "id": n + 1,
                f"centroid_x_{u}": float(x) * scale,
                f"centroid_y_{u}": float(y) * scale,
                f"area_{u}2": float(assignment.areas[n]) * scale * scale,
                "myotube": k + 1 if k >= 0 else "",
                "position": ("central" if assignment.central[n] else "peripheral") if k >= 0 else "",
            }
        )
    return rows
