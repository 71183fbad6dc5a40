"""One image through prediction: read it, predict its instances at the model's scale, then measure
them and write its files.

The steps are separate functions because the batch (run.py) runs them in different places: with
measuring workers, a reader thread reads the next image (:func:`read_input_image`) while the model
predicts this one (:func:`predict_at_model_scale`, in the main process, which holds the model), and
a worker process measures and exports it (:func:`measure_and_export`, given the picklable
:class:`Predicted`). :func:`predict_and_export_file` does all three in turn, :func:`predict_file`
the first two without writing anything. Per image ``NAME`` :func:`measure_and_export` writes:

- ``NAME_overlay.png``       image with every instance filled, outlined and numbered
- ``NAME_labels.tif``        uint16 label image (0 background, ids 1..N; overlaps by score)
- ``NAME_coco.json``         COCO instances with RLE masks (overlaps whole), boxes and scores
- ``NAME_rois.zip``          ImageJ/Fiji RoiSet, one polygon per instance named by its id
- ``NAME_measurements.csv``  one row per myotube (see :mod:`mask2former.measure`)

and, with a nuclei source, ``NAME_nuclei_labels.tif`` and ``NAME_nuclei.csv``. Every step adds its
seconds to a :class:`StageTimer` (for the logs and the benchmark).
"""

from __future__ import annotations

import contextlib
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..data.io import ImageMetadata, read_image_and_metadata
from ..measure.nuclei import nucleus_columns, nucleus_rows
from ..measure.table import measure_instances
from ..structures import CroppedInstances, Instances
from .export import (
    coco_annotations,
    coco_image_entry,
    render_overlay,
    write_coco,
    write_csv,
    write_instances_tiff,
    write_label_image_tiff,
    write_png,
    write_roi_zip,
)
from .filters import postprocess
from .inputs import load_nuclei_labels
from .options import PredictOptions
from .tiling import PredictFn, predict_tiled


class StageTimer:
    """Seconds spent per stage, summed over calls (for logs and the benchmark)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def predict_image(
    image: np.ndarray,
    predict_fn: PredictFn,
    options: PredictOptions,
    timer: StageTimer | None = None,
) -> CroppedInstances:
    """Tiled prediction (whole when the image fits one tile, or untiled options), stitching and
    post-processing (none when ``options.post`` is None)."""
    timer = timer or StageTimer()
    model_seconds = 0.0

    def timed_predict(tile: np.ndarray) -> Instances:
        nonlocal model_seconds
        start = time.perf_counter()
        try:
            return predict_fn(tile)
        finally:
            model_seconds += time.perf_counter() - start

    start = time.perf_counter()
    # Untiled, the whole image is the one tile.
    tile = options.image_tile_size if options.tiled else max(image.shape[:2])
    tiled = max(image.shape[:2]) > tile
    field_range = getattr(predict_fn, "fixed_intensity_range", None) if tiled else None
    with field_range(image) if field_range else contextlib.nullcontext():
        raw = predict_tiled(
            image,
            timed_predict,
            tile,
            options.tile_overlap,
            options.tile_match_overlap,
            progress=options.progress,
        )
    total = time.perf_counter() - start
    timer.seconds["model"] = timer.seconds.get("model", 0.0) + model_seconds
    timer.seconds["tiling_merge"] = timer.seconds.get("tiling_merge", 0.0) + total - model_seconds
    if options.post is None:  # the predictor's own result, untouched
        return raw
    with timer("postprocess"):
        return postprocess(raw, options.post, image)


@contextlib.contextmanager
def _at_scale(predict_fn: PredictFn, factor: float):
    """Let a predictor that resizes its inputs (MyotubePredictor.input_scale) use ``factor`` for
    one image; stand-in predictors without that attribute are left alone."""
    previous = getattr(predict_fn, "input_scale", None)
    if previous is None:
        yield
        return
    predict_fn.input_scale = factor
    try:
        yield
    finally:
        predict_fn.input_scale = previous


@contextlib.contextmanager
def _for_image(predict_fn: PredictFn, path: str, pixel_size: float | None):
    """Tell a predictor that needs them the image's file and pixel size for one image (the
    classical annotator's scale may follow from the pixel size); others are left alone."""
    hook = getattr(predict_fn, "for_image", None)
    with hook(path, pixel_size) if hook is not None else contextlib.nullcontext():
        yield


@dataclass
class ImageResult:
    """One image done: its instances, its summary.csv row, its COCO annotations and files."""

    path: str
    name: str
    instances: CroppedInstances
    summary: dict
    annotations: list[dict]
    seconds: dict[str, float]
    files: list[str] = field(default_factory=list)  # written, relative to the output folder


@dataclass
class Predicted:
    """One image after the model: what measuring and exporting need (picklable, for a worker)."""

    path: str
    name: str
    image: np.ndarray
    instances: CroppedInstances
    pixel_size: float | None
    pixel_size_source: str | None
    scene: str | None
    options: PredictOptions
    seconds: dict[str, float]


def read_input_image(
    path: str, options: PredictOptions, timer: StageTimer
) -> tuple[np.ndarray, ImageMetadata]:
    """The image and metadata of one input file, read as ``options`` say (channel, Z-projection,
    scene); its seconds go to ``timer`` under ``read``."""
    with timer("read"):
        return read_image_and_metadata(
            path, channel=options.channel, z_project=options.z_project, scene=options.scene
        )


def predict_at_model_scale(
    path: str,
    name: str,
    image: np.ndarray,
    meta: ImageMetadata,
    predict_fn: PredictFn,
    options: PredictOptions,
    timer: StageTimer,
) -> Predicted:
    """The model's part for an image already read: its pixel size (``--pixel-size``, else its
    metadata), its scale (the model's microns per pixel against the image's, when both are known),
    its instances (:func:`predict_image`)."""
    pixel_size, source = (
        (options.pixel_size, "--pixel-size")
        if options.pixel_size
        else (meta.pixel_size_um, meta.pixel_size_source)
    )
    if options.model_pixel_size_um and meta.pixel_size_um and not options.pixel_size:
        # Both sizes known: this image is resized to the model's microns per pixel.
        options = replace(options, input_scale=meta.pixel_size_um / options.model_pixel_size_um)
    with _at_scale(predict_fn, options.input_scale), _for_image(predict_fn, path, pixel_size):
        instances = predict_image(image, predict_fn, options, timer)
    scene = meta.scene if meta.scene is not None and len(meta.scenes) > 1 else None
    return Predicted(path, name, image, instances, pixel_size, source, scene, options, dict(timer.seconds))


def predict_file(path: str, predict_fn: PredictFn, options: PredictOptions) -> CroppedInstances:
    """One image file's instances as predict.py finds them (its pixel size and scene included),
    without writing anything."""
    timer = StageTimer()
    image, meta = read_input_image(path, options, timer)
    return predict_at_model_scale(path, Path(path).stem, image, meta, predict_fn, options, timer).instances


def measure_and_export(predicted: Predicted, output_dir: str, image_id: int = 1) -> ImageResult:
    """Nuclei, measurements and every per-image file of one predicted image."""
    p, options, timer = predicted, predicted.options, StageTimer()
    timer.seconds.update(p.seconds)
    with timer("measure"):
        nuclei = load_nuclei_labels(p.path, p.image.shape[:2], options, p.pixel_size)
        measured = measure_instances(
            p.instances, p.pixel_size, nuclei, fusion_min_nuclei=options.fusion_min_nuclei
        )
    with timer("export"):
        base = os.path.join(output_dir, p.name)
        files = [
            p.name + suffix
            for suffix in ("_overlay.png", "_labels.tif", "_coco.json", "_rois.zip", "_measurements.csv")
        ]
        write_png(base + "_overlay.png", render_overlay(p.image, p.instances, nuclei_labels=nuclei))
        write_instances_tiff(base + "_labels.tif", p.instances, p.pixel_size)
        annotations = coco_annotations(p.instances, image_id=1)
        # Where the image is and how it was read: the napari reader shows it under the instances.
        entry = {
            **coco_image_entry(os.path.basename(p.path), p.instances, 1),
            "original_path": os.path.abspath(p.path),
            "channel": options.channel,
            "scene": options.scene,
            "pixel_size_um": p.pixel_size,
        }
        write_coco(base + "_coco.json", [entry], annotations)
        write_roi_zip(base + "_rois.zip", p.instances)
        write_csv(base + "_measurements.csv", measured.rows, measured.columns)
        if nuclei is not None:
            write_label_image_tiff(base + "_nuclei_labels.tif", nuclei, p.pixel_size)
            write_csv(
                base + "_nuclei.csv",
                nucleus_rows(measured.nuclei, p.pixel_size),
                nucleus_columns(p.pixel_size),
            )
            files += [p.name + "_nuclei_labels.tif", p.name + "_nuclei.csv"]
    summary = {
        "image": os.path.basename(p.path),
        "name": p.name,
        "height": p.image.shape[0],
        "width": p.image.shape[1],
        "pixel_size_um": p.pixel_size or "",
        "pixel_size_source": p.pixel_size_source or "",
        "scale": options.input_scale,
    }
    if p.scene is not None:
        summary["scene"] = p.scene
    summary.update(measured.summary)
    summary["seconds"] = sum(timer.seconds.values())
    for ann in annotations:
        ann["image_id"] = image_id
    return ImageResult(p.path, p.name, p.instances, summary, annotations, dict(timer.seconds), files)


def predict_and_export_file(
    path: str,
    predict_fn: PredictFn,
    options: PredictOptions,
    output_dir: str,
    name: str | None = None,
    image_id: int = 1,
    timer: StageTimer | None = None,
) -> ImageResult:
    """Read, predict, measure and write all the files of one image (see the module doc)."""
    timer = timer or StageTimer()
    image, meta = read_input_image(path, options, timer)
    predicted = predict_at_model_scale(path, name or Path(path).stem, image, meta, predict_fn, options, timer)
    result = measure_and_export(predicted, output_dir, image_id)
    timer.seconds.update(result.seconds)
    return result
