"""Batch prediction: inputs → tiled prediction → post-processing → exports and measurements.

:func:`run_prediction` is what ``predict.py`` runs; it takes any ``predict_fn(image) ->
Instances`` (the trained model, or a stand-in in tests) and writes, per image ``NAME``:

- ``NAME_overlay.png``       image with every instance filled, outlined and numbered
- ``NAME_labels.tif``        uint16 label image (0 background, ids 1..N; overlaps by score)
- ``NAME_coco.json``         COCO instances with RLE masks (overlaps whole), boxes and scores
- ``NAME_rois.zip``          ImageJ/Fiji RoiSet, one polygon per instance named by its id
- ``NAME_measurements.csv``  one row per myotube (see :mod:`mask2former.measure`)

and over all images ``summary.csv`` (one row per image, failures included with their error)
and ``predictions_coco.json``. ``predict_fn`` may also be the classical annotator
(:class:`.annotator.AnnotatorPredictor`): the same files, from its instances. One failing image is
reported on one line and the rest go on.
After each image's files, its manifest seals them; the run's files are rebuilt from the manifests,
which is what lets a run be resumed, sharded and merged (see batch_state.py).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..config import get_cfg
from ..data.io import ImageMetadata, is_image_file, read_image, read_image_and_metadata
from ..errors import ImageReadError, InputError, MyotubeError, one_line
from ..measure.nuclei import nuclei_labels_from_mask, nucleus_columns, nucleus_rows, segment_nuclei
from ..measure.table import measure_instances
from ..structures import CroppedInstances, Instances
from ..utils.fileio import claim_free_name
from ..utils.processes import worker_context
from ..utils.resumable import ignore_stop_signals
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
from .filters import PostprocessParams, postprocess
from .tiling import PredictFn, predict_tiled

logger = logging.getLogger(__name__)
_DEFAULTS = get_cfg()

NUCLEI_MASK_SUFFIXES = ("", "_nuclei_mask", "_nuclei_masks", "_nuclei_labels", "_nuclei", "_mask", "_labels")
NUCLEI_IMAGE_SUFFIXES = ("", "_dapi", "_hoechst", "_nuclei")
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


@dataclass(frozen=True)
class PredictOptions:
    """Everything besides the model that decides what a run produces."""

    # Tile side in model-input pixels; a tile covers tile_size / input_scale pixels of the image.
    tile_size: int = _DEFAULTS.INPUT.IMAGE_SIZE
    tile_overlap: float = _DEFAULTS.INFERENCE.TILE_OVERLAP
    # Model-input pixels per image pixel: the model's training scale (data/scale.py).
    input_scale: float = 1.0
    # Fragments from two tiles are one object when their IoU inside the region both tiles saw is
    # at least this (see inference/tiling.py).
    tile_match_overlap: float = _DEFAULTS.INFERENCE.TILE_MATCH_OVERLAP
    # The model's post-processing (filters.py); None: none at all, the predictor's instances are
    # the result (the classical annotator, which cleans up its own).
    post: PostprocessParams | None = field(default_factory=PostprocessParams)
    # False: every image goes to the predictor whole, whatever its size (the classical annotator,
    # which works at the image's own pixels); True: tiles of ``tile_size`` model pixels.
    tiled: bool = True
    # By index, or by name where the file names its channels.
    channel: int | str = -1
    # The planes of an unnamed TIFF axis are a Z-stack (max-projected); see data/io.read_image.
    z_project: bool = False
    # Series (TIFF) or scene (CZI, ND2, LIF), by index or name; None: the first.
    scene: int | str | None = None
    nuclei_channel: int | str | None = None
    nuclei_masks_dir: str | None = None
    nuclei_images_dir: str | None = None
    # Microns per pixel, for every image; None: each image's own metadata, else pixels.
    pixel_size: float | None = None
    # Microns per model pixel, when the model records it: each image whose metadata gives its
    # pixel size is then resized by the ratio (unless the scale was fixed by hand).
    model_pixel_size_um: float | None = None
    # Classical nuclei segmentation: about a nucleus radius, and the smallest nucleus, in pixels,
    # or in microns (they win when the image's pixel size is known).
    nuclei_min_distance: int = 7
    nuclei_min_area: int = 30
    nuclei_radius_um: float | None = None
    nuclei_min_area_um2: float | None = None
    # A myotube with at least this many nuclei counts as fused (fusion index).
    fusion_min_nuclei: int = 2
    # Processes that measure and export while the model predicts the next image (0: all in turn).
    workers: int = 0
    progress: bool = True

    @classmethod
    def from_cfg(cls, cfg, **overrides) -> PredictOptions:
        """Tiling and post-processing from the config (``INFERENCE.*``, score threshold, channel)."""
        inf = cfg.INFERENCE
        tile = int(inf.TILE_SIZE) or int(cfg.INPUT.IMAGE_SIZE)
        base = cls(
            tile_size=tile,
            tile_overlap=float(inf.TILE_OVERLAP),
            tile_match_overlap=float(inf.TILE_MATCH_OVERLAP),
            post=PostprocessParams.from_cfg(cfg),
            channel=int(cfg.INPUT.CHANNEL),
            z_project=bool(cfg.INPUT.Z_PROJECT),
        )
        return replace(base, **overrides)

    @property
    def image_tile_size(self) -> int:
        """Tile side in pixels of the image: the model sees ``tile_size`` pixels after resizing."""
        return max(1, round(self.tile_size / self.input_scale))

    def validate(self) -> None:
        if not self.input_scale > 0:
            raise InputError(None, f"input scale must be > 0, got {self.input_scale}")
        if self.tile_size < 32:
            raise InputError(None, f"tile size must be at least 32 pixels, got {self.tile_size}")
        if not 0.0 <= self.tile_overlap < 0.9:
            raise InputError(None, f"tile overlap must be in [0, 0.9), got {self.tile_overlap}")
        if self.pixel_size is not None and self.pixel_size <= 0:
            raise InputError(None, f"pixel size must be > 0 microns, got {self.pixel_size}")
        if self.workers < 0:
            raise InputError(None, f"--workers must be 0 or more, got {self.workers}")
        if self.fusion_min_nuclei < 1:
            raise InputError(None, f"--fusion-min-nuclei must be at least 1, got {self.fusion_min_nuclei}")
        for name, value in (
            ("--nuclei-radius-um", self.nuclei_radius_um),
            ("--nuclei-min-area-um2", self.nuclei_min_area_um2),
        ):
            if value is not None and value <= 0:
                raise InputError(None, f"{name} must be > 0, got {value}")
        sources = [self.nuclei_channel is not None, bool(self.nuclei_masks_dir), bool(self.nuclei_images_dir)]
        if sum(sources) > 1:
            raise InputError(
                None,
                "give only one nuclei source: a nuclei channel, a nuclei mask folder "
                "or a nuclei image folder",
            )
        for directory in (self.nuclei_masks_dir, self.nuclei_images_dir):
            if directory and not os.path.isdir(directory):
                raise InputError(directory, "nuclei folder not found")


# --------------------------------------------------------------------------- inputs


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


# --------------------------------------------------------------------------- one image


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
        return postprocess(raw, options.post)


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


def predict_file(path: str, predict_fn: PredictFn, options: PredictOptions) -> CroppedInstances:
    """One image file's instances as predict.py finds them (its pixel size and scene included),
    without writing anything."""
    return read_and_predict(path, predict_fn, options, Path(path).stem, StageTimer()).instances


def read_and_predict(
    path: str, predict_fn: PredictFn, options: PredictOptions, name: str, timer: StageTimer
) -> Predicted:
    """Read one image, resize it to the model's scale, predict its instances (tiled)."""
    with timer("read"):
        image, meta = read_image_and_metadata(
            path, channel=options.channel, z_project=options.z_project, scene=options.scene
        )
    return predict_read_image(path, name, image, meta, predict_fn, options, timer)


def predict_read_image(
    path: str,
    name: str,
    image: np.ndarray,
    meta: ImageMetadata,
    predict_fn: PredictFn,
    options: PredictOptions,
    timer: StageTimer,
) -> Predicted:
    """The model's part for an image already read: its pixel size, its scale, its instances."""
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


def process_image(
    path: str,
    predict_fn: PredictFn,
    options: PredictOptions,
    output_dir: str,
    name: str | None = None,
    image_id: int = 1,
    timer: StageTimer | None = None,
) -> ImageResult:
    """Predict one image and write all its outputs (see the module doc)."""
    timer = timer or StageTimer()
    predicted = read_and_predict(path, predict_fn, options, name or Path(path).stem, timer)
    result = measure_and_export(predicted, output_dir, image_id)
    timer.seconds.update(result.seconds)
    return result


# --------------------------------------------------------------------------- a run


@dataclass
class RunReport:
    summaries: list[dict]  # summary row of every image done, in input order (earlier runs' too, when resumed)
    failures: list[tuple[str, str]]  # (path, one-line message), of this run
    output_dir: str
    total: int = 0  # images of this run's batch or shard
    stopped: int | None = None  # the signal that stopped the run early

    @property
    def ok(self) -> bool:
        return not self.failures


def run_prediction(
    inputs: str | Sequence[str],
    predict_fn: PredictFn,
    output_dir: str,
    options: PredictOptions,
    batch=None,
    stop=None,
) -> RunReport:
    """Predict every input image; failures are reported and skipped (see the module doc).

    ``batch`` (:func:`.batch_state.plan_batch`): which images of which batch this run does (a shard,
    less what an earlier run finished); by default all of ``inputs``. ``stop`` (a StopRequests):
    after a signal the images in hand are finished, and the report says ``stopped``.
    """
    options.validate()
    if batch is None:
        from .batch_state import plan_batch

        batch = plan_batch(collect_inputs(inputs, exclude_dir=output_dir), output_dir)
    os.makedirs(output_dir, exist_ok=True)
    failures: list[tuple[str, str]] = []

    bar = _progress_bar(batch) if options.progress else None

    def record(position: int, path: str, name: str, outcome: dict | BaseException) -> None:
        if isinstance(outcome, BaseException):  # one bad image must not stop a batch of hundreds
            message = one_line(outcome, limit=1000)
            if not isinstance(outcome, MyotubeError):
                message = f"{path}: {type(outcome).__name__}: {message}"
                logger.debug("traceback for %s", path, exc_info=outcome)
            failures.append((path, message))
            (bar.write if bar is not None else print)(f"failed: {message}", file=sys.stderr)
            outcome = batch.sealer.seal_failure(position, path, name, message)
        batch.add(position, outcome)
        if bar is not None:
            bar.update(1)

    def stopping() -> bool:
        return stop is not None and stop.received is not None

    jobs = [(position, batch.paths[position], batch.names[position]) for position in batch.todo]
    if options.workers > 0:
        _run_overlapped(jobs, predict_fn, options, record, batch.sealer, stopping)
    else:
        for position, path, name in jobs:
            if stopping():
                break
            try:
                result = process_image(path, predict_fn, options, output_dir, name, position + 1)
                outcome: dict | BaseException = batch.sealer.seal(position, result)
            except (KeyboardInterrupt, MemoryError):
                raise
            except Exception as err:
                outcome = err
            record(position, path, name, outcome)
    if bar is not None:
        bar.close()
    batch.write_run_files()
    return RunReport(
        batch.done_rows(), failures, output_dir, len(batch.positions), stop.received if stopping() else None
    )


def _progress_bar(batch):
    from tqdm import tqdm

    return tqdm(
        total=len(batch.positions), initial=len(batch.sealed), desc="images", unit="image", file=sys.stderr
    )


def _run_overlapped(jobs, predict_fn: PredictFn, options: PredictOptions, record, sealer, stopping) -> None:
    """The model in this process, one image after the other; reading the next image in a thread,
    measuring and exporting in ``options.workers`` processes. Results are recorded in input order,
    and at most ``2 x workers`` predicted images wait, so memory stays bounded. Once ``stopping()``
    no image is started; those in the workers are finished and sealed there (``sealer.export``)."""
    reader = ThreadPoolExecutor(1)
    pool = ProcessPoolExecutor(options.workers, mp_context=worker_context(), initializer=ignore_stop_signals)
    waiting: deque = deque()  # (position, path, name, future or exception), in input order

    def flush(limit: int) -> None:
        while len(waiting) > limit:
            position, path, name, pending = waiting.popleft()
            try:
                outcome = pending.result() if isinstance(pending, Future) else pending
            except (KeyboardInterrupt, MemoryError):
                raise
            except Exception as err:
                outcome = err
            record(position, path, name, outcome)

    try:
        read_ahead = reader.submit(_read_for, jobs[0][1], options) if jobs else None
        for k, (position, path, name) in enumerate(jobs):
            if stopping():
                break
            image_and_meta = read_ahead
            read_ahead = reader.submit(_read_for, jobs[k + 1][1], options) if k + 1 < len(jobs) else None
            try:
                predicted = _predict_read(path, name, image_and_meta, predict_fn, options)
                waiting.append((position, path, name, pool.submit(sealer.export, predicted, position)))
            except (KeyboardInterrupt, MemoryError):
                raise
            except Exception as err:
                waiting.append((position, path, name, err))
            flush(2 * options.workers)
        flush(0)
    finally:
        reader.shutdown(wait=True, cancel_futures=True)
        pool.shutdown(wait=True, cancel_futures=True)


def _read_for(path: str, options: PredictOptions):
    start = time.perf_counter()
    image, meta = read_image_and_metadata(
        path, channel=options.channel, z_project=options.z_project, scene=options.scene
    )
    return image, meta, time.perf_counter() - start


def _predict_read(
    path: str, name: str, read: Future, predict_fn: PredictFn, options: PredictOptions
) -> Predicted:
    """:func:`read_and_predict` for an image a reader thread has read."""
    image, meta, read_seconds = read.result()
    timer = StageTimer()
    timer.seconds["read"] = read_seconds
    return predict_read_image(path, name, image, meta, predict_fn, options, timer)


# summary.csv: the columns every image's row starts with and the two it ends with, named here so
# that the header has them with no row yet and when every image failed. Each image's own columns
# (scene, its measurement summary in its unit, nuclei) come between, in first-seen order.
SUMMARY_LEADING_COLUMNS = ("image", "name", "height", "width", "pixel_size_um", "pixel_size_source", "scale")
SUMMARY_TRAILING_COLUMNS = ("seconds", "error")


def summary_columns(rows: Sequence[dict]) -> list[str]:
    """summary.csv's columns for these rows: the leading ones, every other key in first-seen
    order, then ``seconds`` and ``error`` (a failed image has only image, name and error)."""
    seen = dict.fromkeys(SUMMARY_LEADING_COLUMNS)
    for row in rows:
        for key in row:
            if key not in SUMMARY_TRAILING_COLUMNS:
                seen.setdefault(key, None)
    return [*seen, *SUMMARY_TRAILING_COLUMNS]


def write_summary_csv(path: str | os.PathLike, rows: Sequence[dict]) -> None:
    """One row per image, done or failed, under :func:`summary_columns`' header."""
    write_csv(path, rows, summary_columns(rows))
