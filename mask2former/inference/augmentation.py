"""Test-time augmentation: predict an image in its four flips and keep what the views agree on.

Mask2Former's answer changes when the image is flipped: a tube found in one view is missed, merged
with a neighbour or found twice in another. Predicting the identity, left-right, up-down and
both-ways flips and fusing them removes much of that noise (``TEST.AUG.ENABLED``; measured in
docs/predict.md#test-time-augmentation). The fusion works on the model's raw outputs:

- every query of every view whose class score reaches ``MIN_QUERY_SCORE`` is a candidate, its mask
  flipped back;
- from the highest class score down, a candidate joins the group whose first (highest-scoring)
  member's mask it overlaps most, with IoU above ``TEST.AUG.FUSE_IOU``, if that group has no
  member from its view yet; otherwise it starts a group;
- a group becomes one query: its class probabilities are summed over its members and divided by
  the number of views, so a tube found in one view of four keeps a quarter of its score; its mask
  probabilities are averaged over its members.

The fused outputs have the model's shapes, (queries, classes + 1) and (queries, h, w), so every
later step (instances, tiles, post-processing) is unchanged. The cost is four forward passes.
"""

from __future__ import annotations

import torch

# Flipped axes of a (..., H, W) tensor: identity, left-right, up-down, both.
FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))
# Queries below this class score are left out of the fusion (they cannot reach any threshold).
MIN_QUERY_SCORE = 0.05


def _flip(tensor: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return tensor.flip(dims) if dims else tensor


def flipped_outputs(model, pixel_values: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(class logits, mask logits) of one (C, H, W) input in each of :data:`FLIPS`, the masks
    flipped back to the input's orientation. One forward pass with the views as a batch."""
    batch = torch.stack([_flip(pixel_values, dims) for dims in FLIPS])
    out = model(pixel_values=batch)
    return [
        (out.class_queries_logits[k], _flip(out.masks_queries_logits[k], dims))
        for k, dims in enumerate(FLIPS)
    ]


def _group(
    binary: torch.Tensor, scores: torch.Tensor, views: torch.Tensor, fuse_iou: float
) -> list[list[int]]:
    """Greedy grouping of candidates (rows of ``binary``) by mask IoU with each group's first member,
    at most one member per view."""
    flat = binary.flatten(1).float()
    inter = flat @ flat.T
    area = flat.sum(1)
    iou = inter / (area[:, None] + area[None, :] - inter).clamp(min=1)
    groups: list[list[int]] = []
    group_views: list[set[int]] = []
    for n in torch.argsort(scores, descending=True, stable=True).tolist():
        best, chosen = fuse_iou, None
        for g, members in enumerate(groups):
            overlap = float(iou[n, members[0]])
            if int(views[n]) not in group_views[g] and overlap > best:
                best, chosen = overlap, g
        if chosen is None:
            groups.append([n])
            group_views.append({int(views[n])})
        else:
            groups[chosen].append(n)
            group_views[chosen].add(int(views[n]))
    return groups


def fuse_views(
    outputs: list[tuple[torch.Tensor, torch.Tensor]], fuse_iou: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """One (class logits, mask logits) pair from several views' outputs (module doc)."""
    probs = [cls.float().softmax(-1) for cls, _ in outputs]
    picked = [
        (v, q)
        for v, p in enumerate(probs)
        for q in torch.nonzero(p[:, :-1].max(-1).values >= MIN_QUERY_SCORE).flatten().tolist()
    ]
    if not picked:
        return outputs[0]
    views = torch.tensor([v for v, _ in picked])
    scores = torch.stack([probs[v][q, :-1].max() for v, q in picked])
    mask_logits = torch.stack([outputs[v][1][q].float() for v, q in picked])
    groups = _group(mask_logits > 0, scores, views, fuse_iou)
    class_probs = torch.stack([probs[v][q] for v, q in picked])
    fused_classes, fused_masks = [], []
    for members in groups:
        p = class_probs[members].sum(0) / len(outputs)
        p[-1] = (1 - p[:-1].sum()).clamp(min=0)
        fused_classes.append(torch.log(p.clamp(min=1e-8)))
        mean_prob = mask_logits[members].sigmoid().mean(0)
        fused_masks.append(torch.logit(mean_prob, eps=1e-6))
    return torch.stack(fused_classes), torch.stack(fused_masks)
