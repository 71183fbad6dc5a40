"""The classical annotator as a predictor: ``predict.py --method annotator``.

:class:`AnnotatorPredictor` is called like :class:`.predictor.MyotubePredictor`, ``predictor(image)
-> Instances``, so the annotator's myotubes go through the same per-image pipeline as a model's:
the same measurements, exports, run files, --resume, --shard and --merge. What differs is said
by the options of :func:`annotator_options`: each image is annotated whole at its own pixels (no
tiling, no resizing to a model's scale; the annotator's lengths follow its own scale rule, see
:class:`~mask2former.annotate.AnnotatorParams`), and nothing is done to its instances afterwards
(no score threshold, duplicate removal or other model post-processing: the annotator already
cleans up its own).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import numpy as np

from ..annotate import AnnotatorParams, annotate_instances
from ..errors import InputError
from ..structures import Instances
from .options import PredictOptions


class AnnotatorPredictor:
    """``predictor(image) -> Instances``: the classical annotator's myotubes of one whole image,
    at the image's own resolution, every score 1.0.

    The annotator's own confidence (its contrast over the threshold) ranks candidates for COCO AP
    in the benchmarks; here each instance is a final answer, as a thresholded model's is, so the
    exports and the label image's overlap order do not depend on it.
    """

    # What predict.py's log and worker default read off a predictor.
    device = "cpu"

    def __init__(self, params: AnnotatorParams | None = None):
        self.params = params or AnnotatorParams()
        self._path: str | None = None
        self._pixel_size: float | None = None

    @contextlib.contextmanager
    def for_image(self, path: str, pixel_size: float | None) -> Iterator[AnnotatorPredictor]:
        """The file and pixel size (microns) of the image annotated inside this block: with
        ``params.reference_pixel_size_um`` the annotator's scale follows from the pixel size."""
        self._path, self._pixel_size = path, pixel_size
        try:
            yield self
        finally:
            self._path, self._pixel_size = None, None

    def params_for_image(self) -> AnnotatorParams:
        """The parameters for the image in hand: the scale from its pixel size when the reference
        field is given in microns, else the annotator's own rule (longest side / 1500, or ``scale``)."""
        if not self.params.reference_pixel_size_um:
            return self.params
        if not self._pixel_size:
            raise InputError(
                self._path,
                "the file does not say its pixel size, which --reference-pixel-size needs: give --pixel-size",
            )
        return self.params.replace(scale=self.params.physical_scale(self._pixel_size))

    def __call__(self, image: np.ndarray) -> Instances:
        found = annotate_instances(image, self.params_for_image())
        return Instances(found.masks, np.ones(len(found.masks), np.float32))


def annotator_options(**overrides) -> PredictOptions:
    """predict.py's options for the annotator: whole images at their own pixels, no model
    post-processing (the tiling fields keep their defaults and are not used)."""
    return dataclasses.replace(PredictOptions(), tiled=False, post=None, input_scale=1.0, **overrides)


def annotator_identity(params: AnnotatorParams) -> dict:
    """What a run's batch.json records in place of the model: the method and every parameter, so
    that --resume refuses other parameters and names the ones that differ."""
    return {
        "method": "classical annotator",
        "annotator": {"name": "classical annotator", **dataclasses.asdict(params)},
    }
