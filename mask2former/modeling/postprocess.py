"""Model outputs → per-instance masks at the original image resolution.

transformers' ``post_process_instance_segmentation`` resizes to a fixed size, ignores the mask
threshold and paints overlapping instances over each other; myotubes overlap, so each query's
mask is kept whole here and instances may overlap.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.mapper import ResizeInfo
from ..structures import Instances

# Queries scoring below this never matter for AP in practice; skipping them saves upsampling work.
MIN_CANDIDATE_SCORE = 1e-3
UPSAMPLE_CHUNK = 16


@torch.no_grad()
def instances_from_outputs(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    info: ResizeInfo,
    mask_threshold: float = 0.5,
    score_threshold: float = 0.0,
    max_detections: int = 0,
    min_area: int = 0,
) -> Instances:
    """One image: ``class_logits`` (Q, C+1), ``mask_logits`` (Q, h, w) at 1/4 of the padded input.

    The instance score is Mask2Former's: class probability x mean mask probability inside the mask.
    """
    probs = class_logits.float().softmax(-1)[:, :-1]
    class_scores = probs.max(-1).values
    order = torch.argsort(class_scores, descending=True)
    order = order[class_scores[order] >= max(MIN_CANDIDATE_SCORE, score_threshold * 0.5)]
    if max_detections > 0:
        order = order[:max_detections]
    h, w = info.original_hw
    if len(order) == 0:
        return Instances.empty(h, w)
    rh, rw = info.resized_hw
    masks, scores = [], []
    for start in range(0, len(order), UPSAMPLE_CHUNK):
        idx = order[start : start + UPSAMPLE_CHUNK]
        logits = mask_logits[idx].float()[None]
        logits = F.interpolate(logits, size=info.padded_hw, mode="bilinear", align_corners=False)[..., :rh, :rw]
        prob = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)[0].sigmoid()
        binary = prob > mask_threshold
        area = binary.flatten(1).sum(1)
        mask_score = (prob * binary).flatten(1).sum(1) / area.clamp(min=1)
        scores.append((class_scores[idx] * mask_score).cpu())
        masks.append(binary.cpu())
    all_masks = torch.cat(masks).numpy()
    all_scores = torch.cat(scores).numpy()
    area = all_masks.reshape(len(all_masks), -1).sum(1)
    keep = (area >= max(1, min_area)) & (all_scores >= score_threshold)
    return Instances(all_masks[keep], all_scores[keep]).sorted_by_score()
