"""Measurement tables: one row per myotube and one summary row per image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..structures import CroppedInstances
from .morphology import analyze_shape, measure_myotube, unit_suffix
from .nuclei import NucleiAssignment, assign_nuclei


@dataclass
class ImageMeasurements:
    rows: list[dict]  # one per myotube, ``id`` = position + 1
    summary: dict  # one per image
    nuclei: NucleiAssignment | None = None


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
        assignment = assign_nuclei(nuclei_labels, instances, min_inside, central_ratio, shapes=shapes, fusion_min_nuclei=fusion_min_nuclei)
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
    return ImageMeasurements(rows, summary, assignment)


def _mean(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else 0.0
