import cv2
import numpy as np
import pytest

from mask2former.data.coco import write_coco_json
from mask2former.data.coco_masks import mask_to_rle
from mask2former.data.coco_records import load_coco_instances, record_masks
from mask2former.data.mapper import MyotubeDatasetMapper, preprocess_image, resize_mask
from mask2former.modeling.outputs import instances_from_outputs
from tests.helpers import make_coco_dataset, tiny_cfg


@pytest.mark.parametrize("width, scale", [(1, 0.73), (2, 0.5), (3, 0.73), (2, 1.6)])
def test_thin_structures_survive_resizing(width, scale):
    mask = np.zeros((400, 400), bool)
    cv2.line(mask.view(np.uint8), (20, 30), (380, 350), 1, thickness=width)
    cv2.line(mask.view(np.uint8), (20, 300), (390, 310), 1, thickness=width)
    hw = (round(400 * scale), round(400 * scale))
    out = resize_mask(mask, hw)
    expected = mask.sum() * scale**2
    assert out.sum() >= 0.6 * expected  # area kept within reason
    assert out.sum() <= 2.2 * expected
    n_before = cv2.connectedComponents(mask.view(np.uint8))[0]
    n_after = cv2.connectedComponents(out.astype(np.uint8))[0]
    assert n_after == n_before  # no tube broken into pieces


def _one_tube_dataset(tmp_path, size=256):
    mask = np.zeros((size, size), bool)
    mask[10:40, 10:120] = True  # a short tube in one corner
    img = (mask * 200 + 20).astype(np.uint8)
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), img)
    write_coco_json(
        tmp_path / "a.json",
        [{"id": 1, "file_name": "a.png", "height": size, "width": size}],
        [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": mask_to_rle(mask), "iscrowd": 0}],
    )
    return load_coco_instances(tmp_path / "a.json", tmp_path / "images")[0]


def test_empty_crop_is_resampled(tmp_path):
    record = _one_tube_dataset(tmp_path)
    # 4x scale jitter of a 256 px image at IMAGE_SIZE 64: a random 64 px crop of a 256 px image
    # holds the tube only ~13% of the time, so without resampling most samples would be empty.
    cfg = tiny_cfg(
        "INPUT.IMAGE_SIZE",
        64,
        "INPUT.MIN_SCALE",
        4.0,
        "INPUT.MAX_SCALE",
        4.0,
        "INPUT.EMPTY_CROP_POLICY",
        "resample",
        "INPUT.EMPTY_CROP_RETRIES",
        60,
    )
    mapper = MyotubeDatasetMapper(cfg)
    rng = np.random.default_rng(0)
    counts = [len(mapper(record, rng)["mask_labels"]) for _ in range(10)]
    assert all(c == 1 for c in counts), counts


def test_empty_crop_background_policy_trains_on_background(tmp_path):
    record = _one_tube_dataset(tmp_path)
    cfg = tiny_cfg(
        "INPUT.IMAGE_SIZE",
        64,
        "INPUT.MIN_SCALE",
        4.0,
        "INPUT.MAX_SCALE",
        4.0,
        "INPUT.EMPTY_CROP_POLICY",
        "background",
    )
    mapper = MyotubeDatasetMapper(cfg)
    rng = np.random.default_rng(0)
    samples = [mapper(record, rng) for _ in range(10)]
    assert any(
        len(s["mask_labels"]) == 0 for s in samples
    )  # most 64 px crops of a 1024 px image miss the tube
    for s in samples:
        assert s["mask_labels"].shape[0] == s["class_labels"].shape[0]
        assert np.isfinite(s["pixel_values"].numpy()).all()


def test_eval_mapping_keeps_all_instances_and_aspect(tmp_path):
    make_coco_dataset(str(tmp_path), {"t.json": 1}, size=100, tubes=(3, 3))
    record = load_coco_instances(tmp_path / "annotations" / "t.json", tmp_path / "images")[0]
    sample = MyotubeDatasetMapper(tiny_cfg(), is_train=False)(record)
    assert sample["pixel_values"].shape == (3, 128, 128)
    assert len(sample["mask_labels"]) == 3
    ratio = sample["mask_labels"].sum().item() / sum(np.count_nonzero(m) for m in record_masks(record))
    assert ratio == pytest.approx((128 / 100) ** 2, rel=0.15)


def test_postprocess_returns_masks_at_the_original_resolution():
    import torch

    cfg = tiny_cfg()
    image = np.zeros((150, 90), np.uint16)
    _, info = preprocess_image(image, cfg)
    assert info.resized_hw == (128, 77) and info.padded_hw == (128, 128)
    q = 3
    logits = torch.full((q, 32, 32), -10.0)
    logits[0, 0:16, 0:8] = 10.0  # top-left region of the resized image
    logits[0, :, 24:] = 10.0  # padding (resized width 77 of 128 px ends at logit column ~19)
    logits[1, 8:24, 0:16] = 10.0  # overlaps query 0
    cls = torch.tensor([[5.0, -5.0], [4.0, -4.0], [-5.0, 5.0]])  # query 2 is "no object"
    inst = instances_from_outputs(cls, logits, info, score_threshold=0.5)
    assert len(inst) == 2
    assert inst.masks.shape == (2, 150, 90)
    assert (inst.masks[0] & inst.masks[1]).any()  # overlaps are kept
    assert inst.scores[0] >= inst.scores[1]
    first = inst.masks[np.argmax([m[:20, :20].sum() for m in inst.masks])]
    assert first[:, 40:].sum() == 0  # the padding part of the query's mask is cut away
    assert first[:55, :30].all()


def test_a_tile_is_scaled_like_its_whole_field():
    from mask2former.data.io import percentile_range, percentile_scale

    rng = np.random.default_rng(0)
    field = rng.normal(100, 5, (200, 200))
    field[:, :100] += 3000  # bright myotubes on the left half
    empty_tile = field[:, 150:]
    own = percentile_scale(empty_tile)
    as_field = percentile_scale(empty_tile, value_range=percentile_range(field))
    assert own.max() == 1.0  # noise stretched to full range
    assert as_field.max() < 0.05  # stays background


def test_tiled_prediction_uses_the_field_intensity_range():
    import contextlib

    from mask2former.config import get_cfg
    from mask2former.inference.image_pipeline import predict_image
    from mask2former.inference.options import PredictOptions
    from mask2former.structures import Instances

    class Recorder:
        def __init__(self):
            self.inside = []
            self.active = False

        @contextlib.contextmanager
        def fixed_intensity_range(self, field):
            self.active = True
            yield
            self.active = False

        def __call__(self, tile):
            self.inside.append(self.active)
            return Instances.empty(*tile.shape[:2])

    cfg = get_cfg()
    cfg.INPUT.IMAGE_SIZE = 64
    options = PredictOptions.from_cfg(cfg)
    recorder = Recorder()
    predict_image(np.zeros((150, 150), np.uint8), recorder, options)
    assert len(recorder.inside) > 1 and all(recorder.inside)
    small = Recorder()
    predict_image(np.zeros((50, 50), np.uint8), small, options)
    assert small.inside == [False]  # a whole image keeps its own range


def test_a_training_crop_of_a_large_field_keeps_image_and_masks_aligned_at_the_chosen_scale(tmp_path):
    # Only the crop window of the field is resized: the image and its masks must still agree
    # pixel for pixel, and the tube must come out at the configured scale (40 px wide -> 20 px).
    size, scale = 600, 0.5
    tube = np.zeros((size, size), bool)
    cv2.line(tube.view(np.uint8), (0, 50), (599, 550), 1, thickness=40)
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "f.png"), (tube * 200 + 20).astype(np.uint8))
    write_coco_json(
        tmp_path / "f.json",
        [{"id": 1, "file_name": "f.png", "height": size, "width": size}],
        [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": mask_to_rle(tube), "iscrowd": 0}],
    )
    record = load_coco_instances(tmp_path / "f.json", tmp_path / "images")[0]
    crop = 64
    jitter = scale * size / crop  # the mapper's scale is (crop / longest side) x jitter
    cfg = tiny_cfg(
        "INPUT.IMAGE_SIZE",
        crop,
        "INPUT.MIN_SCALE",
        jitter,
        "INPUT.MAX_SCALE",
        jitter,
        "INPUT.EMPTY_CROP_RETRIES",
        50,
        "INPUT.PIXEL_MEAN",
        [0.0, 0.0, 0.0],
        "INPUT.PIXEL_STD",
        [1.0, 1.0, 1.0],
    )
    mapper = MyotubeDatasetMapper(cfg)
    rng = np.random.default_rng(3)
    for _ in range(5):
        sample = mapper(record, rng)
        assert sample["pixel_values"].shape == (3, crop, crop)
        bright = sample["pixel_values"][0].numpy() > 0.5
        mask = sample["mask_labels"][0].numpy()
        assert (bright != mask).mean() < 0.02
        # Twice the largest inscribed radius (the crop's edge counts as outside): the tube's width.
        width = 2 * cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5).max()
        assert mask.sum() < 400 or 17 < width < 23
