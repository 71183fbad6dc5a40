"""Instance label images: one integer id per object, 0 background (cellpose, Fiji/ImageJ, QuPath...).

Pairing rule, first layout that matches wins:

1. ``M/images/`` + ``M/labels/`` (or ``M/masks/``): ``labels/x.tif`` (or ``labels/x_labels.tif``,
   any suffix below) pairs with ``images/x.<any image extension>``.
2. Side by side in ``M``: ``x_labels.tif`` pairs with ``x.png`` (or ``x.tif``, ``x.jpg``...). Label
   suffixes: ``_labels``, ``_label``, ``_masks``, ``_mask``, ``_cp_masks``, ``_instances``;
   label files are ``.tif``, ``.tiff`` or ``.png``.

``image_dir`` (``--manual_image_dir``) overrides where the images are looked up. Every pixel value
> 0 is one instance, even if its pixels form several pieces; holes stay holes (masks become RLE).
Label images must be single-channel integer images (8/16/32-bit; a float TIFF holding whole numbers
is accepted). Images without a label file are left out with a warning.
"""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
from scipy import ndimage

from ...errors import DatasetError, ImageReadError
from ..coco_masks import mask_to_rle
from ..io import IMAGE_EXTENSIONS, read_image
from .base import ImportedDataset, ImportedImage, ImportedInstance, note_lines

LABEL_SUFFIXES = ("_cp_masks", "_labels", "_label", "_masks", "_mask", "_instances")
LABEL_EXTENSIONS = (".tif", ".tiff", ".png")
LABEL_FOLDERS = ("labels", "masks")


def label_stem(filename: str) -> str | None:
    """'x_labels.tif' → 'x'; None if the name has no label suffix or extension."""
    stem, ext = os.path.splitext(filename)
    if ext.lower() not in LABEL_EXTENSIONS:
        return None
    for suffix in LABEL_SUFFIXES:
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return None


def find_label_pairs(folder: str, image_dir: str | None = None) -> tuple[list[tuple[str, str]], list[str]]:
    """(image, label file) pairs by the pairing rule, and the images that have no label file."""
    folder = os.fspath(folder)
    label_dir = next(
        (os.path.join(folder, d) for d in LABEL_FOLDERS if os.path.isdir(os.path.join(folder, d))), None
    )
    if label_dir is not None and (image_dir or os.path.isdir(os.path.join(folder, "images"))):
        images_in = image_dir or os.path.join(folder, "images")
        labels = {}
        for f in sorted(os.listdir(label_dir)):
            if os.path.splitext(f)[1].lower() in LABEL_EXTENSIONS:
                stem = label_stem(f) or os.path.splitext(f)[0]
                if stem in labels:
                    raise DatasetError(
                        os.path.join(label_dir, f),
                        f"a second label file for image {stem!r} (also {os.path.basename(labels[stem])})",
                    )
                labels[stem] = os.path.join(label_dir, f)
    else:
        images_in = image_dir or folder
        labels = {}
        for f in sorted(os.listdir(folder)):
            stem = label_stem(f)
            if stem is not None and os.path.isfile(os.path.join(folder, f)):
                if stem in labels:
                    raise DatasetError(
                        os.path.join(folder, f),
                        f"a second label file for image {stem!r} (also {os.path.basename(labels[stem])})",
                    )
                labels[stem] = os.path.join(folder, f)
    if not labels:
        return [], []
    label_files = {os.path.realpath(p) for p in labels.values()}
    images: dict[str, list[str]] = {}
    if os.path.isdir(images_in):
        for f in sorted(os.listdir(images_in)):
            full = os.path.join(images_in, f)
            ext = os.path.splitext(f)[1].lower()
            if (
                ext in IMAGE_EXTENSIONS
                and os.path.realpath(full) not in label_files
                and label_stem(f) is None
            ):
                images.setdefault(os.path.splitext(f)[0], []).append(full)
    pairs = []
    for stem, label_file in labels.items():
        matches = images.get(stem, [])
        if not matches:
            raise DatasetError(label_file, f"no image '{stem}.*' for this label image in {images_in}")
        if len(matches) > 1:
            names = ", ".join(os.path.basename(m) for m in matches)
            raise DatasetError(label_file, f"several images match this label image ({names}); keep one")
        pairs.append((matches[0], label_file))
    unlabelled = [paths[0] for stem, paths in images.items() if stem not in labels]
    return pairs, unlabelled


def read_label_image(path: str) -> np.ndarray:
    """Integer ``(H, W)`` label array; refuses stacks, colour, negative and fractional labels."""
    if path.lower().endswith((".tif", ".tiff")):
        _refuse_stack(path)
    try:
        labels = read_image(path)
    except ImageReadError as err:
        raise DatasetError(path, err.problem) from None
    if labels.ndim == 3:
        if all(np.array_equal(labels[..., 0], labels[..., c]) for c in range(1, labels.shape[2])):
            labels = labels[..., 0]
        else:
            raise DatasetError(
                path,
                f"label image has {labels.shape[2]} different channels; "
                "save one integer id per pixel (16-bit TIFF/PNG)",
            )
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise DatasetError(path, "label image holds fractional values; ids must be whole numbers")
        if labels.size and np.abs(labels).max() > 2**32:
            raise DatasetError(path, "label image holds ids above 2^32; is it an intensity image?")
        labels = labels.astype(np.int64)
    elif labels.dtype.kind == "b":
        labels = labels.astype(np.uint8)
    elif labels.dtype.kind not in "iu":
        raise DatasetError(path, f"label image has unsupported data type {labels.dtype}")
    if labels.dtype.kind == "i" and labels.min() < 0:
        raise DatasetError(path, "label image has negative ids")
    return labels


def _refuse_stack(path: str) -> None:
    """read_image max-projects Z-stacks, which would merge the ids of different slices."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            shape = tif.series[0].shape
    except Exception:  # unreadable: read_image reports it properly
        return
    if sum(1 for n in shape if n > 1) > 2 and not (len(shape) == 3 and shape[-1] in (3, 4)):
        raise DatasetError(path, f"label image is a stack {tuple(shape)}; save one 2-D label image per field")


def label_instances(labels: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(id, mask) for every id > 0, in id order; ids need not be consecutive.

    Masks are uint8 in Fortran order, the layout pycocotools encodes without a copy (a C-to-F copy
    of a 2048² mask costs more than the encoding itself).
    """
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if len(ids) == 0:
        return []
    if ids[-1] <= 4 * len(ids) + 65536:
        dense, dense_ids = labels, [int(v) for v in range(1, int(ids[-1]) + 1)]
    else:  # sparse 32-bit ids: renumber so find_objects' list stays short
        dense = (np.searchsorted(ids, labels).astype(np.int32) + 1) * (labels > 0)
        dense_ids = [int(v) for v in ids]
    out = []
    for index, bbox in enumerate(ndimage.find_objects(dense)):
        if bbox is None:
            continue
        mask = np.zeros(labels.shape, dtype=np.uint8, order="F")
        mask[bbox] = dense[bbox] == index + 1
        out.append((dense_ids[index], mask))
    return out


def load_label_images(path: str, image_dir: str | None = None) -> ImportedDataset:
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise DatasetError(
            path, "label images are read from a folder (images + label files; see docs/organize.md)"
        )
    pairs, unlabelled = find_label_pairs(path, image_dir)
    if not pairs:
        raise DatasetError(
            path,
            "no label images found (expected labels/ + images/, or x_labels.tif next to x.png; "
            f"suffixes {', '.join(LABEL_SUFFIXES)})",
        )
    dataset = ImportedDataset(source=path, format="labels")
    notes: Counter = Counter()
    for image_path, label_path in pairs:
        labels = read_label_image(label_path)
        image = ImportedImage(
            name=os.path.basename(image_path),
            annotation_file=label_path,
            path=image_path,
            height=int(labels.shape[0]),
            width=int(labels.shape[1]),
        )
        for label_id, mask in label_instances(labels):
            image.instances.append(
                ImportedInstance("myotube", mask_to_rle(mask), where=f"{label_path} id {label_id}")
            )
        if len(image.instances) == 1 and ndimage.label(labels > 0)[1] > 1:
            notes[
                "label images hold one id over several separate regions: semantic masks? "
                "(touching objects would be one instance)"
            ] += 1
        dataset.images.append(image)
    if unlabelled:
        dataset.warnings.append(
            f"{path}: {len(unlabelled)} images without a label file left out "
            f"(e.g. {os.path.basename(unlabelled[0])})"
        )
    dataset.warnings.extend(note_lines(path, notes))
    return dataset
