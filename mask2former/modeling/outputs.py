"""Model outputs → per-instance masks at the original image resolution.

transformers' ``post_process_instance_segmentation`` resizes to a fixed size, ignores the mask
threshold and paints overlapping instances over each other; myotubes overlap, so each query's
mask is kept whole here and instances may overlap.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..structures import Instances, ResizeInfo

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
    # The final score is class score x mean mask probability <= class score: no weaker query can pass.
    order = order[class_scores[order] >= max(MIN_CANDIDATE_SCORE, score_threshold)]
    if max_detections > 0:
        order = order[:max_detections]
    h, w = info.original_hw
    if len(order) == 0:
        return Instances.empty(h, w)
    rh, rw = info.resized_hw
    masks, scores, boxes = [], [], []
    for start in range(0, len(order), UPSAMPLE_CHUNK):
        idx = order[start : start + UPSAMPLE_CHUNK]
        logits = mask_logits[idx].float()[None]
        logits = F.interpolate(logits, size=info.padded_hw, mode="bilinear", align_corners=False)[
            ..., :rh, :rw
        ]
        prob = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)[0].sigmoid()
        binary = prob > mask_threshold
        area = binary.flatten(1).sum(1)
        mask_score = (prob * binary).flatten(1).sum(1) / area.clamp(min=1)
        scores.append((class_scores[idx] * mask_score).cpu())
        boxes.append(
            _boxes_on_device(binary).cpu()
        )  # on the device: far cheaper than on N full masks in numpy
        masks.append(binary.cpu())
    all_scores = torch.cat(scores)
    all_boxes = torch.cat(boxes)
    area = torch.cat([m.flatten(1).sum(1) for m in masks])
    keep = torch.nonzero((area >= max(1, min_area)) & (all_scores >= score_threshold)).flatten()
    keep = keep[torch.argsort(all_scores[keep], descending=True, stable=True)]
    all_masks = torch.cat(masks)[keep].numpy() if len(keep) else np.zeros((0, h, w), bool)
    return Instances(all_masks, all_scores[keep].numpy(), all_boxes[keep].numpy())


def _boxes_on_device(binary: torch.Tensor) -> torch.Tensor:
    """XYXY boxes of (N, H, W) boolean masks (zero boxes for empty masks)."""
    rows, cols = binary.any(2), binary.any(1)
    h, w = binary.shape[1:]
    ar_h = torch.arange(h, device=binary.device)
    ar_w = torch.arange(w, device=binary.device)
    y1 = torch.where(rows, ar_h, h).min(1).values
    y2 = torch.where(rows, ar_h, -1).max(1).values + 1
    x1 = torch.where(cols, ar_w, w).min(1).values
    x2 = torch.where(cols, ar_w, -1).max(1).values + 1
    boxes = torch.stack([x1, y1, x2, y2], 1).float()
    boxes[~rows.any(1)] = 0
    return boxes
