"""Every CSV export has its header row, also with no rows: the columns are named beside each
writer, not read off a first row, so an image without myotubes or nuclei still gives a table with
its header."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from mask2former.inference.batch_state import (
    SUMMARY_LEADING_COLUMNS,
    SUMMARY_TRAILING_COLUMNS,
    write_summary_csv,
)
from mask2former.inference.export import write_csv
from mask2former.inference.options import PredictOptions
from mask2former.inference.run import run_prediction
from mask2former.measure.nuclei import assign_nuclei, nucleus_columns, nucleus_rows
from mask2former.measure.table import measure_instances, myotube_columns
from mask2former.structures import CroppedInstances, Instances

SIZE = (80, 120)


def header(path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return next(csv.reader(f))


def data_rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def one_tube() -> CroppedInstances:
    mask = np.zeros(SIZE, bool)
    mask[30:42, 10:110] = True
    return CroppedInstances.from_masks(mask[None], [0.9])


def nuclei_labels(count: int) -> np.ndarray:
    """``count`` small square nuclei on the tube of :func:`one_tube`."""
    labels = np.zeros(SIZE, np.int32)
    for k in range(count):
        labels[33:39, 20 + 20 * k : 26 + 20 * k] = k + 1
    return labels


@pytest.mark.parametrize("pixel_size", [None, 0.5])
@pytest.mark.parametrize("with_nuclei", [False, True])
def test_measurements_without_myotubes_have_the_header_of_one_myotube(tmp_path, pixel_size, with_nuclei):
    labels = nuclei_labels(2) if with_nuclei else None
    one = measure_instances(one_tube(), pixel_size, labels)
    none = measure_instances(CroppedInstances(*SIZE, []), pixel_size, labels)
    assert len(one.rows) == 1 and none.rows == []
    # The named columns are exactly the keys the measurements produce, in table order.
    assert list(one.rows[0]) == one.columns == none.columns == myotube_columns(pixel_size, nuclei=with_nuclei)
    write_csv(tmp_path / "one.csv", one.rows, one.columns)
    write_csv(tmp_path / "none.csv", none.rows, none.columns)
    assert header(tmp_path / "none.csv") == header(tmp_path / "one.csv") == one.columns
    assert data_rows(tmp_path / "none.csv") == []


@pytest.mark.parametrize("pixel_size", [None, 0.5])
def test_nuclei_table_without_nuclei_has_the_header_of_one_nucleus(tmp_path, pixel_size):
    one = nucleus_rows(assign_nuclei(nuclei_labels(1), one_tube()), pixel_size)
    none = nucleus_rows(assign_nuclei(nuclei_labels(0), one_tube()), pixel_size)
    assert len(one) == 1 and none == []
    assert list(one[0]) == nucleus_columns(pixel_size)
    write_csv(tmp_path / "one.csv", one, nucleus_columns(pixel_size))
    write_csv(tmp_path / "none.csv", none, nucleus_columns(pixel_size))
    assert header(tmp_path / "none.csv") == header(tmp_path / "one.csv") == nucleus_columns(pixel_size)
    assert data_rows(tmp_path / "none.csv") == []


def test_summary_has_its_header_with_no_image_and_when_every_image_failed(tmp_path):
    expected = [*SUMMARY_LEADING_COLUMNS, *SUMMARY_TRAILING_COLUMNS]
    write_summary_csv(tmp_path / "none.csv", [])
    write_summary_csv(
        tmp_path / "failed.csv", [{"image": "a.tif", "name": "a", "error": "a.tif: cannot read"}]
    )
    assert header(tmp_path / "none.csv") == header(tmp_path / "failed.csv") == expected
    assert data_rows(tmp_path / "none.csv") == []
    assert data_rows(tmp_path / "failed.csv")[0]["error"] == "a.tif: cannot read"


class NothingPredictor:
    """Stand-in model that finds no myotube."""

    def __call__(self, tile):
        return Instances.empty(*tile.shape[:2])


def test_a_run_that_finds_nothing_writes_every_table_with_its_header(tmp_path):
    inputs, masks = tmp_path / "in", tmp_path / "nuclei"
    inputs.mkdir()
    masks.mkdir()
    cv2.imwrite(str(inputs / "f.png"), np.random.default_rng(0).integers(0, 40, SIZE, dtype=np.uint8))
    cv2.imwrite(str(masks / "f.png"), np.zeros(SIZE, np.uint8))  # no nucleus either
    options = PredictOptions(tile_size=128, nuclei_masks_dir=str(masks), progress=False)
    report = run_prediction(str(inputs / "f.png"), NothingPredictor(), str(tmp_path / "out"), options)
    assert report.ok, report.failures
    out = tmp_path / "out"
    assert header(out / "f_measurements.csv") == myotube_columns(None, nuclei=True)
    assert data_rows(out / "f_measurements.csv") == []
    assert header(out / "f_nuclei.csv") == nucleus_columns(None)
    assert data_rows(out / "f_nuclei.csv") == []
    summary = header(out / "summary.csv")
    assert summary[: len(SUMMARY_LEADING_COLUMNS)] == list(SUMMARY_LEADING_COLUMNS)
    assert summary[-len(SUMMARY_TRAILING_COLUMNS) :] == list(SUMMARY_TRAILING_COLUMNS)
    [row] = data_rows(out / "summary.csv")
    assert (row["myotubes"], row["nuclei"], row["error"]) == ("0", "0", "")
