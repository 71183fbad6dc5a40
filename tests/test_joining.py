"""Joining the pieces of one tube end to end, and never two tubes that cross or lie side by side."""

import numpy as np
import pytest

from mask2former.inference.filters import PostprocessParams, postprocess
from mask2former.inference.joining import join_pieces, piece_ends
from mask2former.structures import CroppedInstances
from tests.helpers import polyline_mask

SIZE = (300, 300)


def pieces_of(mask: np.ndarray, cuts: list[tuple[int, int]], axis: int = 1) -> list[np.ndarray]:
    """``mask`` cut into pieces by removing the column (or row) ranges ``cuts``."""
    kept = mask.copy()
    for a, b in cuts:
        if axis == 1:
            kept[:, a:b] = False
        else:
            kept[a:b, :] = False
    from scipy.ndimage import label

    labels, n = label(kept)
    return [labels == k for k in range(1, n + 1)]


def instances(masks, scores=None) -> CroppedInstances:
    return CroppedInstances.from_masks(np.asarray(masks, bool), scores)


def masks_of(result: CroppedInstances) -> list[np.ndarray]:
    return [m.to_full(result.height, result.width) for m in result]


def test_a_tube_cut_into_three_pieces_comes_back_whole():
    tube = polyline_mask(*SIZE, [(10, 100), (150, 130), (290, 170)], 12)
    pieces = pieces_of(tube, [(95, 100), (200, 206)])
    assert len(pieces) == 3
    joined = join_pieces(instances(pieces, [0.6, 0.9, 0.7]))
    assert len(joined) == 1
    assert np.array_equal(
        masks_of(joined)[0], tube & ~np.isin(np.arange(SIZE[1]), [*range(95, 100), *range(200, 206)])[None, :]
    )
    assert joined[0].score == pytest.approx(0.9)


def test_two_crossing_tubes_each_cut_at_the_crossing_come_back_as_two():
    a = polyline_mask(*SIZE, [(20, 150), (280, 150)], 12)
    b = polyline_mask(*SIZE, [(150, 20), (150, 280)], 12)
    # Four arms, each tube cut where the other crosses it.
    arms = pieces_of(a & ~b, [(140, 160)]) + pieces_of(b & ~a, [(140, 160)], axis=0)
    assert len(arms) == 4
    joined = masks_of(join_pieces(instances(arms)))
    assert len(joined) == 2
    for tube in (a, b):
        assert any(((j & tube).sum() == j.sum()) and j.sum() > 0.8 * tube.sum() for j in joined)


def test_parallel_tubes_side_by_side_and_tubes_meeting_at_a_right_angle_stay_apart():
    upper = polyline_mask(*SIZE, [(10, 100), (200, 100)], 10)
    lower = polyline_mask(*SIZE, [(190, 112), (290, 112)], 10)  # overlaps upper's end, one tube width below
    assert len(join_pieces(instances([upper, lower]))) == 2
    across = polyline_mask(*SIZE, [(10, 200), (140, 200)], 10)
    down = polyline_mask(*SIZE, [(150, 205), (150, 290)], 10)  # its end faces the side, not the end
    assert len(join_pieces(instances([across, down]))) == 2


def test_pieces_too_far_apart_or_of_very_different_widths_stay_apart():
    tube = polyline_mask(*SIZE, [(10, 150), (290, 150)], 10)
    far = pieces_of(tube, [(120, 160)])  # a gap of 4 tube widths
    assert len(join_pieces(instances(far))) == 2
    thin = polyline_mask(*SIZE, [(10, 150), (140, 150)], 4)
    wide = polyline_mask(*SIZE, [(146, 150), (290, 150)], 16)
    assert len(join_pieces(instances([thin, wide]))) == 2


def test_ends_point_outwards_and_blobs_have_none():
    tube = instances([polyline_mask(*SIZE, [(50, 150), (250, 150)], 9)])[0]
    ends = sorted(piece_ends(tube, 0), key=lambda e: e.point[1])
    assert len(ends) == 2
    assert ends[0].direction[1] == pytest.approx(-1, abs=0.05) and ends[1].direction[1] == pytest.approx(
        1, abs=0.05
    )
    assert (
        8 <= ends[0].width <= 13
    )  # area over skeleton length: about the 9 px drawn, the round caps included
    dot = np.zeros(SIZE, bool)
    dot[10:12, 10:12] = True
    assert piece_ends(instances([dot])[0], 0) == []


def test_post_processing_joins_only_when_switched_on():
    tube = polyline_mask(*SIZE, [(10, 150), (290, 150)], 10)
    pieces = instances(pieces_of(tube, [(140, 146)]), [0.9, 0.8])
    assert len(postprocess(pieces, PostprocessParams(min_area=0))) == 2
    assert len(postprocess(pieces, PostprocessParams(min_area=0, join_pieces=True))) == 1
