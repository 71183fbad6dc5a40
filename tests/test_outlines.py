"""Outline snapping: instances keep their identity and take the foreground's outline."""

import numpy as np

from mask2former.inference.outlines import snap_to_foreground
from mask2former.structures import CroppedInstances

SIZE = (120, 160)


def bar(y0, y1, x0, x1):
    m = np.zeros(SIZE, bool)
    m[y0:y1, x0:x1] = True
    return m


def snapped_masks(masks, foreground, reach, scores=None):
    out = snap_to_foreground(CroppedInstances.from_masks(np.stack(masks), scores), foreground, reach)
    return [m.to_full(*SIZE) for m in out]


def test_a_coarse_mask_takes_the_foreground_outline():
    tube = bar(40, 60, 10, 150)
    coarse = bar(44, 58, 20, 140) | bar(58, 66, 60, 90)  # too narrow, too short, and a bulge outside
    (got,) = snapped_masks([coarse], tube, reach=12)
    assert np.array_equal(got, tube)


def test_foreground_beyond_reach_stays_unowned():
    tube, far = bar(40, 60, 10, 150), bar(100, 110, 10, 150)  # the second 40 px away
    (got,) = snapped_masks([bar(42, 58, 10, 150)], tube | far, reach=12)
    assert np.array_equal(got, tube)


def test_each_free_pixel_goes_to_the_nearest_instance():
    upper, lower = bar(20, 50, 10, 150), bar(50, 80, 10, 150)  # two touching tubes, one foreground
    got = snapped_masks([bar(25, 40, 10, 150), bar(62, 75, 10, 150)], upper | lower, reach=20)
    # Rows 39 and 62 are the instances' nearest edges: the border falls half-way, at row 50.
    assert got[0][20:50, 10:150].all() and not got[0][52:].any()
    assert got[1][52:80, 10:150].all() and not got[1][:50].any()
    assert not (got[0] & got[1]).any()


def test_crossing_pixels_stay_in_both_instances():
    horizontal, vertical = bar(50, 62, 0, 160), bar(0, 120, 70, 82)
    got = snapped_masks([horizontal, vertical], horizontal | vertical, reach=6, scores=[0.9, 0.8])
    assert np.array_equal(got[0], horizontal) and np.array_equal(got[1], vertical)


def test_an_instance_outside_the_foreground_is_dropped():
    tube = bar(40, 60, 10, 150)
    got = snapped_masks([bar(42, 58, 10, 150), bar(90, 100, 10, 150)], tube, reach=4)
    assert len(got) == 1 and np.array_equal(got[0], tube)


def test_no_instances():
    empty = CroppedInstances(*SIZE, [])
    assert len(snap_to_foreground(empty, bar(0, 10, 0, 10), 5.0)) == 0


def test_reach_limits_how_far_the_outline_moves():
    tube = bar(40, 60, 10, 150)
    inside = bar(44, 56, 10, 150) | bar(56, 70, 40, 50)  # part of it outside the foreground
    (trimmed,) = snapped_masks([inside], tube, reach=0)
    assert np.array_equal(trimmed, inside & tube)
    (grown,) = snapped_masks([inside], tube, reach=3)
    assert not (grown & ~tube).any()
    assert grown[41:59, 10:150].all() and not grown[40].any()  # rows 41 and 58 are 3 rows away
