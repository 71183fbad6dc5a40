"""CVAT "for images 1.1" XML (``annotations.xml``).

``<polygon points="x,y;x,y;...">`` becomes a polygon instance; ``<mask rle="..." left top width
height>`` a mask instance. CVAT's mask RLE counts alternate background/foreground runs, starting
with background, over the ``width x height`` box in row-major order. Shapes sharing a non-zero
``group_id`` and label are one object (their union). Boxes, points, polylines, ellipses, cuboids and
skeletons carry no outline of a myotube and are skipped with a warning. An image's ``subset``
attribute (e.g. "Train", "Test", "Validation") gives the split.

Images are looked up in: ``image_dir``, the XML's folder, its ``images/`` and ``images/<subset>/``
subfolders (CVAT's export zip layout); the name as written first, then its base name.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict

import numpy as np

from ...errors import DatasetError
from ..coco_masks import mask_to_rle
from .base import (
    ImportedDataset,
    ImportedImage,
    ImportedInstance,
    as_coordinates,
    as_image_size,
    as_int,
    as_label,
    merge_segmentations,
    place_mask,
    resolve_image,
    split_from_name,
)

_SKIPPED_SHAPES = {"box", "points", "polyline", "ellipse", "cuboid", "skeleton"}


def is_cvat_xml(path: str) -> bool:
    """True if the XML's root element is CVAT's ``<annotations>`` (reads only the first tag)."""
    try:
        for _event, element in ET.iterparse(path, events=("start",)):
            return element.tag == "annotations"
    except (ET.ParseError, OSError):
        return False
    return False


def decode_cvat_rle(rle: str, width: int, height: int, what: str = "mask", file: str = "") -> np.ndarray:
    """CVAT mask RLE ("3, 5, 2, ...") → boolean ``(height, width)`` box mask."""
    try:
        counts = [int(v) for v in rle.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise DatasetError(file, f"{what}: rle must be comma-separated integers") from None
    if any(c < 0 for c in counts):
        raise DatasetError(file, f"{what}: rle has a negative run length")
    if sum(counts) != width * height:
        raise DatasetError(
            file, f"{what}: rle covers {sum(counts)} pixels but the mask box is {width}x{height}"
        )
    values = np.arange(len(counts)) % 2 == 1  # runs alternate background, foreground, ...
    return np.repeat(values, counts).reshape(height, width)


def load_cvat(path: str, image_dir: str | None = None) -> ImportedDataset:
    path, root = _read_cvat_xml(os.fspath(path))
    here = os.path.dirname(os.path.abspath(path))
    dataset = ImportedDataset(source=path, format="cvat")
    skipped: Counter = Counter()
    seen_names: set[str] = set()
    for element in root.iter("image"):
        name = element.get("name")
        if not name:
            raise DatasetError(path, f'<image id="{element.get("id")}"> has no name')
        if name in seen_names:
            raise DatasetError(path, f"image {name!r} is listed twice")
        seen_names.add(name)
        dataset.images.append(_load_image(element, name, path, here, image_dir, skipped))
    if not seen_names:
        raise DatasetError(path, "no <image> elements: nothing is annotated in this file")
    dataset.warnings.extend(f"{path}: {n} {message}" for message, n in skipped.items())
    return dataset


def _read_cvat_xml(path: str) -> tuple[str, ET.Element]:
    """The CVAT for images XML file (the only one, if ``path`` is a folder) and its root element."""
    if os.path.isdir(path):
        xml_files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(".xml"))
        xml_files = [f for f in xml_files if is_cvat_xml(f)]
        if len(xml_files) != 1:
            found = ", ".join(os.path.basename(f) for f in xml_files) or "none"
            raise DatasetError(path, f"expected one CVAT XML file here, found {found}; pass the file itself")
        path = xml_files[0]
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise DatasetError(path, f"not valid XML ({err}; truncated?)") from None
    except OSError as err:
        raise DatasetError(path, f"cannot read ({err.strerror or err})") from None
    if root.tag != "annotations":
        raise DatasetError(
            path, f"not a CVAT XML file (root element is <{root.tag}>, expected <annotations>)"
        )
    if root.find("track") is not None:
        raise DatasetError(
            path, "this is a 'CVAT for video' export (tracks); export the task as 'CVAT for images 1.1'"
        )
    return path, root


def _load_image(
    element: ET.Element, name: str, path: str, here: str, image_dir: str | None, skipped: Counter
) -> ImportedImage:
    """One ``<image>`` with its polygons and masks; shapes of one group become one instance."""
    what = f"image {name!r}"
    height, width = as_image_size(element.get("height"), element.get("width"), what, path)
    subset = element.get("subset")
    split = split_from_name(subset) if subset else None
    dirs = [image_dir, here, os.path.join(here, "images")] + (
        [os.path.join(here, "images", subset)] if subset else []
    )
    image = ImportedImage(
        name=name,
        annotation_file=path,
        path=resolve_image(name, dirs, path),
        height=height,
        width=width,
        split=split,
    )

    groups: dict[tuple[str, str], list] = defaultdict(list)
    for k, shape in enumerate(element):
        where = f"{what} {shape.tag} #{k}"
        if shape.tag == "tag":
            continue
        if shape.tag in _SKIPPED_SHAPES:
            skipped[f"<{shape.tag}> shapes skipped (no outline of an object; draw polygons or masks)"] += 1
            continue
        segmentation = _shape_segmentation(shape, where, path, height, width, skipped)
        if segmentation is None:
            continue
        label = as_label(shape.get("label"))
        group = shape.get("group_id") or "0"
        key = (label, group) if group != "0" else (label, f"shape{k}")
        groups[key].append((segmentation, where))
    for (label, _group), parts in groups.items():
        segm = merge_segmentations([p for p, _ in parts], height, width, parts[0][1], path)
        image.instances.append(ImportedInstance(label, segm, where=parts[0][1]))
    return image


def _shape_segmentation(
    shape: ET.Element, where: str, path: str, height: int, width: int, skipped: Counter
) -> list[list[float]] | dict | None:
    """A ``<polygon>`` as a polygon, a ``<mask>`` as full-image RLE; None (counted) for anything else."""
    if shape.tag == "polygon":
        segmentation = [_parse_points(shape.get("points"), where, path)]
        if len(segmentation[0]) < 6:
            skipped["polygons with fewer than 3 points skipped"] += 1
            return None
        return segmentation
    if shape.tag == "mask":
        box_w = as_int(shape.get("width"), f"{where} width", path)
        box_h = as_int(shape.get("height"), f"{where} height", path)
        left = as_int(shape.get("left"), f"{where} left", path, minimum=-(10**9))
        top = as_int(shape.get("top"), f"{where} top", path, minimum=-(10**9))
        if box_w * box_h > 4 * width * height:
            raise DatasetError(
                path, f"{where}: mask box {box_w}x{box_h} is far larger than the {width}x{height} image"
            )
        patch = decode_cvat_rle(shape.get("rle") or "", box_w, box_h, where, path)
        canvas, clipped = place_mask(patch, left, top, height, width)
        if clipped:
            skipped["masks cut at the image border (they extended outside it)"] += 1
        return mask_to_rle(canvas)
    skipped[f"unknown <{shape.tag}> elements skipped"] += 1
    return None


def _parse_points(text: str | None, what: str, file: str) -> list[float]:
    if not text:
        raise DatasetError(file, f"{what} has no points")
    flat: list[str] = []
    for pair in text.strip().split(";"):
        xy = pair.split(",")
        if len(xy) != 2:
            raise DatasetError(file, f"{what}: point {pair!r} is not 'x,y'")
        flat.extend(xy)
    return as_coordinates(flat, what, file)
