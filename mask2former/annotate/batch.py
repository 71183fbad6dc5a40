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
from collections.abc import Iterator
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
        if channel >= 0:
            # Every channel is written (a TIFF), so INPUT.CHANNEL means the same in Stage 1, whose
            # images these are, as in Stage 2 and in predict.py, which read the microscope's files.
            stack = read_all_channels(path, z_project=z_project)
            select_channel(path, stack, channel)  # the one-line error of a missing channel
            result.original_height, result.original_width = int(stack.shape[0]), int(stack.shape[1])
            stack = storable(resize_longest(stack, resolution))
            image = stack[..., channel] if stack.ndim == 3 else stack
            planes = stack.transpose(2, 0, 1) if stack.ndim == 3 else stack[None]

            def writer(tmp: str) -> None:
                tifffile.imwrite(tmp, planes, photometric="minisblack", metadata={"axes": "CYX"})

            suffix = ".tif"
        else:
            image = read_image(path, channel=channel, z_project=z_project)
            result.original_height, result.original_width = int(image.shape[0]), int(image.shape[1])
            image = storable(resize_longest(image, resolution))
            to_write = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image

            def writer(tmp: str) -> None:
                if not cv2.imwrite(tmp, to_write):
                    raise OSError("could not encode the PNG")

            suffix = ".png"
        result.pixel_size_um = _written_pixel_size(
            path, pixel_size, result.original_height, result.original_width, image.shape
        )
        if params.reference_pixel_size_um:
            if result.pixel_size_um is None:
                raise InputError(
                    path,
                    "the file does not say its pixel size, which --reference-pixel-size needs: "
                    "give --pixel-size",
                )
            params = params.replace(scale=params.physical_scale(result.pixel_size_um))
        result.scale = params.pixel_scale(*image.shape[:2])
        masks = annotate_image(image, params)
        atomic_write_with(out_path, writer, suffix=suffix)
        result.file_name = name
        result.height, result.width = int(image.shape[0]), int(image.shape[1])
        result.annotations = [
            {
                "category_id": 1,
                "segmentation": mask_to_rle(m),
                "bbox": bbox_of_mask(m),
                "area": float(m.sum()),
                "iscrowd": 0,
            }
            for m in masks
        ]
    except MyotubeError as err:
        result.error = str(err)
    except (OSError, ValueError, cv2.error, MemoryError) as err:
        result.error = (
            f"{path}: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else 'failed'}"
        )
    result.seconds = time.perf_counter() - start
    return result


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
    sources = [os.path.abspath(p) for p in paths]
    settings = {
        "resolution": int(resolution),
        "test_fraction": float(test_fraction),
        "seed": int(seed),
        "channel": int(channel),
        "z_project": bool(z_project),
        "pixel_size": pixel_size,
        **flatten(asdict(params), "params."),
    }
    state = make_state("annotate", settings, {}, sources, share)
    start = time.perf_counter()
    with open_output(
        output_dir,
        state,
        resume=resume,
        force=force,
        ours=OUTPUT_ENTRIES.__contains__,
        what="annotator output",
    ) as opened:
        opened.remove_earlier()
        write_state(output_dir, state)
        names = output_names(paths, ".tif" if channel >= 0 else ".png")
        run, positions = run_id(state), share.positions(len(paths))
        sealed = sealed_positions(output_dir, positions, names, sources, run) if opened.resumed else {}
        if opened.resumed:
            logger.info(
                "--resume: %d of %d images are complete in %s; %d to do",
                len(sealed),
                len(positions),
                output_dir,
                len(positions) - len(sealed),
            )
        work = [
            (
                paths[p],
                names[p],
                os.path.join(output_dir, "images"),
                int(resolution),
                int(channel),
                z_project,
                params,
                pixel_size,
            )
            for p in positions
        ]
        tasks = [(w, output_dir, p, run, sources[p]) for w, p in zip(work, positions) if p not in sealed]
        for manifest in _run(tasks, workers, progress, stop, len(sealed), len(positions)):
            sealed[manifest["position"]] = manifest
        stopped_by = stop.received if stop is not None else None
        summary = _finish(
            output_dir,
            input_dir,
            sealed,
            settings,
            len(positions),
            start,
            write=share.whole and stopped_by is None,
        )
    summary.stopped, summary.shard = stopped_by, str(share)
    return summary


def merge_annotations(
    shard_dirs: list[str], output_dir: str | os.PathLike, force: bool = False
) -> AnnotationSummary:
    """The shard folders of one batch (``annotate_folder(..., shard="K/N")``) into ``output_dir``:
    images and manifests linked there, then the train/test split decided by the seed over the whole
    sorted input list, as one run decides it. Refuses overlapping, missing or incomplete shards."""
    output_dir = os.fspath(output_dir)
    start = time.perf_counter()

    def names_of(state: dict) -> list[str]:
        return output_names(state["inputs"], ".tif" if state["settings"]["channel"] >= 0 else ".png")

    checked = check_shards([os.fspath(d) for d in shard_dirs], output_dir, names_of)
    with open_output(
        output_dir, None, resume=False, force=force, ours=OUTPUT_ENTRIES.__contains__, what="annotator output"
    ) as opened:
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
    summary = AnnotationSummary(input_dir=input_dir, output_dir=output_dir, images=images)
    summary.seconds = time.perf_counter() - started
    done = [r for r in results if r.error is None]
    summary.failed = [r.error or r.source for r in results if r.error is not None]
    summary.annotated = len(done)
    summary.instances = sum(len(r.annotations) for r in done)
    summary.instances_per_image = {r.file_name: len(r.annotations) for r in done if r.file_name}
    summary.empty_images = [r.file_name for r in done if r.file_name and not r.annotations]
    if not write:
        return summary

    test_fraction = settings["test_fraction"]
    order = np.random.default_rng(settings["seed"]).permutation(len(done))
    n_test = int(round(len(done) * test_fraction))
    if test_fraction > 0 and len(done) >= 2:
        n_test = min(max(n_test, 1), len(done) - 1)
    test_idx = set(order[:n_test].tolist())
    splits = {
        "train": [r for i, r in enumerate(done) if i not in test_idx],
        "test": [r for i, r in enumerate(done) if i in test_idx],
    }
    for split, items in splits.items():
        if not items:
            continue
        name = os.path.join("annotations", TRAIN_JSON if split == "train" else TEST_JSON)
        images, anns = [], []
        for image_id, r in enumerate(items, start=1):
            entry = {
                "id": image_id,
                "file_name": r.file_name,
                "height": r.height,
                "width": r.width,
                "original_height": r.original_height,
                "original_width": r.original_width,
            }
            if r.pixel_size_um:
                entry["pixel_size_um"] = r.pixel_size_um
            images.append(entry)
            for a in r.annotations:
                anns.append({"id": len(anns) + 1, "image_id": image_id, **a})
        write_coco_json(os.path.join(output_dir, name), images, anns)
        summary.files[split] = os.path.join(output_dir, name)
    summary.train_images, summary.test_images = len(splits["train"]), len(splits["test"])
    summary.files["summary"] = os.path.join(output_dir, SUMMARY_JSON)
    record = asdict(summary)
    record["resolution"] = settings["resolution"]
    record["seconds_per_image"] = {r.file_name or r.source: round(r.seconds, 3) for r in results}
    # The annotator's lengths in pixels of each written image: reference lengths times this.
    record["scale_per_image"] = {r.file_name: round(r.scale, 4) for r in done}
    record["params"] = {k.removeprefix("params."): v for k, v in settings.items() if k.startswith("params.")}
    atomic_write_json(os.path.join(output_dir, SUMMARY_JSON), record, indent=2)
    return summary


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
