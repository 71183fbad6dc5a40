"""Instance outlines from the field's own foreground, at the image's full resolution.

The model predicts each mask on a grid four model pixels wide and upsamples it, so its outlines
are smooth curves that run a few pixels inside or outside a tube's edge, and a mask that bridges
the dark gap between two tubes keeps that bridge. The classical annotator's threshold
(:func:`mask2former.annotate.foreground.thresholded`) follows the edge at every pixel, but cannot
tell touching tubes apart. Snapping keeps the model's instances and takes the threshold's outline:

- an instance keeps its pixels that lie in the foreground;
- a foreground pixel that no instance covers goes to the nearest instance, when that instance is
  within ``reach`` pixels.

A pixel that several instances cover stays in all of them, so crossing tubes keep their crossing.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..structures import CroppedInstances, CroppedMask, label_image


def snap_to_foreground(instances: CroppedInstances, foreground: np.ndarray, reach: float) -> CroppedInstances:
    """``instances`` with the outlines of ``foreground`` (a boolean image of their size); an
    instance with no foreground pixel left is dropped."""
    if not len(instances):
        return instances
    labels = label_image(instances, np.int32)
    covered = labels > 0
    # Each uncovered pixel learns its nearest covered pixel (a Voronoi label of its own), whose
    # instance becomes its owner.
    distance, nearest = cv2.distanceTransformWithLabels(
        (~covered).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    owner_of_label = np.zeros(int(nearest.max()) + 1, np.int32)
    owner_of_label[nearest[covered]] = labels[covered]
    owner = owner_of_label[nearest]
    owner[~foreground | covered | (distance > reach)] = 0

    grow = math.ceil(reach)
    items = []
    for k, m in enumerate(instances):
        y0, x0 = max(0, m.y0 - grow), max(0, m.x0 - grow)
        y1, x1 = min(instances.height, m.y1 + grow), min(instances.width, m.x1 + grow)
        window = (y0, x0, y1, x1)
        mask = (m.crop_to(window) & foreground[y0:y1, x0:x1]) | (owner[y0:y1, x0:x1] == k + 1)
        snapped = CroppedMask.from_mask(mask, m.score, y0, x0)
        if snapped is not None:
            items.append(snapped)
    return instances.with_items(items)
