"""Predict myotube instances on one image with a trained model (the image is predicted whole)."""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch

from ..config import CfgNode, resolve_device, score_threshold_in_force
from ..data.io import percentile_range
from ..data.mapper import preprocess_image
from ..data.scale import InputScale
from ..modeling.outputs import instances_from_outputs
from ..modeling.weights import (
    checkpoint_architecture,
    load_model,
    read_checkpoint,
    resolve_weights,
    weights_kind,
)
from ..structures import CroppedInstances, Instances
from .augmentation import flipped_outputs, fuse_views
from .filters import PostprocessParams, postprocess

logger = logging.getLogger(__name__)


def class_names_for_weights(weights: str, default: list[str] | None = None) -> list[str]:
    """Class names stored in a project checkpoint or zoo model, else ``default`` (one class, ``myotube``)."""
    weights = resolve_weights(weights)
    if weights_kind(weights) == "checkpoint":
        names = read_checkpoint(weights).get("class_names")
        if names:
            return list(names)
    return list(default or ["myotube"])


def input_scale_for_weights(weights: str) -> InputScale | None:
    """The training scale stored in a project checkpoint or zoo model (None for other weights, or
    older checkpoints)."""
    weights = resolve_weights(weights)
    if weights and weights_kind(weights) == "checkpoint":
        return InputScale.from_dict(read_checkpoint(weights).get("input_scale"))
    return None


class MyotubePredictor:
    """``predictor(image) -> Instances`` at the image's own resolution.

    ``image`` is what :func:`mask2former.data.io.read_image` returns (any dtype, (H, W) or (H, W, 3)).
    Thresholds: MODEL.MASK_FORMER.TEST.{OBJECT_MASK_THRESHOLD, MASK_THRESHOLD, MIN_MASK_AREA};
    with TEST.AUG.ENABLED the four flips of each image are predicted and fused
    (:mod:`mask2former.inference.augmentation`) and TEST.AUG.OBJECT_MASK_THRESHOLD is the score
    threshold.
    """

    def __init__(
        self,
        cfg: CfgNode,
        weights: str | None = None,
        device: str | None = None,
        model=None,
        class_names=None,
        input_scale: float | None = None,
    ):
        """``input_scale``: model-input pixels per image pixel (see data/scale.py); None resizes each
        image's longest side to INPUT.IMAGE_SIZE, as evaluation on a dataset's fields does."""
        weights = cfg.MODEL.WEIGHTS if weights is None else weights
        if model is None:
            cfg, changes = checkpoint_architecture(cfg, weights)
            for change in changes:
                logger.info("Architecture from %s: %s", weights, change)
        self.cfg = cfg
        self.input_scale = input_scale
        self.device = device or resolve_device(cfg)
        if model is None:
            self.class_names = class_names or class_names_for_weights(weights)
            model, described = load_model(cfg, self.class_names, weights)
            logger.info("Predictor weights: %s", described)
        else:
            self.class_names = class_names or [
                model.config.id2label[i] for i in sorted(model.config.id2label)
            ]
        self.model = model.to(self.device).eval()
        self.input_size = cfg.INPUT.IMAGE_SIZE
        self._value_range: np.ndarray | None = None

    @contextlib.contextmanager
    def fixed_intensity_range(self, field: np.ndarray):
        """Scale every tile predicted inside this block like the whole ``field``: a mostly empty
        tile scaled by its own percentiles would have its background noise stretched to full range."""
        self._value_range = percentile_range(
            field, self.cfg.INPUT.PERCENTILE_LOW, self.cfg.INPUT.PERCENTILE_HIGH
        )
        try:
            yield self
        finally:
            self._value_range = None

    @torch.no_grad()
    def raw_outputs(self, image: np.ndarray):
        pixel_values, info = preprocess_image(image, self.cfg, self._value_range, self.input_scale)
        pixel_values = pixel_values.to(self.device)
        with self._autocast():
            if self.cfg.TEST.AUG.ENABLED:
                cls, masks = fuse_views(flipped_outputs(self.model, pixel_values), self.cfg.TEST.AUG.FUSE_IOU)
                return cls, masks, info
            out = self.model(pixel_values=pixel_values[None])
        return out.class_queries_logits[0], out.masks_queries_logits[0], info

    def predict_all(self, image: np.ndarray) -> Instances:
        """Every candidate (for COCO AP, which ranks by score): no score threshold."""
        return self._instances(image, score_threshold=0.0, min_area=1)

    def __call__(self, image: np.ndarray) -> Instances:
        return self._instances(
            image,
            score_threshold=score_threshold_in_force(self.cfg),
            min_area=self.cfg.MODEL.MASK_FORMER.TEST.MIN_MASK_AREA,
        )

    def _instances(self, image: np.ndarray, score_threshold: float, min_area: int) -> Instances:
        cls, masks, info = self.raw_outputs(image)
        return instances_from_outputs(
            cls,
            masks,
            info,
            mask_threshold=self.cfg.MODEL.MASK_FORMER.TEST.MASK_THRESHOLD,
            score_threshold=score_threshold,
            max_detections=self.cfg.TEST.DETECTIONS_PER_IMAGE,
            min_area=min_area,
        )

    def kept(
        self, candidates: Instances, params: PostprocessParams | None = None, image: np.ndarray | None = None
    ) -> Instances:
        """What predict.py keeps of :meth:`predict_all`'s candidates for an image it predicts whole:
        MIN_MASK_AREA, then the post-processing (score threshold first; ``params`` defaults to the
        config's; ``image``, the one predicted, for the steps that need it). F1 is scored on
        these."""
        params = params or PostprocessParams.from_cfg(self.cfg)
        if not len(candidates):  # a field where the model finds nothing
            return candidates
        areas = candidates.masks.reshape(len(candidates), -1).sum(1)
        large = candidates.subset(
            np.flatnonzero(areas >= max(1, self.cfg.MODEL.MASK_FORMER.TEST.MIN_MASK_AREA))
        )
        return postprocess(CroppedInstances.from_instances(large), params, image).to_instances()

    def _autocast(self):
        if str(self.device).startswith("cuda") and self.cfg.SOLVER.AMP.ENABLED:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)
