"""Generated fields written as datasets: exact ground truth, and the classical annotator's labels.

``write_synthetic_dataset`` lays the fields of :mod:`mask2former.data.synthetic` out as COCO
datasets: a plain one (images + ``annotations.json``), or the four splits of the unified
layout, whose algorithmic splits the annotator labels. It sits above ``data/`` because it runs
the annotator; ``utils/make_synthetic_dataset.py`` is its command line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence

import cv2
import numpy as np

from .annotate import AnnotatorParams, annotate_image
from .data.catalog import ANNOTATION_FILES
from .data.coco import write_coco_json
from .data.coco_masks import mask_annotations
from .data.synthetic import SyntheticField, SyntheticParams, generate_field
from .utils.fileio import atomic_write_with


def _write_png(path: str, image: np.ndarray) -> None:
    def writer(tmp: str) -> None:
        if not cv2.imwrite(tmp, image):
            raise OSError(f"{path}: could not write image")

    atomic_write_with(path, writer, suffix=".png")


def _densities(density: float | str | Sequence[float | str], n: int) -> list[float | str]:
    if isinstance(density, (str, float, int)):
        return [density] * n
    seq = list(density)
    return [seq[i % len(seq)] for i in range(n)]


def write_synthetic_dataset(
    out_dir: str | os.PathLike,
    num_images: int,
    size: int = 512,
    seed: int = 0,
    density: float | str | Sequence[float | str] = ("sparse", "medium", "dense"),
    bit_depth: int = 8,
    pixel_scale: float = 1.0,
    unified: bool = False,
    test_fraction: float = 0.2,
    manual_fraction: float = 0.5,
    algorithmic: str = "annotator",
    write_dapi: bool = False,
    params: SyntheticParams | None = None,
    progress: bool = True,
) -> str:
    """Write ``num_images`` fields to ``out_dir/images`` and their ground truth as COCO JSON.

    Plain mode: ``out_dir/annotations.json`` (returned). Unified mode: the four split files of
    mask2former.data.catalog under ``out_dir/annotations`` — the last ``test_fraction`` of the
    images form the test splits; ``manual_*`` hold the exact ground truth (standing in for manual
    annotations; ``manual_fraction`` of the training images get one), ``algorithmic_*`` hold the
    classical annotator's output (``algorithmic="annotator"``) or the ground truth too
    (``"truth"``, faster). Returns the path of the manual-train JSON in unified mode.
    ``write_dapi`` adds ``dapi/<name>_dapi.png`` and ``nuclei/<name>_nuclei.png`` (uint16 labels).
    """
    if num_images < 1:
        raise ValueError("num_images must be at least 1")
    if algorithmic not in ("annotator", "truth"):
        raise ValueError("algorithmic must be 'annotator' or 'truth'")
    out_dir = os.fspath(out_dir)
    image_dir = os.path.join(out_dir, "images")
    os.makedirs(image_dir, exist_ok=True)
    densities = _densities(density, num_images)
    # One child seed per image: image i is the same whatever num_images is.
    children = np.random.SeedSequence(seed).spawn(num_images)
    records = []
    annotate = _field_annotator(pixel_scale) if unified and algorithmic == "annotator" else None
    for i in _image_indices(num_images, progress):
        f = generate_field(
            size,
            rng=np.random.default_rng(children[i]),
            density=densities[i],
            bit_depth=bit_depth,
            pixel_scale=pixel_scale,
            params=params,
        )
        entry = _write_field_images(out_dir, i, f, write_dapi)
        algo = annotate(f.image) if annotate is not None else f.masks
        records.append((entry, f.masks, algo))

    if not unified:
        path = os.path.join(out_dir, "annotations.json")
        _write_coco(path, [(entry, truth) for entry, truth, _ in records])
        return path
    return _write_unified_splits(out_dir, records, test_fraction, manual_fraction)


def _image_indices(num_images: int, progress: bool) -> Iterable[int]:
    """0 .. num_images-1, counted on a progress bar on stderr when ``progress``."""
    if not progress:
        return range(num_images)
    from tqdm import tqdm

    return tqdm(range(num_images), desc="synthetic fields", unit="img", file=sys.stderr)


def _field_annotator(pixel_scale: float) -> Callable[[np.ndarray], np.ndarray]:
    """The classical annotator with its reference scale set to the fields' pixel scale."""
    annotator_params = AnnotatorParams(scale=pixel_scale)

    def annotate(img: np.ndarray) -> np.ndarray:
        return annotate_image(img, annotator_params)

    return annotate


def _write_field_images(out_dir: str, i: int, f: SyntheticField, write_dapi: bool) -> dict:
    """Write field ``i``'s image (and with ``write_dapi`` its nuclei); return its COCO image entry."""
    name = f"synthetic_{i:05d}.png"
    _write_png(os.path.join(out_dir, "images", name), f.image)
    if write_dapi:
        stem = os.path.splitext(name)[0]
        _write_png(os.path.join(out_dir, "dapi", f"{stem}_dapi.png"), f.nuclei_image)
        _write_png(os.path.join(out_dir, "nuclei", f"{stem}_nuclei.png"), f.nuclei_labels.astype(np.uint16))
    return {"id": i + 1, "file_name": name, "height": int(f.image.shape[0]), "width": int(f.image.shape[1])}


def _write_coco(path: str, items: Sequence[tuple[dict, np.ndarray]]) -> None:
    """One COCO file of (image entry, masks) pairs, annotation ids numbered across the images."""
    images, anns = [], []
    for entry, masks in items:
        images.append(entry)
        anns += mask_annotations(masks, entry["id"], len(anns) + 1)
    write_coco_json(path, images, anns)


def _write_unified_splits(
    out_dir: str,
    records: list[tuple[dict, np.ndarray, np.ndarray]],
    test_fraction: float,
    manual_fraction: float,
) -> str:
    """The four split files of the unified layout; the path of the manual-train one."""
    num_images = len(records)
    n_test = int(round(num_images * test_fraction)) if num_images > 1 else 0
    n_test = min(max(n_test, 1 if num_images > 1 and test_fraction > 0 else 0), num_images - 1)
    train, test = records[: num_images - n_test], records[num_images - n_test :]
    n_manual = max(1, int(round(len(train) * manual_fraction)))
    splits = {
        "myotube_algorithmic_train": [(e, a) for e, _, a in train],
        "myotube_algorithmic_test": [(e, a) for e, _, a in test],
        "myotube_manual_train": [(e, t) for e, t, _ in train[:n_manual]],
        "myotube_manual_test": [(e, t) for e, t, _ in test],
    }
    for split, items in splits.items():
        if not items:
            continue
        _write_coco(os.path.join(out_dir, "annotations", ANNOTATION_FILES[split]), items)
    return os.path.join(out_dir, "annotations", ANNOTATION_FILES["myotube_manual_train"])
