"""A batch: every input image through the per-image pipeline, the failures reported, the run's files.

:func:`run_prediction` is what ``predict.py`` runs; it takes any ``predict_fn(image) -> Instances``
(the trained model, the classical annotator :class:`.annotator.AnnotatorPredictor`, or a stand-in
in tests) and writes every image's files (see :mod:`.image_pipeline`) and, over all images,
``summary.csv`` (one row per image, failures included with their error) and
``predictions_coco.json``. One failing image is reported on one line and the rest go on: a batch
of hundreds must not stop for one broken file.

The model stays in this process; with ``options.workers`` the batch overlaps the three parts of an
image (reading the next one in a thread, predicting this one, measuring and exporting the previous
ones in worker processes), so the model does not wait for the disk or the measurements. After each
image's files its manifest seals them, and the run's files are rebuilt from the manifests, which is
what lets a run be resumed, sharded and merged (see batch_state.py).
"""

from __future__ import annotations

import logging
import os
import sys
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

from ..errors import MyotubeError, one_line
from ..utils.processes import worker_context
from ..utils.resumable import ignore_stop_signals
from .batch_state import Sealer, plan_batch
from .image_pipeline import StageTimer, predict_and_export_file, predict_at_model_scale, read_input_image
from .inputs import collect_inputs
from .options import PredictOptions
from .tiling import PredictFn

logger = logging.getLogger(__name__)

# One image of the batch: (position in the whole batch's input list, path, output name).
Job = tuple[int, str, str]


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
        _run_in_turn(jobs, predict_fn, options, output_dir, record, batch.sealer, stopping)
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


def _outcome(call: Callable, *args):
    """``call(*args)``, or the exception it raised: the image's failure, to be recorded. An
    interrupt or running out of memory stops the batch instead."""
    try:
        return call(*args)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as err:
        return err


def _run_in_turn(
    jobs: list[Job],
    predict_fn: PredictFn,
    options: PredictOptions,
    output_dir: str,
    record: Callable,
    sealer: Sealer,
    stopping: Callable[[], bool],
) -> None:
    """Every image in this process, one after the other: read, predict, measure, export, seal.
    Once ``stopping()`` no image is started."""
    for position, path, name in jobs:
        if stopping():
            break
        outcome = _outcome(
            _predict_export_and_seal, position, path, name, predict_fn, options, output_dir, sealer
        )
        record(position, path, name, outcome)


def _predict_export_and_seal(
    position: int,
    path: str,
    name: str,
    predict_fn: PredictFn,
    options: PredictOptions,
    output_dir: str,
    sealer: Sealer,
) -> dict:
    result = predict_and_export_file(path, predict_fn, options, output_dir, name, position + 1)
    return sealer.seal(position, result)


def _run_overlapped(
    jobs: list[Job],
    predict_fn: PredictFn,
    options: PredictOptions,
    record: Callable,
    sealer: Sealer,
    stopping: Callable[[], bool],
) -> None:
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
            outcome = _outcome(pending.result) if isinstance(pending, Future) else pending
            record(position, path, name, outcome)

    try:
        read_ahead = reader.submit(_read_ahead, jobs[0][1], options) if jobs else None
        for k, (position, path, name) in enumerate(jobs):
            if stopping():
                break
            image_read = read_ahead
            read_ahead = reader.submit(_read_ahead, jobs[k + 1][1], options) if k + 1 < len(jobs) else None
            pending = _outcome(
                _predict_and_submit, image_read, position, path, name, predict_fn, options, pool, sealer
            )
            waiting.append((position, path, name, pending))
            flush(2 * options.workers)
        flush(0)
    finally:
        reader.shutdown(wait=True, cancel_futures=True)
        pool.shutdown(wait=True, cancel_futures=True)


def _read_ahead(path: str, options: PredictOptions):
    """On the reader thread, while the model predicts the image before: the image, its metadata,
    and a timer that holds the reading's seconds."""
    timer = StageTimer()
    image, meta = read_input_image(path, options, timer)
    return image, meta, timer


def _predict_and_submit(
    image_read: Future,
    position: int,
    path: str,
    name: str,
    predict_fn: PredictFn,
    options: PredictOptions,
    pool: ProcessPoolExecutor,
    sealer: Sealer,
) -> Future:
    """The model's part, in this process, for an image :func:`_read_ahead` has read; its measuring,
    files and seal go to a worker (``sealer.export``)."""
    image, meta, timer = image_read.result()
    predicted = predict_at_model_scale(path, name, image, meta, predict_fn, options, timer)
    return pool.submit(sealer.export, predicted, position)
