"""Tiled prediction: the grid, and stitching instances cut by tile borders back into one."""

import numpy as np
import pytest

from mask2former.inference.tiling import predict_tiled, stitch_tiles, tile_grid
from mask2former.structures import CroppedInstances, CroppedMask, Instances, label_image
from tests.helpers import polyline_mask as tube


def coordinate_image(height, width):
    """Each pixel holds its own flat index, so a tile knows where it came from."""
    return np.arange(height * width, dtype=np.int64).reshape(height, width)


class GroundTruthPredictor:
    """Stand-in for the model: returns the true masks cropped to the tile it is given."""

    def __init__(self, masks, width, score=0.9):
        self.masks = np.asarray(masks, bool)
        self.width = width
        self.score = score
        self.calls = []

    def __call__(self, tile):
        y0, x0 = divmod(int(tile[0, 0]), self.width)
        h, w = tile.shape[:2]
        self.calls.append((y0, x0, h, w))
        crops = self.masks[:, y0 : y0 + h, x0 : x0 + w]
        keep = crops.reshape(len(crops), -1).any(1)
        return Instances(crops[keep], np.full(int(keep.sum()), self.score, np.float32))


def predict(masks, size, tile=128, overlap=0.25):
    fake = GroundTruthPredictor(masks, size[1])
    out = predict_tiled(coordinate_image(*size), fake, tile, overlap, 0.5)
    return out, fake


def assert_same_masks(result: CroppedInstances, truth):
    """Every true mask is one predicted instance, pixel for pixel (in any order)."""
    got = [m.to_full(result.height, result.width) for m in result]
    assert len(got) == len(truth)
    for t in truth:
        matches = [g for g in got if np.array_equal(g, t)]
        assert len(matches) == 1


# --------------------------------------------------------------------------- grid


@pytest.mark.parametrize(
    "height,width,tile,overlap", [(600, 450, 128, 0.25), (1000, 1000, 256, 0.2), (300, 129, 128, 0.0)]
)
def test_grid_covers_image_with_requested_overlap(height, width, tile, overlap):
    tiles = tile_grid(height, width, tile, overlap)
    covered = np.zeros((height, width), int)
    for t in tiles:
        assert (t.y1 - t.y0, t.x1 - t.x0) == (min(tile, height), min(tile, width))
        assert 0 <= t.y0 and t.y1 <= height and 0 <= t.x0 and t.x1 <= width
        covered[t.y0 : t.y1, t.x0 : t.x1] += 1
    assert covered.min() >= 1
    ys = sorted({t.y0 for t in tiles})
    for a, b in zip(ys, ys[1:]):
        assert (a + tile) - b >= int(overlap * tile) - 1  # neighbours share at least the overlap


def test_small_image_is_one_tile_predicted_whole():
    masks = [tube(100, 90, [(5, 5), (80, 90)], 7)]
    result, fake = predict(masks, (100, 90), tile=128)
    assert fake.calls == [(0, 0, 100, 90)]
    assert_same_masks(result, masks)


def test_rejects_bad_tiling_and_mismatched_predictor():
    with pytest.raises(ValueError):
        tile_grid(100, 100, 64, 1.0)

    def wrong_size(tile):
        return Instances.empty(tile.shape[0] + 1, tile.shape[1])

    with pytest.raises(ValueError, match="size"):
        predict_tiled(coordinate_image(300, 300), wrong_size, 128, 0.2, 0.5)


# --------------------------------------------------------------------------- stitching


def test_tube_spanning_many_tiles_becomes_one_instance():
    size = (600, 700)
    # A long wavy tube crossing a 5 x 6 grid of tiles, in and out of overlap zones.
    xs = np.linspace(10, 690, 60)
    ys = 300 + 220 * np.sin(xs / 110.0)
    truth = [tube(*size, np.column_stack([xs, ys]), 15)]
    result, fake = predict(truth, size)
    assert len(fake.calls) > 20
    assert_same_masks(result, truth)
    assert result[0].score == pytest.approx(0.9)


def test_two_separate_tubes_stay_two():
    size = (500, 500)
    truth = [tube(*size, [(10, 40), (490, 150)], 11), tube(*size, [(10, 300), (480, 460)], 13)]
    result, _ = predict(truth, size)
    assert_same_masks(result, truth)


def test_two_crossing_tubes_stay_two():
    size = (512, 512)
    # Tiles of 128 at overlap 0.25 start at 0, 96, 192, ...: the crossing at (208, 208) lies in
    # the corner region seen by four tiles.
    truth = [tube(*size, [(5, 5), (505, 505)], 13), tube(*size, [(5, 411), (411, 5)], 13)]
    assert {t.y0 for t in tile_grid(*size, 128, 0.25)} >= {192, 96}
    assert (truth[0] & truth[1])[192:224, 192:224].sum() > 100
    result, _ = predict(truth, size)
    assert_same_masks(result, truth)


def test_parallel_touching_tubes_stay_two():
    size = (400, 400)
    a = np.zeros(size, bool)
    b = np.zeros(size, bool)
    a[100:112, 5:395] = True
    b[112:124, 5:395] = True  # shares a border with a, no pixel
    result, _ = predict([a, b], size)
    assert_same_masks(result, [a, b])


def test_duplicate_inside_overlap_is_kept_once():
    size = (300, 300)
    # Small blob lying inside the overlap of neighbouring tiles: every tile reports it whole.
    blob = np.zeros(size, bool)
    blob[100:120, 100:125] = True
    result, fake = predict([blob], size, tile=128, overlap=0.5)
    seen = sum(
        1 for (y0, x0, h, w) in fake.calls if y0 <= 100 and y0 + h >= 120 and x0 <= 100 and x0 + w >= 125
    )
    assert seen >= 2
    assert_same_masks(result, [blob])


def test_fragments_from_the_same_tile_are_not_stitched():
    tile = tile_grid(100, 100, 100, 0.2)[0]
    a = CroppedMask.from_mask(np.pad(np.ones((10, 10), bool), ((0, 90), (0, 90))), 0.9)
    b = CroppedMask.from_mask(np.pad(np.ones((10, 10), bool), ((0, 90), (0, 90))), 0.8)
    assert len(stitch_tiles([(tile, [a, b])], 0.5)) == 2


def test_many_tile_stitching_keeps_memory_in_crops():
    size = (1024, 1024)
    truth = [tube(*size, [(10, 10 + 90 * k), (1010, 100 + 90 * k)], 9) for k in range(8)]
    result, _ = predict(truth, size, tile=256, overlap=0.2)
    assert_same_masks(result, truth)
    # Crops, not full-size masks: each instance keeps only its bounding box.
    assert sum(m.mask.size for m in result) < len(truth) * size[0] * size[1] / 2


def test_label_image_resolves_overlaps_by_score():
    a = np.zeros((20, 20), bool)
    b = np.zeros((20, 20), bool)
    a[5:10, :] = True
    b[:, 5:10] = True
    inst = CroppedInstances.from_masks(np.stack([a, b]), [0.4, 0.8])
    labels = label_image(inst)
    assert labels.dtype == np.uint16
    assert labels[7, 7] == 2  # the crossing goes to the higher score
    assert labels[7, 15] == 1 and labels[15, 7] == 2 and labels[0, 0] == 0


class MergingPredictor(GroundTruthPredictor):
    """Like the ground truth, but the first tile reports every tube it sees as one instance
    (a model joining two crossing tubes)."""

    def __call__(self, tile):
        out = super().__call__(tile)
        if len(self.calls) == 1 and len(out) > 1:
            return Instances(out.masks.any(0)[None], np.array([0.95], np.float32))
        return out


def test_one_tile_joining_two_tubes_does_not_chain_them_into_one_instance():
    size = (300, 300)
    # Two tubes crossing inside the first tile, both running on into the other tiles.
    truth = [tube(*size, [(5, 5), (295, 295)], 13), tube(*size, [(5, 120), (295, 30)], 13)]
    fake = MergingPredictor(truth, size[1])
    result = predict_tiled(coordinate_image(*size), fake, 128, 0.25, 0.5)

    # The joined instance may absorb a continuation of each tube in the neighbouring tiles, but the
    # tiles that saw the two tubes apart keep them apart: never one instance for everything.
    def covers(m, t):
        return (m.to_full(*size) & t).sum() >= 0.9 * t.sum()

    assert len(result) >= 2
    assert not any(all(covers(m, t) for t in truth) for m in result)


# --------------------------------------------------------------------------- whole tubes on generated fields


def tiles_touched(mask, tiles) -> int:
    return sum(bool(mask[t.y0 : t.y1, t.x0 : t.x1].any()) for t in tiles)


def test_tubes_of_a_generated_field_crossing_four_tiles_or_more_come_back_one_instance_each():
    from mask2former.data.synthetic import REALISTIC, generate_field

    field = generate_field(512, seed=11, density="medium", pixel_scale=0.5, params=REALISTIC)
    size = field.image.shape[:2]
    tiles = tile_grid(*size, 128, 0.25)
    long = [m for m in field.masks if tiles_touched(m, tiles) >= 4]
    assert len(long) >= 3
    result, _ = predict(field.masks, size)
    got = [m.to_full(*size) for m in result]
    for t in long:
        assert sum(np.array_equal(g, t) for g in got) == 1


def test_two_tubes_crossing_on_a_tile_border_stay_two():
    size = (384, 384)
    tiles = tile_grid(*size, 128, 0.25)
    border = sorted({t.x1 for t in tiles})[0]  # the right edge of the first column of tiles
    truth = [
        tube(*size, [(border - 150, 20), (border + 150, 360)], 13),
        tube(*size, [(border + 150, 20), (border - 150, 360)], 13),
    ]
    crossing = truth[0] & truth[1]
    ys, xs = np.nonzero(crossing)
    assert abs(xs.mean() - border) < 3  # the crossing lies on the border itself
    result, _ = predict(truth, size)
    assert_same_masks(result, truth)


class CuttingPredictor(GroundTruthPredictor):
    """Like the ground truth, but every tube is cut in two across the middle column of each tile
    (a model losing a tube inside a tile, away from any tile border)."""

    def __call__(self, tile):
        out = super().__call__(tile)
        h, w = tile.shape[:2]
        pieces, scores = [], []
        for mask, score in zip(out.masks, out.scores):
            left, right = mask.copy(), mask.copy()
            left[:, w // 2 - 2 :] = False
            right[:, : w // 2 + 2] = False
            for piece in (left, right):
                if piece.sum() > 30:
                    pieces.append(piece)
                    scores.append(score)
        return Instances(np.array(pieces, bool).reshape(-1, h, w), np.array(scores, np.float32))


def test_pieces_cut_inside_tiles_are_joined_and_crossing_tubes_stay_apart():
    from mask2former.inference.filters import PostprocessParams, postprocess

    size = (300, 640)
    # The first tube is cut in every tile; the second crosses it and runs down between the tiles'
    # middle columns (235 and 320), so no cut runs along it.
    truth = [tube(*size, [(5, 150), (635, 150)], 11), tube(*size, [(275, 5), (285, 295)], 11)]
    fake = CuttingPredictor(truth, size[1])
    stitched = predict_tiled(coordinate_image(*size), fake, 128, 0.25, 0.5)
    assert len(stitched) > 2  # the cuts inside tiles leave pieces that stitching cannot join
    joined = postprocess(stitched, PostprocessParams(min_area=0, join_pieces=True, duplicate_iou=0.0))
    got = [m.to_full(*size) for m in joined]
    assert len(got) == 2
    for t in truth:
        best = max(got, key=lambda g: (g & t).sum())
        assert (best & t).sum() >= 0.9 * t.sum() and (best & ~t).sum() <= 0.1 * t.sum()
