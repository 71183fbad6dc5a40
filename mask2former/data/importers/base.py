"""What every manual-annotation importer returns, and the checks they share.

An importer turns one tool's export into an :class:`ImportedDataset`: images (a file on disk or
embedded bytes, the size the annotation was drawn on, an optional train/test split) and their
instances, each a category name plus a COCO segmentation: polygons in COCO pixel coordinates
(pixel ``(i, j)`` spans ``[i, i+1] x [j, j+1]``) or a compressed RLE mask of the annotated size.
Nothing is rasterised or rescaled here; :mod:`mask2former.data.organize` does that once the real
image size is known. Malformed input raises :class:`~mask2former.errors.DatasetError` naming the file.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from ...errors import DatasetError
from ..coco import read_json  # noqa: F401  (read_json: re-exported for the importers)
from ..coco_masks import rle_string_counts
from ..coco_validation import MAX_IMAGE_SIDE

# Sanity limits that keep a typo (or a corrupt file) from allocating terabytes: microscopy fields
# are a few thousand pixels wide; polygons may stray a little outside the image, not kilometres.
MAX_IMAGE_PIXELS = 2**30
TRAIN = "train"
TEST = "test"
UNLABELLED = "unlabelled"

# Subset / file / folder names that mean "held out for evaluation".
_TEST_WORDS = {"test", "testing", "val", "valid", "validation", "eval", "evaluation", "holdout"}
_TRAIN_WORDS = {"train", "training"}


@dataclass
class ImportedInstance:
    """One annotated object: a category name and a COCO segmentation of the annotated image size."""

    category: str
    segmentation: list[list[float]] | dict
    where: str = ""  # e.g. "shape 3 of image 'a.png'": names the instance in warnings

    @property
    def is_polygon(self) -> bool:
        return isinstance(self.segmentation, list)

    def to_rle(self, height: int, width: int) -> dict:
        """Compressed RLE (bytes counts) rasterised the way pycocotools (and so COCO tools) does."""
        if self.is_polygon:
            polygons = [p for p in self.segmentation if len(p) >= 6]
            if not polygons:
                return mask_utils.encode(np.zeros((height, width), np.uint8, order="F"))
            return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
        return self.segmentation

    def to_mask(self, height: int, width: int) -> np.ndarray:
        return mask_utils.decode(self.to_rle(height, width)).astype(bool)


@dataclass
class ImportedImage:
    """One annotated image. ``height``/``width`` are the size the annotation was drawn on (None: unknown,
    the image file decides). Exactly one of ``path`` and ``data`` (embedded file bytes) is set."""

    name: str
    annotation_file: str
    path: str | None = None
    data: bytes | None = None
    height: int | None = None
    width: int | None = None
    instances: list[ImportedInstance] = field(default_factory=list)
    split: str | None = None
    # Optional COCO image keys saying how the image relates to the microscope's (data/coco.py
    # SCALE_KEYS): kept through organizing so training can record the model's pixel scale.
    scale_keys: dict = field(default_factory=dict)

    @property
    def source_id(self) -> str:
        """Identity of the underlying file: two entries with the same id are the same image."""
        if self.path is not None:
            return "file:" + os.path.realpath(self.path)
        import hashlib

        return "data:" + hashlib.sha256(self.data or b"").hexdigest()


@dataclass
class ImportedDataset:
    source: str
    format: str
    images: list[ImportedImage] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def categories(self) -> list[str]:
        """Category names used by the instances, sorted."""
        return sorted(self.category_counts())

    def category_counts(self) -> Counter:
        return Counter(inst.category for img in self.images for inst in img.instances)

    @property
    def has_test_split(self) -> bool:
        return any(img.split == TEST for img in self.images)


# --------------------------------------------------------------------------- files


def split_from_name(name: str) -> str | None:
    """'instances_Test.json' → test, 'train_annotations.json' → train, 'default' → None."""
    words = {w for w in re.split(r"[^a-z]+", os.path.splitext(os.path.basename(name))[0].lower()) if w}
    if words & _TEST_WORDS:
        return TEST
    if words & _TRAIN_WORDS:
        return TRAIN
    return None


def normalise_relpath(name: str) -> str:
    """Annotation tools on Windows write backslashes; URLs and 'file://' prefixes are not paths."""
    name = name.strip()
    if name.startswith("file://"):
        name = name[len("file://") :]
    return name.replace("\\", "/")


def resolve_image(name: str, search_dirs: Sequence[str | None], annotation_file: str) -> str:
    """First existing ``dir/name``, then ``dir/basename(name)``, over ``search_dirs`` in order."""
    rel = normalise_relpath(name)
    if re.match(r"^[a-z][a-z0-9+.-]*://", rel, re.IGNORECASE):
        raise DatasetError(annotation_file, f"image {name!r} is a URL; download it and give a local folder")
    if "\x00" in rel:
        raise DatasetError(annotation_file, f"image name {short(name)} contains a NUL character")
    if os.path.isabs(rel) and os.path.isfile(rel):
        return rel
    dirs = list(dict.fromkeys(d for d in search_dirs if d))
    candidates = [os.path.join(d, rel) for d in dirs] + [os.path.join(d, os.path.basename(rel)) for d in dirs]
    for candidate in candidates:
        try:
            if os.path.isfile(candidate):
                return os.path.normpath(candidate)
        except (ValueError, OSError):  # NUL bytes or over-long names: cannot be a file
            continue
    looked = ", ".join(dirs) or "nowhere"
    raise DatasetError(
        annotation_file, f"image {name!r} not found (looked in {looked}; set --manual_image_dir)"
    )


# --------------------------------------------------------------------------- values


def as_int(value: Any, what: str, file: str, minimum: int = 1) -> int:
    """A whole number given as a JSON number or numeric string (XML attributes are strings)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DatasetError(file, f"{what} must be an integer, got {short(value)}")
    if isinstance(value, int):
        number = value
    else:
        try:
            as_float = float(value)
        except (ValueError, OverflowError):
            raise DatasetError(file, f"{what} must be an integer, got {short(value)}") from None
        if not math.isfinite(as_float) or as_float != int(as_float):
            raise DatasetError(file, f"{what} must be an integer, got {short(value)}")
        number = int(as_float)
    if number < minimum:
        raise DatasetError(file, f"{what} must be at least {minimum}, got {short(value)}")
    return number


def as_image_size(height: Any, width: Any, what: str, file: str) -> tuple[int, int]:
    """(height, width) of an annotated image, within the sanity limits."""
    h = as_int(height, f"{what} height", file)
    w = as_int(width, f"{what} width", file)
    if max(h, w) > MAX_IMAGE_SIDE or h * w > MAX_IMAGE_PIXELS:
        raise DatasetError(file, f"{what} has an implausible size {w}x{h}")
    return h, w


def polygon_extent_problem(polygons: Iterable[Sequence[float]], height: int, width: int) -> str | None:
    """Coordinates this far outside the image are corrupt data (and would make rasterising explode)."""
    margin = 4 * max(height, width) + 64
    for poly in polygons:
        if poly and (
            min(poly) < -margin or max(poly[0::2]) > width + margin or max(poly[1::2]) > height + margin
        ):
            return f"polygon coordinates lie far outside the {width}x{height} image"
    return None


def as_coordinates(values: Any, what: str, file: str) -> list[float]:
    """A flat list of finite numbers (JSON numbers or numeric strings)."""
    if not isinstance(values, (list, tuple)):
        raise DatasetError(file, f"{what}: coordinates must be a list, got {short(values)}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise DatasetError(file, f"{what}: coordinate {short(v)} is not a number")
        try:
            f = float(v)
        except (ValueError, OverflowError):
            raise DatasetError(file, f"{what}: coordinate {short(v)} is not a number") from None
        if not math.isfinite(f):
            raise DatasetError(file, f"{what}: coordinate {short(v)} is not finite")
        out.append(f)
    return out


def as_label(value: Any) -> str:
    """Category names as users type them: stripped; empty means unlabelled."""
    if value is None:
        return UNLABELLED
    text = str(value).strip()
    return text or UNLABELLED


def short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def polygon_from_xy(xs: Any, ys: Any, what: str, file: str) -> list[float]:
    x = as_coordinates(xs, what, file)
    y = as_coordinates(ys, what, file)
    if len(x) != len(y):
        raise DatasetError(file, f"{what}: {len(x)} x but {len(y)} y coordinates")
    return [v for pair in zip(x, y) for v in pair]


def polygon_from_pairs(points: Any, what: str, file: str) -> list[float]:
    """[[x, y], [x, y], ...] → [x, y, x, y, ...]."""
    if not isinstance(points, (list, tuple)):
        raise DatasetError(file, f"{what}: points must be a list of [x, y], got {short(points)}")
    flat: list[Any] = []
    for p in points:
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            raise DatasetError(file, f"{what}: point {short(p)} is not [x, y]")
        flat.extend(p)
    return as_coordinates(flat, what, file)


# --------------------------------------------------------------------------- masks


def place_mask(patch: np.ndarray, left: int, top: int, height: int, width: int) -> tuple[np.ndarray, bool]:
    """Paste a box-sized mask into a ``height x width`` canvas; True if part of it was cut off."""
    canvas = np.zeros((height, width), dtype=bool)
    ph, pw = patch.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + ph, height), min(left + pw, width)
    if y1 > y0 and x1 > x0:
        canvas[y0:y1, x0:x1] = patch[y0 - top : y1 - top, x0 - left : x1 - left]
    clipped = bool(patch.any()) and int(canvas.sum()) != int(patch.sum())
    return canvas, clipped


def coco_rle(segmentation: dict, height: int, width: int, what: str, file: str) -> dict:
    """A COCO RLE dict (compressed or not) checked and turned into compressed RLE of ``height x width``."""
    size = segmentation.get("size")
    counts = segmentation.get("counts")
    if not (isinstance(size, (list, tuple)) and len(size) == 2):
        raise DatasetError(file, f"{what}: RLE needs 'size': [height, width]")
    h, w = as_image_size(size[0], size[1], f"{what}: RLE", file)
    if (h, w) != (height, width):
        raise DatasetError(file, f"{what}: RLE size {h}x{w} differs from the image size {height}x{width}")
    if isinstance(counts, str):
        try:
            numbers = rle_string_counts(counts)
        except (ValueError, UnicodeEncodeError) as err:
            raise DatasetError(file, f"{what}: RLE counts cannot be decoded ({err})") from None
    elif isinstance(counts, list):
        numbers = [as_int(c, f"{what}: RLE count", file, minimum=0) for c in counts]
    else:
        raise DatasetError(file, f"{what}: RLE needs 'counts' (list or string)")
    if any(c < 0 for c in numbers) or sum(numbers) != h * w:
        raise DatasetError(file, f"{what}: RLE counts cover {sum(numbers)} pixels, image has {h * w}")
    return mask_utils.frPyObjects({"size": [h, w], "counts": numbers}, h, w)


def merge_segmentations(
    parts: Iterable[list[list[float]] | dict], height: int | None, width: int | None, what: str, file: str
) -> list[list[float]] | dict:
    """Union of several segmentations of one object (grouped shapes): polygons stay polygons."""
    parts = list(parts)
    if all(isinstance(p, list) for p in parts):
        return [poly for p in parts for poly in p]
    if height is None or width is None:
        raise DatasetError(file, f"{what}: grouping polygons with masks needs the image size")
    for p in parts:
        problem = polygon_extent_problem(p, height, width) if isinstance(p, list) else None
        if problem:
            raise DatasetError(file, f"{what}: {problem}")
    return mask_utils.merge([ImportedInstance("", p).to_rle(height, width) for p in parts])


def counted(n: int, plural_phrase: str) -> str:
    """``3 polygons skipped``, ``1 polygon skipped``: the phrase starts with a plural noun
    (or an adjective and one)."""
    if n == 1:
        words = plural_phrase.split(" ")
        # The noun is the first or second word ("masks cut ...", "label images hold ...").
        for i in range(min(2, len(words))):
            if words[i].endswith("s") and not words[i].endswith("ss"):
                words[i] = words[i][:-1]
                break
        plural_phrase = " ".join(words).replace(" hold ", " holds ", 1)
    return f"{n} {plural_phrase}"


def note_lines(where: str, notes) -> list[str]:
    """One warning per kind of note, counted: ``WHERE: 2 masks cut at the image border``."""
    return [f"{where}: {counted(n, message)}" for message, n in notes.items()]
