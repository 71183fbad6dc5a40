"""Measurement tables: one row per myotube and one summary row per image."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..structures import CroppedInstances
from .morphology import analyze_shape, measure_myotube, unit_suffix
from .nuclei import NucleiAssignment, assign_nuclei

# Columns of the per-myotube table (NAME_measurements.csv), in order; "{u}" is the length unit, "um"
# with a pixel size, else "px". Named here rather than taken from the first row, so that an image
# without myotubes still gets a table with its header (a script reading many tables needs no special
# case for an empty one).
MYOTUBE_COLUMNS = (
    "id",
    "score",
    "area_{u}2",
    "length_{u}",
    "total_length_{u}",
    "width_mean_{u}",
    "width_median_{u}",
    "elongation",
    "orientation_deg",
    "branch_points",
    "centroid_x",
    "centroid_y",
    "bbox_x0",
    "bbox_y0",
    "bbox_x1",
    "bbox_y1",
)
# Appended when the image has nuclei labels.
MYOTUBE_NUCLEI_COLUMNS = ("nuclei", "nuclei_central", "nuclei_peripheral")


def myotube_columns(pixel_size: float | None = None, nuclei: bool = False) -> list[str]:
    """The per-myotube table's columns for this unit, with the nuclei counts when ``nuclei``."""
    u = unit_suffix(pixel_size)
    return [c.format(u=u) for c in (*MYOTUBE_COLUMNS, *(MYOTUBE_NUCLEI_COLUMNS if nuclei else ()))]


@dataclass
class ImageMeasurements:
    rows: list[dict]  # one per myotube, ``id`` = position + 1
    summary: dict  # one per image
    nuclei: NucleiAssignment | None = None
    # The keys of every row, in table order (see myotube_columns): known with no row at all.
    columns: list[str] = field(default_factory=myotube_columns)


def measure_instances(
    instances: CroppedInstances,
    pixel_size: float | None = None,
    nuclei_labels: np.ndarray | None = None,
    min_inside: float = 0.5,
    central_ratio: float = 0.5,
    fusion_min_nuclei: int = 2,
) -> ImageMeasurements:
    """Measure every myotube (see :mod:`.morphology`) and, with nuclei labels, count nuclei
    per myotube and the image's fusion index (see :mod:`.nuclei`).

    Summary: ``myotubes``, ``coverage`` (fraction of the image inside any myotube), mean length
    and mean width over myotubes, and with nuclei ``nuclei``, ``nuclei_in_myotubes``,
    ``nuclei_in_fused`` (in myotubes with at least ``fusion_min_nuclei`` nuclei), ``fusion_index``.
    """
    shapes = [analyze_shape(m.mask) for m in instances]
    rows = []
    for k, (m, shape) in enumerate(zip(instances, shapes)):
        row = {"id": k + 1}
        row.update(measure_myotube(m.mask, m.y0, m.x0, m.score, pixel_size, shape=shape))
        rows.append(row)

    u = unit_suffix(pixel_size)
    covered = np.zeros(instances.image_size, bool)
    for m in instances:
        covered[m.y0 : m.y1, m.x0 : m.x1] |= m.mask
    summary: dict = {
        "myotubes": len(instances),
        "coverage": float(covered.mean()) if covered.size else 0.0,
        f"mean_length_{u}": _mean(r[f"length_{u}"] for r in rows),
        f"mean_width_{u}": _mean(r[f"width_mean_{u}"] for r in rows),
        f"total_length_{u}": float(sum(r[f"total_length_{u}"] for r in rows)),
    }

    assignment = None
    if nuclei_labels is not None:
        assignment = assign_nuclei(
            nuclei_labels,
            instances,
            min_inside,
            central_ratio,
            shapes=shapes,
            fusion_min_nuclei=fusion_min_nuclei,
        )
        for k, row in enumerate(rows):
            row["nuclei"] = int(assignment.per_myotube[k])
            row["nuclei_central"] = int(assignment.central_per_myotube[k])
            row["nuclei_peripheral"] = int(assignment.peripheral_per_myotube[k])
        summary.update(
            {
                "nuclei": assignment.n_nuclei,
                "nuclei_in_myotubes": assignment.nuclei_in_myotubes,
                "nuclei_in_fused": assignment.nuclei_in_fused,
                "fusion_index": assignment.fusion_index,
                "mean_nuclei_per_myotube": _mean(assignment.per_myotube),
            }
        )
    return ImageMeasurements(
        rows, summary, assignment, myotube_columns(pixel_size, nuclei=assignment is not None)
    )


def _mean(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else 0.0
