"""Test-time augmentation: flipped views and their fusion (mask2former/inference/augmentation.py)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mask2former.config import score_threshold_in_force
from mask2former.errors import ConfigError
from mask2former.inference.augmentation import FLIPS, MIN_QUERY_SCORE, flipped_outputs, fuse_views
from mask2former.inference.command import config_overrides
from mask2former.inference.predictor import MyotubePredictor

from .helpers import field_image, tiny_cfg

H = W = 8


def class_logits(*scores: float) -> torch.Tensor:
    """One-class logits (Q, 2) whose softmax gives each query ``score`` for the class."""
    p = torch.tensor(scores)
    return torch.log(torch.stack([p, 1 - p], 1))


def mask_logits(*masks: np.ndarray) -> torch.Tensor:
    """Mask logits (Q, H, W): +4 inside, -4 outside."""
    return torch.from_numpy(np.stack(masks)).float() * 8 - 4


def block(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def fused_scores(cls: torch.Tensor) -> list[float]:
    return cls.softmax(-1)[:, 0].tolist()


def test_a_tube_every_view_finds_keeps_its_score_and_mask():
    tube = block(0, 8, 2, 4)
    views = [(class_logits(0.9), mask_logits(tube))] * 4
    cls, masks = fuse_views(views)
    assert fused_scores(cls) == pytest.approx([0.9])
    assert torch.equal(masks[0] > 0, torch.from_numpy(tube))


def test_a_tube_one_view_of_four_finds_keeps_a_quarter_of_its_score():
    tube, fluke = block(0, 8, 2, 4), block(0, 2, 6, 8)
    found = (class_logits(0.9, 0.8), mask_logits(tube, fluke))
    alone = (class_logits(0.9, 0.01), mask_logits(tube, fluke))
    cls, _ = fuse_views([found, alone, alone, alone])
    assert sorted(fused_scores(cls)) == pytest.approx([0.2, 0.9])


def test_masks_are_averaged_over_the_views_that_found_the_tube():
    narrow, wide = block(0, 8, 2, 4), block(0, 8, 2, 5)  # IoU 2/3: one tube in every view
    # Three views of four see the tube narrow: the strip only the fourth sees is out.
    views = [(class_logits(0.9), mask_logits(narrow))] * 3 + [(class_logits(0.9), mask_logits(wide))]
    _, masks = fuse_views(views)
    assert len(masks) == 1 and torch.equal(masks[0] > 0, torch.from_numpy(narrow))
    # Three see it wide: the strip is in.
    views = [(class_logits(0.9), mask_logits(narrow))] + [(class_logits(0.9), mask_logits(wide))] * 3
    _, masks = fuse_views(views)
    assert len(masks) == 1 and torch.equal(masks[0] > 0, torch.from_numpy(wide))


def test_separate_tubes_stay_separate_and_one_view_never_gives_two_members():
    left, right = block(0, 8, 0, 2), block(0, 8, 6, 8)
    # One view holds two near-identical queries: they are two candidates, never one group.
    twin = block(0, 8, 0, 3)
    views = [(class_logits(0.9, 0.7, 0.6), mask_logits(left, right, twin))] + [
        (class_logits(0.9, 0.7, 0.01), mask_logits(left, right, twin))
    ] * 3
    cls, masks = fuse_views(views)
    scores = sorted(fused_scores(cls))
    assert scores == pytest.approx([0.15, 0.7, 0.9])
    assert len(masks) == 3


def test_views_with_nothing_above_the_query_score_give_the_first_views_outputs():
    quiet = (class_logits(MIN_QUERY_SCORE / 2), mask_logits(block(0, 8, 0, 2)))
    cls, masks = fuse_views([quiet] * 4)
    assert cls is quiet[0] and masks is quiet[1]


class FixedMasks(torch.nn.Module):
    """A 'model' whose masks ignore the input: flipping the input must not move them, so flipping
    the outputs back must mirror them."""

    def forward(self, pixel_values):
        n = len(pixel_values)
        mask = torch.zeros(1, H, W)
        mask[0, :, :2] = 1
        return SimpleNamespace(
            class_queries_logits=torch.zeros(n, 1, 2), masks_queries_logits=mask.expand(n, 1, H, W)
        )


class EchoInput(torch.nn.Module):
    """A 'model' whose mask is its input: perfectly flip-equivariant."""

    def forward(self, pixel_values):
        n = len(pixel_values)
        return SimpleNamespace(
            class_queries_logits=torch.zeros(n, 1, 2), masks_queries_logits=pixel_values[:, :1]
        )


def test_views_are_flipped_back_to_the_inputs_orientation():
    image = torch.rand(3, H, W)
    echoed = flipped_outputs(EchoInput(), image)
    assert len(echoed) == len(FLIPS) == 4
    for _, masks in echoed:
        assert torch.equal(masks[0], image[0])
    fixed = flipped_outputs(FixedMasks(), image)
    left = fixed[0][1][0]
    assert torch.equal(fixed[1][1][0], left.flip(-1))  # the left-right view's mask comes back mirrored
    assert torch.equal(fixed[2][1][0], left)  # an up-down flip leaves a left strip where it is
    assert torch.equal(fixed[3][1][0], left.flip(-1))


def test_the_predictor_fuses_four_views_and_uses_the_augmented_threshold():
    image = field_image(64)
    plain_cfg = tiny_cfg("MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", 0.7)
    aug_cfg = tiny_cfg(
        "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD",
        0.7,
        "TEST.AUG.ENABLED",
        True,
        "TEST.AUG.OBJECT_MASK_THRESHOLD",
        0.3,
    )
    assert score_threshold_in_force(plain_cfg) == 0.7 and score_threshold_in_force(aug_cfg) == 0.3
    torch.manual_seed(0)
    plain = MyotubePredictor(plain_cfg, weights="", device="cpu")
    augmented = MyotubePredictor(aug_cfg, model=plain.model, device="cpu", class_names=["myotube"])
    one, _, _ = plain.raw_outputs(image)
    fused, fused_masks, _ = augmented.raw_outputs(image)
    assert fused_masks.shape[1:] == plain.raw_outputs(image)[1].shape[1:]
    assert not torch.equal(fused, one)
    kept = augmented(image)
    assert kept.image_size == image.shape[:2]
    assert (kept.scores >= 0.3).all()


def test_tta_flag_sets_augmentation_and_the_threshold_in_force():
    assert config_overrides({"tta": True, "score_threshold": 0.4}, ["TEST.AUG.FUSE_IOU", "0.6"]) == [
        "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", "0.4",
        "TEST.AUG.OBJECT_MASK_THRESHOLD", "0.4",
        "TEST.AUG.ENABLED", "True",
        "TEST.AUG.FUSE_IOU", "0.6",
    ]  # fmt: skip
    assert "TEST.AUG.ENABLED" not in config_overrides({"tta": None}, [])


@pytest.mark.parametrize("iou", [0.0, 1.0])
def test_a_fuse_iou_outside_zero_to_one_is_refused(iou):
    with pytest.raises(ConfigError, match="TEST.AUG.FUSE_IOU"):
        tiny_cfg("TEST.AUG.FUSE_IOU", iou)
