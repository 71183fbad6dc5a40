"""Classical-CV myotube annotator: labels Stage 1 training data without manual work.

``annotate_image(image, params) -> (N, H, W) bool`` for one image; ``annotate_folder`` for a
folder of raw microscopy files (see utils/batch_myotube_processing.py and docs/annotator.md).
"""

from .batch import annotate_folder
from .foreground import foreground_mask, normalize_intensity
from .instances import annotate_image, annotate_instances, split_instances
from .params import AnnotatorParams

__all__ = [
    "AnnotatorParams",
    "annotate_folder",
    "annotate_image",
    "annotate_instances",
    "foreground_mask",
    "normalize_intensity",
    "split_instances",
]
