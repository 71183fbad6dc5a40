"""Measurements of drawn shapes with known geometry, nuclei counting and the fusion index."""

import math

import cv2
import numpy as np
import pytest

from mask2former.measure.morphology import analyze_shape, measure_myotube, orientation_degrees
from mask2former.measure.nuclei import assign_nuclei, nuclei_labels_from_mask, segment_nuclei, split_touching
from mask2former.measure.table import measure_instances
from mask2former.structures import CroppedInstances


def rotated_rect(length, width, angle_deg, size=500):
    """Pixels whose centres lie in a length x width rectangle at ``angle_deg`` (counter-clockwise)."""
    yy, xx = np.mgrid[0:size, 0:size]
    c = size / 2 - 0.5
    d = np.array([math.cos(math.radians(angle_deg)), -math.sin(math.radians(angle_deg))])
    along = (xx - c) * d[0] + (yy - c) * d[1]
    across = -(xx - c) * d[1] + (yy - c) * d[0]
    return (np.abs(along) <= length / 2) & (np.abs(across) <= width / 2)


def capsule(p0, p1, width, size):
    """A segment p0-p1 thickened to ``width`` with round ends (x, y points)."""
    yy, xx = np.mgrid[0:size, 0:size]
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    t = np.clip(((xx - p0[0]) * d[0] + (yy - p0[1]) * d[1]) / d.dot(d), 0, 1)
    return (xx - p0[0] - t * d[0]) ** 2 + (yy - p0[1] - t * d[1]) ** 2 <= (width / 2) ** 2


@pytest.mark.parametrize(
    "length,width,angle", [(300, 20, 0), (300, 20, 30), (360, 12, 45), (250, 30, 100), (320, 8, 73)]
)
def test_straight_tube_length_width_orientation(length, width, angle):
    mask = rotated_rect(length, width, angle)
    row = measure_myotube(mask)
    assert row["length_px"] == pytest.approx(length, rel=0.03)
    assert row["total_length_px"] == pytest.approx(length, rel=0.03)
    assert row["width_mean_px"] == pytest.approx(width, rel=0.03)
    # Distance-transform width is quantised to about half a pixel.
    assert row["width_median_px"] == pytest.approx(width, abs=0.8)
    assert row["branch_points"] == 0
    assert row["orientation_deg"] == pytest.approx(angle % 180, abs=1.0)
    assert row["area_px2"] == mask.sum()
    assert row["elongation"] == pytest.approx(length / width, rel=0.06)


@pytest.mark.parametrize("width", [9, 15, 25])
def test_y_branch_has_one_branch_point_and_right_lengths(width):
    arm, size = 150, 520
    centre = (260, 260)
    mask = np.zeros((size, size), bool)
    for angle in (90, 210, 330):
        end = (
            centre[0] + arm * math.cos(math.radians(angle)),
            centre[1] - arm * math.sin(math.radians(angle)),
        )
        mask |= capsule(centre, end, width, size)
    shape = analyze_shape(mask)
    assert shape.branch_points == 1
    # Tip to tip through the junction: two arms plus the two round caps.
    assert shape.length == pytest.approx(2 * arm + width, rel=0.03)
    # All three arms plus three caps.
    assert shape.total_length == pytest.approx(3 * arm + 1.5 * width, rel=0.03)


def test_curved_tube_length_follows_the_curve():
    size, radius, width = 500, 180, 14
    mask = np.zeros((size, size), np.uint8)
    cv2.ellipse(mask, (250, 250), (radius, radius), 0, 0, 180, 1, thickness=width)
    expected = math.pi * radius + width  # half circle plus the two caps
    assert analyze_shape(mask.astype(bool)).length == pytest.approx(expected, rel=0.04)


def test_units_and_position():
    mask = rotated_rect(200, 10, 0, size=300)
    row_px = measure_myotube(mask, y0=1000, x0=2000, score=0.75)
    row_um = measure_myotube(mask, pixel_size=0.5)
    assert row_um["length_um"] == pytest.approx(row_px["length_px"] * 0.5)
    assert row_um["area_um2"] == pytest.approx(row_px["area_px2"] * 0.25)
    assert row_um["width_mean_um"] == pytest.approx(row_px["width_mean_px"] * 0.5)
    ys, xs = np.nonzero(mask)
    assert (row_px["bbox_x0"], row_px["bbox_y0"]) == (2000 + xs.min(), 1000 + ys.min())
    assert (row_px["bbox_x1"], row_px["bbox_y1"]) == (2000 + xs.max() + 1, 1000 + ys.max() + 1)
    assert row_px["score"] == pytest.approx(0.75)


def test_orientation_convention():
    # A line rising to the right on screen is +45 degrees, falling is 135.
    up = np.zeros((100, 100), np.uint8)
    cv2.line(up, (10, 90), (90, 10), 1, 3)
    down = np.zeros((100, 100), np.uint8)
    cv2.line(down, (10, 10), (90, 90), 1, 3)
    assert orientation_degrees(up.astype(bool)) == pytest.approx(45, abs=1)
    assert orientation_degrees(down.astype(bool)) == pytest.approx(135, abs=1)


def test_spurs_from_ragged_outline_are_not_branch_points():
    rng = np.random.default_rng(1)
    mask = rotated_rect(300, 24, 20).astype(np.uint8)
    # Bumps on the outline make skeleton side spurs, which must be pruned.
    ys, xs = np.nonzero(cv2.Canny(mask * 255, 50, 150))
    for k in rng.choice(len(xs), 25, replace=False):
        cv2.circle(mask, (int(xs[k]), int(ys[k])), 3, 1, -1)
    shape = analyze_shape(mask.astype(bool))
    assert shape.branch_points == 0
    assert shape.length == pytest.approx(300, rel=0.04)


# --------------------------------------------------------------------------- nuclei


def discs(shape, centres, radius):
    labels = np.zeros(shape, np.int32)
    for k, (x, y) in enumerate(centres, start=1):
        cv2.circle(labels, (x, y), radius, k, -1)
    return labels


def test_segment_nuclei_counts_and_splits_touching():
    rng = np.random.default_rng(0)
    centres = [(30, 30), (90, 40), (150, 150), (60, 160)]
    touching = [(220, 60), (244, 60)]  # two discs of radius 12, 24 px apart: they touch
    truth = discs((256, 300), centres + touching, 12)
    image = np.where(truth > 0, 180.0, 20.0) + rng.normal(0, 6, truth.shape)
    image = cv2.GaussianBlur(image, (0, 0), 1.0).clip(0, 255).astype(np.uint8)
    labels = segment_nuclei(image, min_distance=7)
    assert labels.max() == len(centres) + len(touching)
    # One-to-one: each true nucleus is mostly covered by its own segmented nucleus.
    best = []
    for k in range(1, truth.max() + 1):
        counts = np.bincount(labels[truth == k], minlength=labels.max() + 1)
        counts[0] = 0
        best.append(int(np.argmax(counts)))
        assert counts.max() >= 0.8 * (truth == k).sum()
    assert len(set(best)) == truth.max()


def test_noise_only_image_has_no_nuclei():
    noise = np.random.default_rng(3).normal(200, 20, (200, 200)).clip(0, 255).astype(np.uint8)
    assert segment_nuclei(noise).max() == 0
    assert segment_nuclei(np.full((50, 50), 7, np.uint8)).max() == 0


def test_binary_nuclei_mask_is_split_and_label_image_kept():
    truth = discs((120, 120), [(40, 60), (63, 60), (95, 20)], 12)
    assert nuclei_labels_from_mask(((truth > 0) * 255).astype(np.uint8)).max() == 3
    kept = nuclei_labels_from_mask(truth * 7)
    assert kept.max() == 3 and np.array_equal(kept > 0, truth > 0)
    assert split_touching(np.zeros((10, 10), bool)).max() == 0


def test_fusion_index_and_nuclei_per_myotube_exact():
    size = (200, 300)
    tube_a = np.zeros(size, bool)
    tube_a[20:60, 10:290] = True  # 3 nuclei -> fused
    tube_b = np.zeros(size, bool)
    tube_b[100:140, 10:150] = True  # 1 nucleus -> not fused
    tube_c = np.zeros(size, bool)
    tube_c[100:140, 180:290] = True  # 1 nucleus inside, 2 touching it that are mostly outside
    centres = [
        (50, 40),
        (150, 40),
        (250, 40),  # in a, central
        (80, 120),  # in b
        (230, 120),  # in c
        (230, 148),  # only its rows 138-139 lie inside c: outside
        (30, 180),
        (270, 180),  # free nuclei
    ]
    labels = discs(size, centres, 10)
    # One nucleus straddling c's edge: 40 % of it inside.
    straddle = np.zeros(size, bool)
    straddle[136:146, 200:210] = True
    labels[straddle] = labels.max() + 1
    inst = CroppedInstances.from_masks(np.stack([tube_a, tube_b, tube_c]))
    result = assign_nuclei(labels, inst)
    assert result.n_nuclei == 9
    assert result.per_myotube.tolist() == [3, 1, 1]
    assert result.nuclei_in_myotubes == 5
    assert result.nuclei_in_fused == 3
    assert result.fusion_index == pytest.approx(3 / 9)


def test_nucleus_goes_to_the_myotube_covering_most_of_it():
    size = (100, 100)
    a = np.zeros(size, bool)
    a[:, 0:52] = True
    b = np.zeros(size, bool)
    b[:, 48:100] = True
    labels = discs(size, [(45, 50)], 8)  # mostly in a, partly in the overlap
    result = assign_nuclei(labels, CroppedInstances.from_masks(np.stack([a, b])))
    assert result.myotube_of.tolist() == [0]
    assert result.per_myotube.tolist() == [1, 0]


def test_central_and_peripheral_nuclei():
    size = (120, 400)
    tube = np.zeros(size, bool)
    tube[30:90, 10:390] = True  # axis at row 59.5, radius 30
    labels = discs(size, [(100, 60), (200, 80), (300, 64)], 6)  # centre, near edge, near centre
    inst = CroppedInstances.from_masks(tube[None])
    result = assign_nuclei(labels, inst)
    assert result.central.tolist() == [True, False, True]
    assert result.central_per_myotube.tolist() == [2]
    assert result.peripheral_per_myotube.tolist() == [1]


def test_image_summary_coverage_and_nuclei_columns():
    size = (100, 200)
    a = np.zeros(size, bool)
    a[10:30, 10:190] = True
    b = np.zeros(size, bool)
    b[0:100, 100:110] = True  # crosses a
    inst = CroppedInstances.from_masks(np.stack([a, b]), [0.9, 0.8])
    labels = discs(size, [(50, 20), (150, 20), (105, 70), (20, 80)], 5)
    m = measure_instances(inst, pixel_size=None, nuclei_labels=labels)
    assert m.summary["myotubes"] == 2
    assert m.summary["coverage"] == pytest.approx((a | b).mean())
    assert m.summary["nuclei"] == 4 and m.summary["nuclei_in_fused"] == 2
    assert m.summary["fusion_index"] == pytest.approx(0.5)
    assert [r["nuclei"] for r in m.rows] == [2, 1]
    assert [r["id"] for r in m.rows] == [1, 2]
    assert m.summary["mean_length_px"] == pytest.approx(np.mean([r["length_px"] for r in m.rows]))
    no_nuclei = measure_instances(inst, pixel_size=0.5)
    assert "fusion_index" not in no_nuclei.summary and "mean_width_um" in no_nuclei.summary


def test_the_fast_distance_and_hole_filling_match_scipy():
    from scipy import ndimage as ndi

    from mask2former.measure.morphology import euclidean_distance
    from mask2former.measure.nuclei import fill_holes

    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = ndi.binary_opening(rng.random((80, 90)) > 0.4)
        assert np.array_equal(fill_holes(mask), ndi.binary_fill_holes(mask))
        np.testing.assert_allclose(euclidean_distance(mask), ndi.distance_transform_edt(mask), atol=1e-4)


def test_the_fast_relabelling_and_smoothing_match_skimage_and_scipy():
    from scipy import ndimage as ndi
    from skimage.segmentation import relabel_sequential

    from mask2former.measure.nuclei import _relabel, gaussian_blur

    rng = np.random.default_rng(1)
    for _ in range(20):
        labels = rng.choice([0, 3, 7, 8, 40, 1000], size=(40, 50)).astype(np.int32)
        assert np.array_equal(_relabel(labels), relabel_sequential(labels)[0])
        image = rng.random((70, 60)).astype(np.float32) * 255
        for sigma in (1.0, 1.5):
            np.testing.assert_allclose(
                gaussian_blur(image, sigma), ndi.gaussian_filter(image, sigma), atol=1e-3
            )


def test_branch_points_and_widths_of_a_skeleton_touching_the_crop_edge():
    # A plus sign filling its whole crop: the skeleton reaches the crop's edge, one branch point.
    mask = np.zeros((41, 41), bool)
    mask[17:24, :] = True
    mask[:, 17:24] = True
    shape = analyze_shape(mask)
    assert shape.branch_points == 1
    assert 5.0 <= shape.width_median <= 8.0
    assert 38 <= shape.length <= 44
