"""predict.py over thousands of fields: which images a run does, the seal on each image, and the
run's files rebuilt from the seals (resume, shards and their merge; the shared rules are in
utils/resumable.py).

image_pipeline.py writes an image's files, then :class:`Sealer` writes ``manifests/NAME.json`` with
their checksums, the image's row of summary.csv and its entry of predictions_coco.json. Both run files
are always rebuilt from the manifests, in input order, with image ids from the position in the
whole batch's input list, and the annotations read back from each ``NAME_coco.json``: a run
continued with --resume, or shards merged, give the files one uninterrupted run gives. summary.csv's
columns are named here (:func:`summary_columns`), as only this module writes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..utils.fileio import atomic_write_with
from ..utils.resumable import (
    Shard,
    file_sha256,
    flatten,
    run_id,
    sealed_positions,
    write_manifest,
    write_state,
)
from .export import coco_image_entry, write_coco_stream, write_csv
from .image_pipeline import ImageResult, Predicted, measure_and_export
from .inputs import SETTINGS_FILES, output_names
from .options import PredictOptions

logger = logging.getLogger(__name__)

# summary.csv is rewritten at most this often while a run goes (and always at its end).
SUMMARY_EVERY_S = 10.0
# Config keys that do not decide what a run writes: the weights are compared by content, and a
# run stopped on one device may go on on another.
NOT_SETTINGS = ("MODEL.WEIGHTS", "MODEL.DEVICE")
# summary.csv: the columns every image's row starts with and the two it ends with, named here so
# that the header has them with no row yet and when every image failed. Each image's own columns
# (scene, its measurement summary in its unit, nuclei) come between, in first-seen order.
SUMMARY_LEADING_COLUMNS = ("image", "name", "height", "width", "pixel_size_um", "pixel_size_source", "scale")
SUMMARY_TRAILING_COLUMNS = ("seconds", "error")


def prediction_settings(cfg: Mapping | None, options: PredictOptions) -> dict:
    """Every value that decides a run's outputs besides the weights: the config (a model's run)
    and the options."""
    settings = {k: v for k, v in flatten(cfg).items() if k not in NOT_SETTINGS} if cfg is not None else {}
    opts = dataclasses.asdict(options)
    for key in ("workers", "progress"):
        opts.pop(key)
    for key in ("nuclei_masks_dir", "nuclei_images_dir"):
        if opts[key]:
            opts[key] = os.path.abspath(opts[key])
    settings.update(flatten(opts, "predict."))
    return settings


def weights_identity(weights: str) -> dict:
    """``{"weights": {"name", "sha256"}}``: a file by its SHA-256, an HF folder by its files'; a
    hub id by its name. Random weights are drawn anew by every run, so no two runs share them."""
    if not weights:
        return {
            "weights": {
                "name": "random weights (drawn anew by every run)",
                "sha256": None,
                "draw": uuid.uuid4().hex,
            }
        }
    from ..modeling.weights import resolve_weights

    path = resolve_weights(weights)
    if os.path.isfile(path):
        return {"weights": {"name": weights, "sha256": file_sha256(path)}}
    if os.path.isdir(path):
        digest = hashlib.sha256()
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                digest.update(f"{os.path.relpath(full, path)}\0{file_sha256(full)}\n".encode())
        return {"weights": {"name": weights, "sha256": digest.hexdigest()}}
    return {"weights": {"name": weights, "sha256": None}}


@dataclass(frozen=True)
class Sealer:
    """Writes each image's manifest, after all its files (small and picklable: it travels to the
    measuring workers, which seal the images they export)."""

    output_dir: str
    run: str

    def seal(self, position: int, result: ImageResult) -> dict:
        entry = coco_image_entry(os.path.basename(result.path), result.instances)
        entry.pop("id")  # the position decides it when the run's files are written
        record = {
            "run": self.run,
            "position": position,
            "source": os.path.abspath(result.path),
            "name": result.name,
            "error": None,
            "summary": result.summary,
            "image": entry,
        }
        return write_manifest(self.output_dir, result.name, record, result.files)

    def seal_failure(self, position: int, path: str, name: str, message: str) -> dict:
        """A failed image is recorded too: its summary.csv row carries the error, a merge takes it as
        the image's result, and --resume tries it again."""
        row = {"image": os.path.basename(path), "name": name, "error": message}
        record = {
            "run": self.run,
            "position": position,
            "source": os.path.abspath(path),
            "name": name,
            "error": message,
            "summary": row,
            "image": None,
        }
        return write_manifest(self.output_dir, name, record)

    def export(self, predicted: Predicted, position: int) -> dict:
        """A measuring worker's part: measurements, every file of the image, then its manifest."""
        return self.seal(position, measure_and_export(predicted, self.output_dir, position + 1))


@dataclass
class PredictBatch:
    """The images one run does and the manifests it has: see :func:`plan_batch`."""

    output_dir: str
    paths: list[str]  # the whole batch, in order: an image's id is its position + 1
    names: list[str]
    shard: Shard
    sealer: Sealer
    sealed: dict[int, dict] = field(default_factory=dict)  # position → manifest, done (or failed in this run)
    todo: list[int] = field(default_factory=list)
    summary_written: float = field(default_factory=time.monotonic, init=False, repr=False)

    @property
    def positions(self) -> range:
        return self.shard.positions(len(self.paths))

    def add(self, position: int, manifest: dict) -> None:
        self.sealed[position] = manifest
        # An interrupted batch still leaves a current summary; rewriting it after every image would
        # cost time growing with the square of the batch.
        if time.monotonic() - self.summary_written > SUMMARY_EVERY_S:
            self.write_summary()

    def done_rows(self) -> list[dict]:
        return [self.sealed[p]["summary"] for p in sorted(self.sealed) if self.sealed[p]["error"] is None]

    def write_summary(self) -> None:
        write_summary_csv(
            os.path.join(self.output_dir, "summary.csv"),
            [self.sealed[p]["summary"] for p in sorted(self.sealed)],
        )
        self.summary_written = time.monotonic()

    def write_run_files(self) -> None:
        write_run_files(self.output_dir, self.sealed)
        self.summary_written = time.monotonic()


def plan_batch(
    paths: Sequence[str], output_dir: str, state: Mapping | None = None, resumed: Mapping | None = None
) -> PredictBatch:
    """The images of ``paths`` this run does. With ``state`` (batch.json of this run, written here):
    its shard's share, less, when ``resumed``, the images whose manifests show them complete (same
    run, every file's checksum matching); without it every image, from the beginning."""
    paths = [os.path.abspath(p) for p in paths]
    shard = Shard.parse(state["shard"]) if state else Shard()
    run = run_id(state) if state else "unrecorded"
    batch = PredictBatch(output_dir, paths, output_names(paths), shard, Sealer(output_dir, run))
    if resumed is not None:
        batch.sealed = sealed_positions(output_dir, batch.positions, batch.names, paths, run)
        logger.info(
            "--resume: %d of %d images are complete in %s (their files match their manifests); %d to do",
            len(batch.sealed),
            len(batch.positions),
            output_dir,
            len(batch.positions) - len(batch.sealed),
        )
    batch.todo = [p for p in batch.positions if p not in batch.sealed]
    if state is not None:
        os.makedirs(output_dir, exist_ok=True)
        write_state(output_dir, state)
    return batch


def write_run_files(output_dir: str, sealed: Mapping[int, dict]) -> None:
    """summary.csv and predictions_coco.json from the manifests: rows and images in input order,
    image id = position + 1, annotation ids counted over the file."""
    order = sorted(sealed)
    write_summary_csv(os.path.join(output_dir, "summary.csv"), [sealed[p]["summary"] for p in order])
    done = [p for p in order if sealed[p]["error"] is None]

    def annotations():
        k = 0
        for p in done:
            with open(os.path.join(output_dir, sealed[p]["name"] + "_coco.json"), encoding="utf-8") as f:
                for ann in json.load(f)["annotations"]:
                    k += 1
                    ann["image_id"], ann["id"] = p + 1, k
                    yield ann

    write_coco_stream(
        os.path.join(output_dir, "predictions_coco.json"),
        ({"id": p + 1, **sealed[p]["image"]} for p in done),
        annotations(),
    )


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


def copy_config(shard_folder: str, output_dir: str) -> None:
    """The shards' settings file (config.yaml, or annotator.yaml; they share every setting) beside
    the merged files."""
    for name in SETTINGS_FILES:
        source = os.path.join(shard_folder, name)
        if os.path.isfile(source):
            atomic_write_with(
                os.path.join(output_dir, name), lambda tmp, source=source: shutil.copyfile(source, tmp)
            )
