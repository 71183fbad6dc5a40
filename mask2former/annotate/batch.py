"""Annotate a folder of raw microscopy images: resized images + COCO train/test annotations.

Output layout (what organize_unified_dataset.py takes as its algorithmic dataset)::

    OUT/images/<stem>.png                     resized so the longest side = resolution
    OUT/annotations/train_annotations.json    COCO, RLE masks, one instance per myotube
    OUT/annotations/test_annotations.json
    OUT/annotation_summary.json               counts, per-image instances, failures

Every image is processed in a worker process; an unreadable file is reported (one line, in the
summary) and skipped, never fatal to the others. Inputs are only read. Every output file is
written to a temporary name and renamed.

Long batches (see utils/resumable.py): each image is sealed by ``OUT/manifests/NAME.json`` (its
result and the written image's checksum), so an interrupted run is continued with ``resume``; a
batch is split with ``shard="K/N"`` and the shards joined by :func:`merge_annotations`. The COCO
files are always built from the manifests over the whole input list, so the train/test split is
the seed's over the whole batch, however it was run.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import tifffile

from ..data.coco import write_coco_json
from ..data.coco_masks import bbox_of_mask, mask_to_rle
from ..data.io import is_image_file, read_all_channels, read_image, read_metadata, select_channel
from ..errors import InputError, MyotubeError
from ..utils.fileio import atomic_write_json, atomic_write_with, claim_free_name
from ..utils.processes import worker_context
from ..utils.resumable import (
    MANIFEST_DIR,
    STATE_FILE,
    OpenedOutput,
    Shard,
    StopRequests,
    check_shards,
    flatten,
    ignore_stop_signals,
    link_shards,
    make_state,
    open_output,
    run_id,
    sealed_positions,
    write_manifest,
    write_state,
)
from .foreground import full_scale
from .instances import annotate_image
from .params import AnnotatorParams

logger = logging.getLogger(__name__)

TRAIN_JSON = "train_annotations.json"
TEST_JSON = "test_annotations.json"
SUMMARY_JSON = "annotation_summary.json"


@dataclass
class ImageResult:
    source: str
    file_name: str | None = None  # written image, relative to OUT/images
    height: int = 0
    width: int = 0
    # Size of the input image before resizing: lets training record the model's pixel scale.
    original_height: int = 0
    original_width: int = 0
    pixel_size_um: float | None = None  # of the written image, when the input's is known
    scale: float = 0.0  # pixels of the written image per reference pixel (AnnotatorParams)
    annotations: list[dict] = field(default_factory=list)  # COCO annotations without ids
    error: str | None = None
    seconds: float = 0.0

    def coco_image(self, image_id: int) -> dict:
        """The written image's entry in a COCO file: its size, the input's size and, when known, its
        pixel size."""
        entry = {
            "id": image_id,
            "file_name": self.file_name,
            "height": self.height,
            "width": self.width,
            "original_height": self.original_height,
            "original_width": self.original_width,
        }
        if self.pixel_size_um:
            entry["pixel_size_um"] = self.pixel_size_um
        return entry


@dataclass
class AnnotationSummary:
    input_dir: str
    output_dir: str
    images: int = 0
    annotated: int = 0
    failed: list[str] = field(default_factory=list)  # "path: reason"
    instances: int = 0
    instances_per_image: dict[str, int] = field(default_factory=dict)
    train_images: int = 0
    test_images: int = 0
    empty_images: list[str] = field(default_factory=list)
    seconds: float = 0.0
    files: dict[str, str] = field(default_factory=dict)
    shard: str = "1/1"
    stopped: int | None = None  # the signal that stopped the run early

    @property
    def ok(self) -> bool:
        return not self.failed

    def lines(self) -> list[str]:
        counts = list(self.instances_per_image.values()) or [0]
        out = [
            f"Annotated {self.annotated}/{self.images} images"
            f"{'' if self.shard == '1/1' else f' of shard {self.shard}'} in "
            f"{self.seconds:.1f} s: {self.instances} myotube instances "
            f"(per image min {min(counts)}, median {float(np.median(counts)):g}, max {max(counts)})",
        ]
        if "summary" in self.files:
            out += [
                f"  train: {self.train_images} images -> {self.files.get('train', '-')}",
                f"  test:  {self.test_images} images -> {self.files.get('test', '-')}",
            ]
        elif self.stopped is None:
            out.append(
                "  no train/test files for one shard: merge the shards (--merge) to split the whole batch"
            )
        if self.empty_images:
            out.append(
                f"  {len(self.empty_images)} images without any myotube: {', '.join(self.empty_images[:5])}"
                + (" ..." if len(self.empty_images) > 5 else "")
            )
        if self.failed:
            out.append(f"  {len(self.failed)} files failed and were skipped:")
            out += [f"    {f}" for f in self.failed]
        return out


def list_inputs(input_dir: str) -> list[str]:
    """Image files directly inside ``input_dir`` (by extension), sorted by name."""
    if not os.path.isdir(input_dir):
        raise InputError(input_dir, "input folder not found")
    names = sorted(n for n in os.listdir(input_dir) if is_image_file(n) and not n.startswith("."))
    paths = [os.path.join(input_dir, n) for n in names if not os.path.isdir(os.path.join(input_dir, n))]
    if not paths:
        raise InputError(input_dir, "no images found (looked for .tif, .tiff, .png, .jpg, .jpeg, .bmp)")
    return paths


def output_names(paths: list[str], extension: str = ".png") -> list[str]:
    """``field.tif`` → ``field.png``; a stem seen before gets its extension appended
    (``field.jpg`` → ``field_jpg.png``) so no output overwrites another."""
    taken: set[str] = set()
    names = []
    for p in paths:
        stem, ext = os.path.splitext(os.path.basename(p))
        suffix = ext.lstrip(".").lower()
        later = (f"{stem}_{suffix}{'' if k == 1 else k}{extension}" for k in itertools.count(1))
        names.append(claim_free_name(itertools.chain([f"{stem}{extension}"], later), taken))
    return names


def resize_longest(image: np.ndarray, resolution: int) -> np.ndarray:
    h, w = image.shape[:2]
    factor = resolution / max(h, w)
    if abs(factor - 1.0) < 1e-9:
        return image
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    # Area averaging when shrinking keeps thin tubes; cubic when enlarging avoids blocky edges.
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    return cv2.resize(image, size, interpolation=interpolation)


def storable(image: np.ndarray) -> np.ndarray:
    """8-bit stays 8-bit; deeper integer data is written as 16-bit PNG (values kept, clipped to
    65535); float data is scaled by its full scale to 16 bit."""
    if image.dtype == np.uint8 or image.dtype == np.uint16:
        return image
    if image.dtype.kind == "f":
        scale = full_scale(image)
        return np.clip(np.rint(image.astype(np.float64) / scale * 65535.0), 0, 65535).astype(np.uint16)
    return np.clip(image, 0, 65535).astype(np.uint16)


def _written_pixel_size(
    path: str, given: float | None, height: int, width: int, written: tuple[int, ...]
) -> float | None:
    """Microns per pixel of the written (resized) image: the input's (``given``, else the file's
    metadata) times the resize."""
    size = given or read_metadata(path).pixel_size_um
    if not size:
        return None
    return float(size) * max(height, width) / max(written[0], written[1])


def _process_one(task: tuple) -> ImageResult:
    path, name, image_dir, resolution, channel, z_project, params, pixel_size = task
    start = time.perf_counter()
    result = ImageResult(source=path)
    try:
        out_path = os.path.join(image_dir, name)
        read = _read_all_channels if channel >= 0 else _read_one_image
        image, writer, suffix = read(path, resolution, channel, z_project, result)
        result.pixel_size_um = _written_pixel_size(
            path, pixel_size, result.original_height, result.original_width, image.shape
        )
        params = _image_params(path, params, result.pixel_size_um)
        result.scale = params.pixel_scale(*image.shape[:2])
        masks = annotate_image(image, params)
        atomic_write_with(out_path, writer, suffix=suffix)
        result.file_name = name
        result.height, result.width = int(image.shape[0]), int(image.shape[1])
        result.annotations = [_coco_annotation(m) for m in masks]
    except MyotubeError as err:
        result.error = str(err)
    except (OSError, ValueError, cv2.error, MemoryError) as err:
        result.error = (
            f"{path}: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else 'failed'}"
        )
    result.seconds = time.perf_counter() - start
    return result


# Writes the image file at the temporary path it is given (atomic_write_with then renames it).
ImageWriter = Callable[[str], None]


def _read_all_channels(
    path: str, resolution: int, channel: int, z_project: bool, result: ImageResult
) -> tuple[np.ndarray, ImageWriter, str]:
    """The image to annotate (``channel``, resized), the writer of its file and the file's suffix;
    records the input's size in ``result``. Every channel is written (a TIFF), so INPUT.CHANNEL
    means the same in Stage 1, whose images these are, as in Stage 2 and in predict.py, which read
    the microscope's files."""
    stack = read_all_channels(path, z_project=z_project)
    select_channel(path, stack, channel)  # the one-line error of a missing channel
    result.original_height, result.original_width = int(stack.shape[0]), int(stack.shape[1])
    stack = storable(resize_longest(stack, resolution))
    image = stack[..., channel] if stack.ndim == 3 else stack
    planes = stack.transpose(2, 0, 1) if stack.ndim == 3 else stack[None]

    def writer(tmp: str) -> None:
        tifffile.imwrite(tmp, planes, photometric="minisblack", metadata={"axes": "CYX"})

    return image, writer, ".tif"


def _read_one_image(
    path: str, resolution: int, channel: int, z_project: bool, result: ImageResult
) -> tuple[np.ndarray, ImageWriter, str]:
    """The image to annotate (grayscale or RGB as it is, resized), the writer of its file (a PNG)
    and the file's suffix; records the input's size in ``result``."""
    image = read_image(path, channel=channel, z_project=z_project)
    result.original_height, result.original_width = int(image.shape[0]), int(image.shape[1])
    image = storable(resize_longest(image, resolution))
    to_write = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image

    def writer(tmp: str) -> None:
        if not cv2.imwrite(tmp, to_write):
            raise OSError("could not encode the PNG")

    return image, writer, ".png"


def _image_params(path: str, params: AnnotatorParams, pixel_size_um: float | None) -> AnnotatorParams:
    """The annotator's parameters for one image: with a reference pixel size, its scale follows
    from the image's own pixel size, which must then be known."""
    if not params.reference_pixel_size_um:
        return params
    if pixel_size_um is None:
        raise InputError(
            path,
            "the file does not say its pixel size, which --reference-pixel-size needs: give --pixel-size",
        )
    return params.replace(scale=params.physical_scale(pixel_size_um))


def _coco_annotation(mask: np.ndarray) -> dict:
    """One myotube's COCO annotation, without the ids (given when the train/test files are written)."""
    return {
        "category_id": 1,
        "segmentation": mask_to_rle(mask),
        "bbox": bbox_of_mask(mask),
        "area": float(mask.sum()),
        "iscrowd": 0,
    }


def _init_worker() -> None:
    # One process per core: more threads per process would only compete.
    cv2.setNumThreads(1)


def _init_pool_worker() -> None:
    _init_worker()
    ignore_stop_signals()


def _process_and_seal(task: tuple) -> dict:
    """One image, then its manifest: the written image's checksum and the image's result."""
    work, output_dir, position, run, source = task
    result = _process_one(work)
    record = {
        "run": run,
        "position": position,
        "source": source,
        "name": work[1],
        "error": result.error,
        "result": asdict(result),
    }
    files = [os.path.join("images", result.file_name)] if result.error is None and result.file_name else []
    return write_manifest(output_dir, work[1], record, files)


# What a folder written by annotate_folder holds: --force replaces only such a folder.
OUTPUT_ENTRIES = frozenset({"images", "annotations", SUMMARY_JSON, STATE_FILE, MANIFEST_DIR})


def check_request(
    resolution: int, test_fraction: float, pixel_size: float | None, params: AnnotatorParams | None
) -> None:
    """Refuse settings that cannot work, before anything is read or written (one line each)."""
    if resolution < 16:
        raise InputError(None, f"--resolution must be at least 16 pixels, got {resolution}")
    if not 0.0 <= test_fraction < 1.0:
        raise InputError(None, f"--test_fraction must be in [0, 1), got {test_fraction}")
    for flag, value in (
        ("--pixel-size", pixel_size),
        ("--reference-pixel-size", params.reference_pixel_size_um if params else None),
    ):
        if value is not None and not value > 0:
            raise InputError(None, f"{flag} must be positive, got {value}")
    if params is not None and params.scale is not None and params.reference_pixel_size_um:
        raise InputError(None, "--scale and --reference-pixel-size both set the scale: give one")


def annotate_folder(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    resolution: int = 1500,
    test_fraction: float = 0.2,
    seed: int = 0,
    channel: int = -1,
    workers: int = 1,
    params: AnnotatorParams | None = None,
    progress: bool = True,
    force: bool = False,
    z_project: bool = False,
    pixel_size: float | None = None,
    resume: bool = False,
    shard: str | None = None,
    stop: StopRequests | None = None,
) -> AnnotationSummary:
    """Annotate every image in ``input_dir``; write images, train/test COCO JSON and a summary.

    ``test_fraction`` of the successfully annotated images (at least one when there are two or
    more and the fraction is positive), picked by a ``seed``-ed shuffle of the whole batch's
    annotated images in input order, form the test split. An earlier run's output is refused
    unless ``force`` (it is then removed first) or ``resume`` (the interrupted run is continued:
    images whose manifests show them complete are kept, see utils/resumable.py). ``shard`` ("K/N")
    annotates every N-th input from the K-th and writes no COCO files: :func:`merge_annotations`
    writes them over every shard, so that the split is decided over the whole batch as in one run.
    After a ``stop`` request (SIGTERM, SIGINT) the images in hand are finished and
    ``summary.stopped`` is the signal. Returns the summary; ``summary.failed`` lists the files
    that could not be processed.

    ``pixel_size`` (microns per input pixel) overrides the files' metadata. The image entries then
    carry ``pixel_size_um`` of the written images, and with ``params.reference_pixel_size_um`` each
    image's annotator scale follows from it.
    """
    input_dir, output_dir = os.fspath(input_dir), os.fspath(output_dir)
    check_request(resolution, test_fraction, pixel_size, params)
    params = params or AnnotatorParams()
    share = Shard.parse(shard)
    paths = list_inputs(input_dir)
    if os.path.realpath(os.path.join(output_dir, "images")) == os.path.realpath(input_dir):
        raise InputError(output_dir, "output images/ folder is the input folder; choose another --output_dir")
    settings = _settings(resolution, test_fraction, seed, channel, z_project, pixel_size, params)
    state = make_state("annotate", settings, {}, [os.path.abspath(p) for p in paths], share)
    # What _process_one takes after an image's path, name and folder.
    options = (int(resolution), int(channel), z_project, params, pixel_size)
    start = time.perf_counter()
    with _open_output(output_dir, state, resume=resume, force=force) as opened:
        opened.remove_earlier()
        write_state(output_dir, state)
        sealed, images = _annotate_shard(opened, state, share, paths, options, workers, progress, stop)
        stopped_by = stop.received if stop is not None else None
        # The train/test split is decided over the whole batch: not for a shard or a stopped run.
        write = share.whole and stopped_by is None
        summary = _finish(output_dir, input_dir, sealed, settings, images, start, write=write)
    summary.stopped, summary.shard = stopped_by, str(share)
    return summary


def _settings(
    resolution: int,
    test_fraction: float,
    seed: int,
    channel: int,
    z_project: bool,
    pixel_size: float | None,
    params: AnnotatorParams,
) -> dict:
    """The settings batch.json records: every value that decides the outputs (--resume refuses
    others)."""
    return {
        "resolution": int(resolution),
        "test_fraction": float(test_fraction),
        "seed": int(seed),
        "channel": int(channel),
        "z_project": bool(z_project),
        "pixel_size": pixel_size,
        **flatten(asdict(params), "params."),
    }


def _open_output(output_dir: str, state: dict | None, resume: bool, force: bool) -> OpenedOutput:
    """``output_dir`` locked for writing; only an earlier annotator output there is replaced or
    continued (utils/resumable.py's open_output)."""
    return open_output(
        output_dir,
        state,
        resume=resume,
        force=force,
        ours=OUTPUT_ENTRIES.__contains__,
        what="annotator output",
    )


def _image_names(state: Mapping) -> list[str]:
    """Each input's written image name: a TIFF of every channel with a channel, else a PNG."""
    return output_names(state["inputs"], ".tif" if state["settings"]["channel"] >= 0 else ".png")


def _annotate_shard(
    opened: OpenedOutput,
    state: dict,
    share: Shard,
    paths: list[str],
    options: tuple,
    workers: int,
    progress: bool,
    stop: StopRequests | None,
) -> tuple[dict[int, dict], int]:
    """Annotate the images of ``share`` that the opened output folder does not hold complete
    (when resumed, those an earlier run sealed are kept). Returns the manifest of every sealed image
    by position, and how many images the shard has."""
    output_dir, sources, names = opened.folder, state["inputs"], _image_names(state)
    run, positions = run_id(state), share.positions(len(paths))
    sealed = _sealed_earlier(output_dir, positions, names, sources, run) if opened.resumed else {}
    image_dir = os.path.join(output_dir, "images")
    tasks = [
        ((paths[p], names[p], image_dir, *options), output_dir, p, run, sources[p])
        for p in positions
        if p not in sealed
    ]
    for manifest in _run(tasks, workers, progress, stop, len(sealed), len(positions)):
        sealed[manifest["position"]] = manifest
    return sealed, len(positions)


def _sealed_earlier(
    output_dir: str, positions: range, names: list[str], sources: list[str], run: str
) -> dict[int, dict]:
    """The images of ``positions`` that the interrupted run completed in ``output_dir``, logged."""
    sealed = sealed_positions(output_dir, positions, names, sources, run)
    logger.info(
        "--resume: %d of %d images are complete in %s; %d to do",
        len(sealed),
        len(positions),
        output_dir,
        len(positions) - len(sealed),
    )
    return sealed


def merge_annotations(
    shard_dirs: list[str], output_dir: str | os.PathLike, force: bool = False
) -> AnnotationSummary:
    """The shard folders of one batch (``annotate_folder(..., shard="K/N")``) into ``output_dir``:
    images and manifests linked there, then the train/test split decided by the seed over the whole
    sorted input list, as one run decides it. Refuses overlapping, missing or incomplete shards."""
    output_dir = os.fspath(output_dir)
    start = time.perf_counter()
    checked = check_shards([os.fspath(d) for d in shard_dirs], output_dir, _image_names)
    with _open_output(output_dir, None, resume=False, force=force) as opened:
        opened.remove_earlier()
        link_shards(checked, output_dir)
        input_dir = os.path.dirname(checked.state["inputs"][0])
        return _finish(
            output_dir,
            input_dir,
            checked.manifests,
            checked.state["settings"],
            len(checked.state["inputs"]),
            start,
        )


def _finish(
    output_dir: str,
    input_dir: str,
    sealed: dict[int, dict],
    settings: dict,
    images: int,
    started: float,
    write: bool = True,
) -> AnnotationSummary:
    """The summary of the images in ``sealed`` (position → manifest) and, when ``write``, the COCO
    train/test files and annotation_summary.json built from those manifests in input order."""
    results = [ImageResult(**sealed[p]["result"]) for p in sorted(sealed)]
    summary = _summary(output_dir, input_dir, results, images, started)
    if not write:
        return summary
    done = [r for r in results if r.error is None]
    splits = _split(done, settings["test_fraction"], settings["seed"])
    for split, items in splits.items():
        if items:
            summary.files[split] = _write_coco(
                output_dir, TRAIN_JSON if split == "train" else TEST_JSON, items
            )
    summary.train_images, summary.test_images = len(splits["train"]), len(splits["test"])
    summary.files["summary"] = os.path.join(output_dir, SUMMARY_JSON)
    _write_summary(output_dir, summary, settings, results)
    return summary


def _summary(
    output_dir: str, input_dir: str, results: list[ImageResult], images: int, started: float
) -> AnnotationSummary:
    """The counts of ``results`` (of ``images`` in all): annotated, failed, instances, empty images."""
    summary = AnnotationSummary(input_dir=input_dir, output_dir=output_dir, images=images)
    summary.seconds = time.perf_counter() - started
    done = [r for r in results if r.error is None]
    summary.failed = [r.error or r.source for r in results if r.error is not None]
    summary.annotated = len(done)
    summary.instances = sum(len(r.annotations) for r in done)
    summary.instances_per_image = {r.file_name: len(r.annotations) for r in done if r.file_name}
    summary.empty_images = [r.file_name for r in done if r.file_name and not r.annotations]
    return summary


def _split(done: list[ImageResult], test_fraction: float, seed: int) -> dict[str, list[ImageResult]]:
    """The annotated images in train and test: ``test_fraction`` of them (at least one, and not
    all, when there are two or more and the fraction is positive), picked by a ``seed``-ed shuffle."""
    order = np.random.default_rng(seed).permutation(len(done))
    n_test = int(round(len(done) * test_fraction))
    if test_fraction > 0 and len(done) >= 2:
        n_test = min(max(n_test, 1), len(done) - 1)
    test_idx = set(order[:n_test].tolist())
    return {
        "train": [r for i, r in enumerate(done) if i not in test_idx],
        "test": [r for i, r in enumerate(done) if i in test_idx],
    }


def _write_coco(output_dir: str, file_name: str, items: list[ImageResult]) -> str:
    """OUT/annotations/``file_name``: the COCO file of one split, ids counted from 1; returns its path."""
    path = os.path.join(output_dir, "annotations", file_name)
    images, anns = [], []
    for image_id, r in enumerate(items, start=1):
        images.append(r.coco_image(image_id))
        for a in r.annotations:
            anns.append({"id": len(anns) + 1, "image_id": image_id, **a})
    write_coco_json(path, images, anns)
    return path


def _write_summary(
    output_dir: str, summary: AnnotationSummary, settings: dict, results: list[ImageResult]
) -> None:
    """OUT/annotation_summary.json: the summary, the settings and each image's time and scale."""
    record = asdict(summary)
    record["resolution"] = settings["resolution"]
    record["seconds_per_image"] = {r.file_name or r.source: round(r.seconds, 3) for r in results}
    # The annotator's lengths in pixels of each written image: reference lengths times this.
    record["scale_per_image"] = {r.file_name: round(r.scale, 4) for r in results if r.error is None}
    record["params"] = {k.removeprefix("params."): v for k, v in settings.items() if k.startswith("params.")}
    atomic_write_json(os.path.join(output_dir, SUMMARY_JSON), record, indent=2)


def _run(
    tasks: list,
    workers: int,
    progress: bool,
    stop: StopRequests | None = None,
    done: int = 0,
    total: int | None = None,
) -> Iterator[dict]:
    """The manifest of each task's image as it is sealed. Once ``stop`` has a signal no image is
    started; those in the workers are finished (at most ``2 x workers``: tasks are handed out as
    workers free up, not all at once)."""
    from tqdm import tqdm

    bar = tqdm(
        total=total if total is not None else len(tasks),
        initial=done,
        desc="annotating",
        unit="img",
        file=sys.stderr,
        disable=not progress,
    )

    def stopping() -> bool:
        return stop is not None and stop.received is not None

    try:
        if workers <= 1 or len(tasks) == 1:
            _init_worker()
            for t in tasks:
                if stopping():
                    break
                yield _process_and_seal(t)
                bar.update()
        elif tasks:
            with ProcessPoolExecutor(
                max_workers=min(workers, len(tasks)),
                initializer=_init_pool_worker,
                mp_context=worker_context(),
            ) as pool:
                pending: deque = deque()
                for t in tasks:
                    if stopping():
                        break
                    pending.append(pool.submit(_process_and_seal, t))
                    while len(pending) >= 2 * workers:
                        yield pending.popleft().result()
                        bar.update()
                while pending:
                    future = pending.popleft()
                    if not (stopping() and future.cancel()):
                        yield future.result()
                        bar.update()
    finally:
        bar.close()
