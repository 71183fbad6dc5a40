"""Post-processing steps, each on its own and through the config switches."""

from dataclasses import replace

import cv2
import numpy as np
import pytest

from mask2former.config import get_cfg
from mask2former.inference.filters import (
    PostprocessParams,
    filter_by_area,
    filter_by_brightness,
    filter_by_elongation,
    filter_by_score,
    merge_fragments,
    postprocess,
    remove_contained,
    remove_duplicates,
    split_disconnected,
)
from mask2former.structures import CroppedInstances
from tests.helpers import tiny_cfg

SIZE = (200, 200)


def bar(y0, y1, x0, x1):
    m = np.zeros(SIZE, bool)
    m[y0:y1, x0:x1] = True
    return m


def instances(masks, scores=None):
    return CroppedInstances.from_masks(np.stack(masks), scores)


def full_masks(inst):
    return [m.to_full(*inst.image_size) for m in inst]


def test_score_threshold_keeps_at_or_above():
    inst = instances([bar(0, 5, 0, 50), bar(10, 15, 0, 50), bar(20, 25, 0, 50)], [0.2, 0.5, 0.9])
    assert filter_by_score(inst, 0.5).scores.tolist() == pytest.approx([0.5, 0.9])


def test_contained_instance_is_removed_and_crossing_is_kept():
    big = bar(50, 70, 10, 190)
    inside = bar(52, 68, 40, 80)  # wholly inside big
    crossing = bar(0, 200, 100, 115)  # crosses big: shares only the crossing
    out = remove_contained(instances([big, inside, crossing], [0.5, 0.9, 0.6]), 0.9)
    got = full_masks(out)
    assert len(got) == 2
    assert any(np.array_equal(g, big) for g in got) and any(np.array_equal(g, crossing) for g in got)


def test_duplicates_go_in_score_order_and_crossing_tubes_stay():
    tube = bar(50, 70, 10, 190)
    shifted = bar(54, 74, 14, 190)  # the same tube found by a second query: IoU 0.65
    crossing = bar(0, 200, 100, 120)  # shares only the crossing with either: IoU 0.05
    out = remove_duplicates(instances([tube, shifted, crossing], [0.6, 0.8, 0.7]), 0.5)
    got = full_masks(out)
    assert len(got) == 2
    assert any(np.array_equal(g, shifted) for g in got) and any(np.array_equal(g, crossing) for g in got)
    # Below the IoU limit nothing goes.
    assert len(remove_duplicates(instances([tube, shifted, crossing], [0.6, 0.8, 0.7]), 0.7)) == 3


def test_duplicate_removal_is_greedy_from_the_top():
    # a ~ b and b ~ c but a and c differ: b goes (a is kept first), so c survives.
    a, b, c = bar(50, 70, 10, 110), bar(50, 70, 40, 140), bar(50, 70, 70, 170)
    out = remove_duplicates(instances([a, b, c], [0.9, 0.8, 0.7]), 0.4)
    assert sorted(out.scores.tolist()) == pytest.approx([0.7, 0.9])


def test_contained_fraction_threshold():
    big = bar(50, 70, 10, 190)
    mostly = bar(55, 75, 40, 80)  # 75 % inside big
    assert len(remove_contained(instances([big, mostly]), 0.9)) == 2
    assert len(remove_contained(instances([big, mostly]), 0.7)) == 1


def test_identical_duplicates_keep_the_higher_score():
    a = bar(10, 30, 10, 150)
    out = remove_contained(instances([a, a.copy()], [0.3, 0.8]), 0.9)
    assert len(out) == 1 and out[0].score == pytest.approx(0.8)


def test_overlapping_fragments_merge_into_their_union():
    left = bar(90, 105, 10, 110)
    right = bar(90, 105, 60, 190)  # overlaps left by 50 of its 100 columns
    other = bar(150, 160, 10, 190)
    out = merge_fragments(instances([left, right, other], [0.6, 0.7, 0.9]), 0.4)
    got = full_masks(out)
    assert len(got) == 2
    merged = [m for m in out if m.y0 == 90][0]
    assert np.array_equal(merged.to_full(*SIZE), left | right)
    assert merged.score == pytest.approx(0.7)  # the better fragment's score


def test_fragment_overlap_threshold_and_chains():
    a = bar(90, 105, 0, 80)
    b = bar(90, 105, 60, 140)  # 20/80 of b overlaps a
    c = bar(90, 105, 120, 200)
    assert len(merge_fragments(instances([a, b, c]), 0.5)) == 3
    out = merge_fragments(instances([a, b, c]), 0.2)
    assert len(out) == 1 and np.array_equal(full_masks(out)[0], a | b | c)


def test_crossing_tubes_are_not_merged():
    h = bar(90, 105, 0, 200)
    v = bar(0, 200, 90, 105)
    assert len(merge_fragments(instances([h, v]), 0.5)) == 2


def test_min_area():
    inst = instances([bar(0, 9, 0, 11), bar(20, 30, 0, 10), bar(40, 60, 0, 50)])
    assert filter_by_area(inst, 100).areas.tolist() == [100, 1000]


def test_min_elongation_drops_round_debris():
    disc = np.zeros(SIZE, np.uint8)
    cv2.circle(disc, (50, 50), 20, 1, -1)
    tube = bar(150, 162, 10, 190)  # 180 x 12: elongation about 15
    out = filter_by_elongation(instances([disc.astype(bool), tube]), 5.0)
    assert len(out) == 1 and np.array_equal(full_masks(out)[0], tube)


def test_params_from_config_and_switches():
    cfg = get_cfg()
    cfg.INFERENCE.MERGE_FRAGMENTS = False
    cfg.INFERENCE.MIN_AREA = 10
    cfg.MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD = 0.3
    params = PostprocessParams.from_cfg(cfg)
    assert (
        params.merge_fragments is False
        and params.min_area == 10
        and params.score_threshold == pytest.approx(0.3)
    )

    left = bar(90, 105, 10, 110)
    right = bar(90, 105, 60, 190)
    small = bar(0, 2, 0, 2)
    low = bar(150, 160, 0, 100)
    inst = instances([left, right, small, low], [0.6, 0.7, 0.9, 0.1])
    off = postprocess(inst, params)
    assert len(off) == 2  # merge off: both fragments; small and low-score dropped
    assert off.scores.tolist() == pytest.approx([0.7, 0.6])  # sorted by score
    on = postprocess(
        inst, PostprocessParams(score_threshold=0.3, min_area=10, merge_fragments=True, merge_overlap=0.4)
    )
    assert len(on) == 1 and np.array_equal(full_masks(on)[0], left | right)


def test_remove_contained_before_merging_drops_rather_than_unions():
    big = bar(50, 70, 10, 190)
    sub = bar(48, 68, 40, 80)  # 90 % inside big, sticks out by 2 rows
    params = PostprocessParams(
        score_threshold=0.0, min_area=0, merge_fragments=True, merge_overlap=0.5, contained_fraction=0.85
    )
    out = postprocess(instances([big, sub], [0.5, 0.9]), params)
    assert len(out) == 1 and np.array_equal(full_masks(out)[0], big)
    no_removal = postprocess(
        instances([big, sub], [0.5, 0.9]),
        PostprocessParams(score_threshold=0.0, min_area=0, merge_fragments=True, remove_contained=False),
    )
    assert len(no_removal) == 1 and np.array_equal(full_masks(no_removal)[0], big | sub)


def faint_and_bright_field():
    """A noisy 8-bit field with a bright tube, a faint one (a twentieth as bright) and a half-bright
    instance: the bright tube plus as much background again."""
    rng = np.random.default_rng(0)
    image = rng.normal(10, 2, SIZE)
    bright, faint = bar(20, 40, 10, 190), bar(120, 140, 10, 190)
    image[bright] += 150
    image[faint] += 8  # above the noise, below 8 % of the bright tube
    half = bright | bar(40, 60, 10, 190)
    return np.clip(image, 0, 255).astype(np.uint8), [bright, faint, half]


def test_brightness_keeps_what_the_field_threshold_keeps():
    image, (bright, faint, half) = faint_and_bright_field()
    inst = instances([bright, faint, half], [0.9, 0.8, 0.7])
    from mask2former.annotate.foreground import thresholded

    above = thresholded(image).mask
    kept = filter_by_brightness(inst, above, 0.3)
    assert [m.score for m in kept] == pytest.approx([0.9, 0.7])  # the faint tube goes
    assert [m.score for m in filter_by_brightness(inst, above, 0.6)] == pytest.approx([0.9])
    assert len(filter_by_brightness(inst, above, 0.0)) == 3


def test_brightness_step_needs_the_image_and_is_off_by_default():
    image, masks = faint_and_bright_field()
    inst = instances(masks, [0.9, 0.8, 0.7])
    assert PostprocessParams.from_cfg(get_cfg()).min_bright_fraction == 0
    params = PostprocessParams(score_threshold=0.0, duplicate_iou=0.0, remove_contained=False, min_area=0)
    assert len(postprocess(inst, params)) == 3
    on = replace(params, min_bright_fraction=0.3)
    assert postprocess(inst, on, image).scores.tolist() == pytest.approx([0.9, 0.7])
    with pytest.raises(ValueError, match="MIN_BRIGHT_FRACTION"):
        postprocess(inst, on)


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_bright_fraction_outside_zero_to_one_is_refused(fraction):
    from mask2former.errors import ConfigError

    with pytest.raises(ConfigError, match="INFERENCE.MIN_BRIGHT_FRACTION"):
        tiny_cfg("INFERENCE.MIN_BRIGHT_FRACTION", fraction)


def test_a_mask_in_separate_parts_becomes_one_instance_per_part():
    upper, lower = bar(20, 35, 10, 190), bar(100, 110, 60, 120)  # lower: 600 of the 3300 pixels
    crossing = bar(150, 160, 0, 200) | bar(120, 200, 90, 100)  # one connected region
    out = split_disconnected(instances([upper | lower, crossing], [0.8, 0.6]))
    got = full_masks(out)
    assert len(got) == 3
    assert np.array_equal(got[0], upper) and np.array_equal(got[1], lower)
    assert np.array_equal(got[2], crossing)
    # The largest part keeps the score, the other gets its share of the mask.
    assert out.scores.tolist() == pytest.approx([0.8, 0.8 * 600 / 3300, 0.6])
    # A part under the fraction of the largest (600 against 2700 pixels) is a scrap: dropped.
    kept = full_masks(split_disconnected(instances([upper | lower, crossing], [0.8, 0.6]), 0.25))
    assert len(kept) == 2 and np.array_equal(kept[0], upper) and np.array_equal(kept[1], crossing)
    assert len(split_disconnected(instances([upper | lower], [0.8]), 0.2)) == 2


def test_a_part_repeating_another_instance_loses_the_duplicate_removal():
    tube_a, tube_b = bar(20, 40, 10, 190), bar(100, 110, 10, 150)
    bridging = tube_a | bar(100, 110, 10, 120)  # one query: tube a and most of tube b
    own_b = tube_b  # tube b's own query, with a lower score than the bridging one
    params = PostprocessParams(score_threshold=0.0, duplicate_iou=0.5, min_area=0, split_disconnected=True)
    got = full_masks(postprocess(instances([bridging, own_b], [0.9, 0.7]), params))
    assert len(got) == 2
    assert any(np.array_equal(g, tube_a) for g in got) and any(np.array_equal(g, tube_b) for g in got)
    # Without the split the bridging instance stays as it is, tube b's own instance too.
    off = replace(params, split_disconnected=False)
    assert len(postprocess(instances([bridging, own_b], [0.9, 0.7]), off)) == 2
    assert np.array_equal(full_masks(postprocess(instances([bridging, own_b], [0.9, 0.7]), off))[0], bridging)


def test_snapping_then_splitting_cuts_a_mask_that_bridges_a_dark_gap():
    rng = np.random.default_rng(1)
    image = rng.normal(10, 2, SIZE)
    upper, lower = bar(40, 56, 10, 190), bar(66, 82, 10, 190)  # 10 dark rows between them
    image[upper | lower] += 150
    image = np.clip(image, 0, 255).astype(np.uint8)
    bridged = bar(42, 80, 10, 190)  # a coarse mask over both tubes and the gap
    params = PostprocessParams(score_threshold=0.0, min_area=0, snap_reach=4.0, split_disconnected=True)
    got = full_masks(postprocess(instances([bridged], [0.9]), params, image))
    assert len(got) == 2
    for part, tube in zip(sorted(got, key=lambda m: np.flatnonzero(m.any(1))[0]), (upper, lower)):
        assert (part & tube).sum() / (part | tube).sum() > 0.8
    with pytest.raises(ValueError, match="SNAP_REACH"):
        postprocess(instances([bridged], [0.9]), params)


@pytest.mark.parametrize(
    "key, value", [("INFERENCE.SNAP_REACH", -1.0), ("INFERENCE.SPLIT_MIN_FRACTION", 1.5)]
)
def test_out_of_range_split_and_snap_settings_are_refused(key, value):
    from mask2former.errors import ConfigError

    with pytest.raises(ConfigError, match=key):
        tiny_cfg(key, value)


def test_empty_input():
    empty = CroppedInstances(50, 60, [])
    assert len(postprocess(empty, PostprocessParams(min_elongation=3.0))) == 0


def test_predictor_scores_what_predict_py_keeps():
    from mask2former.inference.predictor import MyotubePredictor
    from mask2former.structures import Instances

    tube, shifted, crossing = bar(50, 70, 10, 190), bar(54, 74, 14, 190), bar(0, 200, 100, 120)
    unsure = bar(150, 170, 10, 190)
    candidates = Instances(np.stack([tube, shifted, crossing, unsure]), [0.9, 0.8, 0.7, 0.3])
    settings = (
        "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD",
        0.5,
        "INFERENCE.MIN_AREA",
        0,
        # No image here, and the steps that need one (on in the stage configs) are not the point.
        "INFERENCE.SNAP_REACH",
        0,
        "INFERENCE.SPLIT_DISCONNECTED",
        False,
    )
    kept = MyotubePredictor(tiny_cfg(*settings, "INFERENCE.DUPLICATE_IOU", 0.5), device="cpu").kept(
        candidates
    )
    assert kept.scores.tolist() == pytest.approx([0.9, 0.7])
    without = MyotubePredictor(tiny_cfg(*settings, "INFERENCE.DUPLICATE_IOU", 0.0), device="cpu").kept(
        candidates
    )
    assert without.scores.tolist() == pytest.approx([0.9, 0.8, 0.7])
