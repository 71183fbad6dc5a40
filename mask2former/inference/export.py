"""Per-image outputs: overlay PNG, uint16 label TIFF, COCO JSON, ImageJ/Fiji ROI zip, CSV.

Every file is written to a temporary name beside its target and renamed, so an interrupted run
never leaves a half-written output. Instance ``k`` (0-based, in the given order) has id ``k + 1``
in all of them: label value, COCO annotation id, ROI name and CSV ``id`` column.
"""

from __future__ import annotations

import colorsys
import csv
import json
import os
from collections.abc import Iterable, Sequence

import cv2
import numpy as np

from ..data.coco import CATEGORIES
from ..data.coco_masks import mask_annotations
from ..data.io import to_uint8_display
from ..structures import CroppedInstances, CroppedMask, label_image
from ..utils.fileio import atomic_open, atomic_write_json, atomic_write_with

# --------------------------------------------------------------------------- label image


def write_instances_tiff(
    path: str | os.PathLike, instances: CroppedInstances, pixel_size: float | None = None
) -> np.ndarray:
    """uint16 label image (0 background, id k + 1), overlaps given to the higher score.

    Written as an ImageJ TIFF so Fiji opens it with its calibration when ``pixel_size`` (microns
    per pixel) is known. Returns the label array.
    """
    labels = label_image(instances, np.uint16)
    write_label_image_tiff(path, labels, pixel_size)
    return labels


def write_label_image_tiff(
    path: str | os.PathLike, labels: np.ndarray, pixel_size: float | None = None
) -> None:
    """A uint16 label array as an ImageJ TIFF, calibrated in microns when ``pixel_size`` is known."""
    import tifffile

    labels = labels.astype(np.uint16, copy=False)
    kwargs: dict = {"imagej": True, "photometric": "minisblack"}
    if pixel_size:
        kwargs["resolution"] = (1.0 / pixel_size, 1.0 / pixel_size)
        kwargs["metadata"] = {"unit": "um"}
    atomic_write_with(path, lambda tmp: tifffile.imwrite(tmp, labels, **kwargs), suffix=".tif")


# --------------------------------------------------------------------------- COCO


def coco_annotations(instances: CroppedInstances, image_id: int = 1, first_id: int = 1) -> list[dict]:
    """COCO annotations with RLE masks (overlaps kept whole), XYWH boxes and scores."""

    def full_masks():
        # One full-size mask at a time: pycocotools encodes whole images only.
        full = np.zeros((instances.height, instances.width), bool)
        for m in instances:
            full[m.y0 : m.y1, m.x0 : m.x1] = m.mask
            yield full
            full[m.y0 : m.y1, m.x0 : m.x1] = False

    return mask_annotations(full_masks(), image_id, first_id, scores=[m.score for m in instances])


def coco_image_entry(file_name: str, instances: CroppedInstances, image_id: int = 1) -> dict:
    return {"id": image_id, "file_name": file_name, "height": instances.height, "width": instances.width}


def write_coco(path: str | os.PathLike, images: list[dict], annotations: list[dict]) -> None:
    """A COCO instances file whose annotations also carry ``score``.

    Loadable as a dataset (annotation tools, ``load_coco_instances``) and, via its
    ``annotations`` list, as COCO results (``COCO.loadRes``).
    """
    atomic_write_json(path, {"images": images, "annotations": annotations, "categories": CATEGORIES})


def write_coco_stream(path: str | os.PathLike, images: Iterable[dict], annotations: Iterable[dict]) -> None:
    """:func:`write_coco`, byte for byte, from iterables: the annotations of a batch of thousands
    of fields are written as they are read, never all in memory at once."""

    def items(f, values: Iterable[dict]) -> None:
        for k, value in enumerate(values):
            f.write((", " if k else "") + json.dumps(value))

    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write('{"images": [')
        items(f, images)
        f.write('], "annotations": [')
        items(f, annotations)
        f.write(f'], "categories": {json.dumps(CATEGORIES)}}}')


# --------------------------------------------------------------------------- ROIs


def mask_outline(m: CroppedMask) -> np.ndarray:
    """Outer boundary of the mask's largest piece as (K, 2) x, y in ImageJ coordinates.

    The contour runs along pixel edges (iso-line 0.5 between inside and outside pixel
    centres), so the ROI's area in Fiji matches the mask's pixel count to within an eighth of a
    pixel per corner. Holes are not traced: a ROI here is one simple polygon.
    """
    from skimage.measure import find_contours

    n_pieces, pieces = cv2.connectedComponents(m.mask.astype(np.uint8), connectivity=8)
    piece = m.mask
    if n_pieces > 2:
        sizes = np.bincount(pieces.ravel())
        sizes[0] = 0
        piece = pieces == int(np.argmax(sizes))
    padded = np.pad(piece, 1).astype(np.float32)
    contours = find_contours(padded, 0.5)
    if not contours:
        return np.zeros((0, 2))
    contour = max(contours, key=len)  # the outer boundary is the longest
    if len(contour) > 1 and np.allclose(contour[0], contour[-1]):
        contour = contour[:-1]
    contour = _drop_collinear(contour)
    # find_contours gives (row, col) of pixel centres in the padded crop; ImageJ puts pixel
    # (x, y)'s centre at (x + 0.5, y + 0.5).
    ys = contour[:, 0] - 1 + m.y0 + 0.5
    xs = contour[:, 1] - 1 + m.x0 + 0.5
    return np.column_stack([xs, ys])


def _drop_collinear(points: np.ndarray) -> np.ndarray:
    """Vertices where the outline turns (a straight run of pixel edges becomes one segment)."""
    if len(points) < 4:
        return points
    before = points - np.roll(points, 1, axis=0)
    after = np.roll(points, -1, axis=0) - points
    cross = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
    return points[np.abs(cross) > 1e-9]


def write_roi_zip(path: str | os.PathLike, instances: CroppedInstances) -> int:
    """ImageJ/Fiji RoiSet zip, one polygon ROI per instance named by its id. Returns the count."""
    import roifile

    rois = []
    for k, m in enumerate(instances):
        outline = mask_outline(m)
        if len(outline) < 3:
            # Too small to trace (a line of pixels): fall back to its bounding rectangle.
            outline = np.array([[m.x0, m.y0], [m.x1, m.y0], [m.x1, m.y1], [m.x0, m.y1]], float)
        roi = roifile.ImagejRoi.frompoints(outline, name=f"{k + 1:04d}")
        rois.append(roi)

    def write(tmp: str) -> None:
        if rois:
            roifile.roiwrite(tmp, rois, mode="w")
        else:
            import zipfile

            with zipfile.ZipFile(tmp, "w"):
                pass

    atomic_write_with(path, write, suffix=".zip")
    return len(rois)


# --------------------------------------------------------------------------- overlay


def instance_colors(n: int) -> np.ndarray:
    """Distinct, bright RGB colours (golden-ratio hue steps), uint8 (n, 3)."""
    hues = (np.arange(n) * 0.618033988749895) % 1.0
    return np.array(
        [[int(255 * c) for c in colorsys.hsv_to_rgb(h, 0.85, 1.0)] for h in hues], np.uint8
    ).reshape(-1, 3)


# Nuclei outlines: one colour for all, apart from the myotubes' many.
NUCLEUS_COLOR = (255, 255, 255)


def render_overlay(
    image: np.ndarray,
    instances: CroppedInstances,
    alpha: float = 0.35,
    show_ids: bool = True,
    nuclei_labels: np.ndarray | None = None,
) -> np.ndarray:
    """RGB uint8: the image (percentile-scaled), each instance filled, outlined and numbered; with
    ``nuclei_labels``, every nucleus outlined in white."""
    canvas = to_uint8_display(image).copy()
    h, w = canvas.shape[:2]
    thickness = max(1, round(min(h, w) / 700))
    font_scale = max(0.4, min(h, w) / 1500)
    colors = instance_colors(len(instances))
    # Lowest score first so the most confident instance is drawn on top where they overlap.
    order = np.argsort(instances.scores, kind="stable")
    labels_at: list[tuple[int, tuple[int, int]]] = []
    for k in order:
        m = instances[int(k)]
        color = colors[int(k)].astype(np.float32)
        region = canvas[m.y0 : m.y1, m.x0 : m.x1]
        sel = region[m.mask].astype(np.float32)
        region[m.mask] = (sel * (1 - alpha) + color * alpha).astype(np.uint8)
        contours, _ = cv2.findContours(m.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(
            canvas, contours, -1, tuple(int(c) for c in colors[int(k)]), thickness, offset=(m.x0, m.y0)
        )
        if show_ids:
            # The pixel farthest from the outline lies inside the tube, even when it bends.
            dist = cv2.distanceTransform(np.pad(m.mask, 1).astype(np.uint8), cv2.DIST_L2, 3)
            y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
            labels_at.append((int(k), (int(x) - 1 + m.x0, int(y) - 1 + m.y0)))
    if nuclei_labels is not None and nuclei_labels.any():
        # Outlines of every label at once: pixels whose 3x3 neighbourhood holds another value.
        lab = np.asarray(nuclei_labels)
        edge = (lab > 0) & (
            (cv2.dilate(lab.astype(np.float32), np.ones((3, 3))) != lab)
            | (cv2.erode(lab.astype(np.float32), np.ones((3, 3))) != lab)
        )
        canvas[edge] = NUCLEUS_COLOR
    for k, (x, y) in labels_at:
        text = str(k + 1)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        org = (int(np.clip(x - tw // 2, 0, max(0, w - tw))), int(np.clip(y + th // 2, th, h - 1)))
        cv2.putText(
            canvas, text, org, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), thickness + 2, cv2.LINE_AA
        )
        cv2.putText(
            canvas, text, org, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), thickness, cv2.LINE_AA
        )
    return canvas


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_open(path, "wb") as f:
        f.write(data.tobytes())


# --------------------------------------------------------------------------- CSV


def write_csv(path: str | os.PathLike, rows: Sequence[dict], columns: Sequence[str]) -> None:
    """Rows of dicts → CSV under the header ``columns``, also when there are no rows.

    The columns are the caller's, not read off the rows: a table with no rows still has its header
    (a script that reads many tables needs no special case for an empty one). A row missing a column
    leaves its cell empty; a row with a key outside ``columns`` is a ValueError rather than a
    column silently dropped.
    """
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="raise")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(v) for k, v in row.items()})


def _fmt(value):
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    return value
