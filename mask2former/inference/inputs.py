"""Which files a run reads: the input images, their output names, and each image's nuclei.

:func:`collect_inputs` turns files, folders and glob patterns into the list of images (leaving out
a previous run's outputs when the output folder is among the inputs); :func:`output_names` gives
each a unique file stem for its outputs. The nuclei of an image come from a channel of the same
file, or from a companion file in a folder of nuclei images or masks (:func:`find_companion`
matches ``X_myosin.tif`` to ``X_dapi.tif``, ``X_nuclei_mask.png`` and the like); they are found
and loaded here (:func:`load_nuclei_labels`) so that a missing or mismatched companion is an
input error of that one image. The names of what a run writes live here too: the inputs never
include them, and command.py recognises an earlier run's files by them.
"""

from __future__ import annotations

import glob
import itertools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.io import is_image_file, read_image
from ..errors import ImageReadError, InputError
from ..measure.nuclei import nuclei_labels_from_mask, segment_nuclei
from ..utils.fileio import claim_free_name
from .options import PredictOptions

# A nuclei file's stem is its image's stem, or that stem less its last ``_part``, plus one of these.
NUCLEI_MASK_SUFFIXES = ("", "_nuclei_mask", "_nuclei_masks", "_nuclei_labels", "_nuclei", "_mask", "_labels")
NUCLEI_IMAGE_SUFFIXES = ("", "_dapi", "_hoechst", "_nuclei")
# What a run writes per image NAME: NAME + suffix (``_labels.tif`` covers ``_nuclei_labels.tif``).
OUTPUT_SUFFIXES = (
    "_overlay.png",
    "_labels.tif",
    "_coco.json",
    "_rois.zip",
    "_measurements.csv",
    "_nuclei.csv",
)
# Written once per run, beside the per-image files (manifests/ and batch.json: see batch_state.py).
# The settings file is config.yaml for a model's run, annotator.yaml for the classical annotator's.
SETTINGS_FILES = ("config.yaml", "annotator.yaml")
RUN_FILES = ("summary.csv", "predictions_coco.json", *SETTINGS_FILES, "batch.json", "manifests")


def collect_inputs(specs: str | Sequence[str], exclude_dir: str | None = None) -> list[str]:
    """Image files from files, folders (their images, not recursive) and glob patterns."""
    if isinstance(specs, (str, os.PathLike)):
        specs = [os.fspath(specs)]
    found: list[str] = []
    for spec in specs:
        if any(ch in spec for ch in "*?["):
            matches = sorted(
                p for p in glob.glob(spec, recursive=True) if os.path.isfile(p) and is_image_file(p)
            )
            if not matches:
                raise InputError(spec, "no image files match this pattern")
            found.extend(matches)
        elif os.path.isdir(spec):
            matches = sorted(os.path.join(spec, f) for f in os.listdir(spec) if is_image_file(f))
            matches = [p for p in matches if os.path.isfile(p)]
            if not matches:
                raise InputError(spec, "folder holds no image files (.tif, .tiff, .png, .jpg, .jpeg, .bmp)")
            found.extend(matches)
        elif os.path.isfile(spec):
            if not is_image_file(spec):
                raise InputError(spec, "not an image file (.tif, .tiff, .png, .jpg, .jpeg, .bmp)")
            found.append(spec)
        else:
            raise InputError(spec, "input not found")
    if exclude_dir:
        out = os.path.abspath(exclude_dir)
        # Re-running into the input folder must not predict on the previous run's overlays.
        found = [
            p
            for p in found
            if not (os.path.dirname(os.path.abspath(p)) == out and p.endswith(OUTPUT_SUFFIXES))
        ]
    unique: dict[str, None] = {}
    for p in found:
        unique.setdefault(os.path.abspath(p), None)
    return list(unique)


def output_names(paths: Sequence[str]) -> list[str]:
    """File stems, made unique (``a/x.tif`` and ``b/x.tif`` → ``x``, ``x_2``; ``x.ome.tif`` → ``x``)."""
    taken: set[str] = set()
    names: list[str] = []
    for p in paths:
        stem = Path(p).stem
        stem = stem[:-4] if stem.lower().endswith(".ome") and len(stem) > 4 else stem
        names.append(
            claim_free_name(itertools.chain([stem], (f"{stem}_{n}" for n in itertools.count(2))), taken)
        )
    return names


def find_companion(image_path: str, directory: str, suffixes: Sequence[str]) -> str:
    """The file in ``directory`` that belongs to ``image_path``: same stem, or the stem without
    its last ``_part`` (``X_myosin`` → ``X``) plus one of ``suffixes`` (any image extension)."""
    stem = Path(image_path).stem
    bases = [stem] + ([stem.rsplit("_", 1)[0]] if "_" in stem else [])
    files = {
        Path(f).stem.lower(): os.path.join(directory, f)
        for f in sorted(os.listdir(directory))
        if is_image_file(f)
    }
    me = os.path.abspath(image_path)
    for base in bases:
        for suffix in suffixes:
            candidate = files.get((base + suffix).lower())
            if candidate and os.path.abspath(candidate) != me:
                return candidate
    tried = ", ".join(f"{bases[-1]}{s}.*" for s in suffixes if s)
    raise InputError(
        directory, f"no nuclei file for {os.path.basename(image_path)} (looked for {stem}.*, {tried})"
    )


def nuclei_settings(options: PredictOptions, pixel_size: float | None, path: str) -> dict:
    """The segmentation's radius and minimum area in pixels, from microns when given in microns."""
    seg = {"min_distance": options.nuclei_min_distance, "min_area": options.nuclei_min_area}
    if options.nuclei_radius_um is not None or options.nuclei_min_area_um2 is not None:
        if not pixel_size:
            raise InputError(
                path,
                "nuclei settings in microns need the pixel size: the file does not say it, give --pixel-size",
            )
        if options.nuclei_radius_um is not None:
            seg["min_distance"] = max(1, round(options.nuclei_radius_um / pixel_size))
        if options.nuclei_min_area_um2 is not None:
            seg["min_area"] = max(1, round(options.nuclei_min_area_um2 / pixel_size**2))
    return seg


def load_nuclei_labels(
    image_path: str, shape: tuple[int, int], options: PredictOptions, pixel_size: float | None = None
) -> np.ndarray | None:
    """The image's nuclei as a label image of its ``shape``, from the source ``options`` names
    (segmented from a channel or a nuclei image, or labelled from a mask); None without one."""
    seg = nuclei_settings(options, pixel_size, image_path)
    if options.nuclei_channel is not None:
        source = image_path
        nuclei_image = read_image(
            image_path, channel=options.nuclei_channel, z_project=options.z_project, scene=options.scene
        )
        labels = segment_nuclei(nuclei_image, **seg)
    elif options.nuclei_images_dir:
        source = find_companion(image_path, options.nuclei_images_dir, NUCLEI_IMAGE_SUFFIXES)
        labels = segment_nuclei(read_image(source, z_project=options.z_project), **seg)
    elif options.nuclei_masks_dir:
        source = find_companion(image_path, options.nuclei_masks_dir, NUCLEI_MASK_SUFFIXES)
        labels = nuclei_labels_from_mask(read_image(source), **seg)
    else:
        return None
    if labels.shape != tuple(shape):
        raise ImageReadError(
            source,
            f"nuclei image is {labels.shape[1]}x{labels.shape[0]} "
            f"but the myotube image is {shape[1]}x{shape[0]}",
        )
    return labels
