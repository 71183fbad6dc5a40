"""Record → model inputs: read, normalise, resize, augment, rasterise instance masks.

Masks are built straight from the COCO segmentations with pycocotools and kept at full input
resolution (the HF loss samples points from them), so thin myotubes are not lost to a stride-4 grid.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
import torch
from skimage.morphology import skeletonize

from ..config import CfgNode
from ..structures import ResizeInfo
from .coco_masks import segmentation_to_mask
from .io import read_image, to_model_float

logger = logging.getLogger(__name__)

# The Swin backbone halves the resolution five times (patch 4, then 3 merges): pad to a multiple of 32.
SIZE_DIVISIBILITY = 32


def padded_size(size: int) -> int:
    return int(np.ceil(size / SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY)


def resize_image(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    h, w = image.shape[:2]
    if (h, w) == tuple(hw):
        return image
    interp = cv2.INTER_AREA if hw[0] < h else cv2.INTER_LINEAR
    return cv2.resize(image, (hw[1], hw[0]), interpolation=interp)


def resize_mask(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize a boolean mask without losing thin structures.

    Pixels with area-weighted coverage >= 0.5 are kept (exact for wide tubes). When shrinking,
    the mask's skeleton is also drawn into the output: a 1-2 px myotube would otherwise break into
    fragments, and each fragment would look like a separate instance.
    """
    if mask.shape == tuple(hw):
        return mask
    h, w = mask.shape
    down = hw[0] < h or hw[1] < w
    # uint8 0/255 keeps coverage to 1/255 and resizes several times faster than float32.
    cover = cv2.resize(
        np.multiply(mask, 255, dtype=np.uint8),
        (hw[1], hw[0]),
        interpolation=cv2.INTER_AREA if down else cv2.INTER_LINEAR,
    )
    out = cover >= 128
    if down and mask.any():
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        y0, x0 = rows[0], cols[0]
        crop = mask[y0 : rows[-1] + 1, x0 : cols[-1] + 1]
        sy, sx = np.nonzero(skeletonize(crop))
        # Consecutive skeleton pixels land on the same or adjacent output pixels when shrinking.
        oy = np.minimum(((sy + y0 + 0.5) * hw[0] / h).astype(np.int64), hw[0] - 1)
        ox = np.minimum(((sx + x0 + 0.5) * hw[1] / w).astype(np.int64), hw[1] - 1)
        out[oy, ox] = True
    return out


def normalize(image01: np.ndarray, cfg: CfgNode) -> np.ndarray:
    mean = np.asarray(cfg.INPUT.PIXEL_MEAN, np.float32)
    std = np.asarray(cfg.INPUT.PIXEL_STD, np.float32)
    return (image01 - mean) / std


def preprocess_image(
    image: np.ndarray, cfg: CfgNode, value_range: np.ndarray | None = None, scale: float | None = None
) -> tuple[torch.Tensor, ResizeInfo]:
    """Inference path: raw image → normalised, zero-padded ``(3, S, S)`` tensor.

    ``scale`` None resizes the longest side to IMAGE_SIZE, as training does with each field of its
    dataset (evaluation); a number resizes by that factor (prediction at the model's recorded
    pixel scale). S is the larger resized side rounded up to a multiple of 32. ``value_range``:
    intensity range of the whole field when ``image`` is one tile of it.
    """
    size = cfg.INPUT.IMAGE_SIZE
    h, w = image.shape[:2]
    if scale is None:
        scale = size / max(h, w)
    rh, rw = max(1, round(h * scale)), max(1, round(w * scale))
    img = to_model_float(image, cfg.INPUT.PERCENTILE_LOW, cfg.INPUT.PERCENTILE_HIGH, value_range)
    img = normalize(resize_image(img, (rh, rw)), cfg)
    side = padded_size(max(rh, rw))
    padded = np.zeros((side, side, 3), np.float32)
    padded[:rh, :rw] = img
    info = ResizeInfo((h, w), (rh, rw), (side, side), scale)
    return torch.from_numpy(padded.transpose(2, 0, 1).copy()), info


class MyotubeDatasetMapper:
    """Callable turning one registered record into a training (or evaluation) sample.

    Training: scale jitter in [MIN_SCALE, MAX_SCALE] around "longest side = IMAGE_SIZE", a random
    IMAGE_SIZE crop, flips and 90° rotations. Instances smaller than MIN_INSTANCE_AREA after that
    are dropped. A crop that lost every instance is handled by INPUT.EMPTY_CROP_POLICY; an image
    annotated with no instance at all is used as pure background on purpose (it teaches the model
    what debris and empty wells look like).
    """

    def __init__(self, cfg: CfgNode, is_train: bool = True):
        self.cfg = cfg
        self.is_train = is_train and cfg.INPUT.AUGMENT
        self.size = cfg.INPUT.IMAGE_SIZE

    def __call__(self, record: dict, rng: np.random.Generator | None = None) -> dict:
        rng = rng if rng is not None else np.random.default_rng()
        raw = read_image(
            record["file_name"], channel=self.cfg.INPUT.CHANNEL, z_project=self.cfg.INPUT.Z_PROJECT
        )
        image01 = to_model_float(raw, self.cfg.INPUT.PERCENTILE_LOW, self.cfg.INPUT.PERCENTILE_HIGH)
        h, w = image01.shape[:2]
        anns = [a for a in record.get("annotations", []) if not a.get("iscrowd")]
        masks = (
            np.stack([segmentation_to_mask(a["segmentation"], h, w) for a in anns])
            if anns
            else np.zeros((0, h, w), bool)
        )
        classes = np.asarray([a["category_id"] for a in anns], np.int64)

        tries = 1 + (
            self.cfg.INPUT.EMPTY_CROP_RETRIES
            if self.is_train and self.cfg.INPUT.EMPTY_CROP_POLICY == "resample"
            else 0
        )
        for _ in range(tries):
            img, kept_masks, kept_classes = self._transform(image01, masks, classes, rng)
            if len(kept_masks) or not len(masks):
                break
        sample = self._to_tensors(img, kept_masks, kept_classes)
        sample["record"] = {k: record[k] for k in ("file_name", "height", "width", "image_id") if k in record}
        return sample

    def _transform(self, image01, masks, classes, rng):
        h, w = image01.shape[:2]
        base = self.size / max(h, w)
        scale = base * (
            rng.uniform(self.cfg.INPUT.MIN_SCALE, self.cfg.INPUT.MAX_SCALE) if self.is_train else 1.0
        )
        # The crop window is chosen in the original image and only that part is resized: a crop of
        # a large field costs the crop's pixels, not the field's.
        oy0, oy1 = self._crop_span(h, scale, rng)
        ox0, ox1 = self._crop_span(w, scale, rng)
        th, tw = max(1, round((oy1 - oy0) * scale)), max(1, round((ox1 - ox0) * scale))
        img = resize_image(image01[oy0:oy1, ox0:ox1], (th, tw))[: self.size, : self.size]
        visible = masks[:, oy0:oy1, ox0:ox1].any(axis=(1, 2)) if len(masks) else np.zeros(0, bool)
        out_masks = [
            resize_mask(m[oy0:oy1, ox0:ox1], (th, tw))[: self.size, : self.size] for m in masks[visible]
        ]
        out_masks = np.stack(out_masks) if out_masks else np.zeros((0,) + img.shape[:2], bool)
        if self.is_train:
            if self.cfg.INPUT.HFLIP and rng.random() < 0.5:
                img, out_masks = img[:, ::-1], out_masks[:, :, ::-1]
            if self.cfg.INPUT.VFLIP and rng.random() < 0.5:
                img, out_masks = img[::-1], out_masks[:, ::-1]
            if self.cfg.INPUT.ROTATE_90:
                k = int(rng.integers(0, 4))
                img, out_masks = np.rot90(img, k, axes=(0, 1)), np.rot90(out_masks, k, axes=(1, 2))
        keep = (
            out_masks.reshape(len(out_masks), -1).sum(1) >= self.cfg.INPUT.MIN_INSTANCE_AREA
            if len(out_masks)
            else np.zeros(0, bool)
        )
        return np.ascontiguousarray(img), np.ascontiguousarray(out_masks[keep]), classes[visible][keep]

    def _crop_span(self, length: int, scale: float, rng: np.random.Generator) -> tuple[int, int]:
        """Original-pixel range along one axis whose resized extent covers one IMAGE_SIZE crop."""
        if not self.is_train or length * scale <= self.size:
            return 0, length
        # extent * scale >= size, so the resized window (rounded) is never short of one crop.
        extent = min(length, int(np.ceil(self.size / scale)))
        start = int(rng.integers(0, length - extent + 1))
        return start, start + extent

    def _to_tensors(self, image01, masks, classes) -> dict:
        return training_sample(image01, masks, classes, self.cfg, padded_size(self.size))


def training_sample(
    image01: np.ndarray, masks: np.ndarray, classes: np.ndarray, cfg: CfgNode, side: int
) -> dict:
    """Model inputs of one training image: normalised pixels and masks zero-padded to ``side``."""
    h, w = image01.shape[:2]
    pixels = np.zeros((side, side, 3), np.float32)
    pixels[:h, :w] = normalize(image01, cfg)
    # Masks travel as bool (4x less to copy between worker processes); the loss makes them float.
    full_masks = np.zeros((len(masks), side, side), bool)
    full_masks[:, :h, :w] = masks
    # No pixel_mask: HF's Mask2Former ignores it (transformers 5.x), and at 1500 px it would be
    # another 18 MB per image to copy from the workers and to the GPU for nothing.
    return {
        "pixel_values": torch.from_numpy(pixels.transpose(2, 0, 1).copy()),
        "mask_labels": torch.from_numpy(full_masks),
        "class_labels": torch.from_numpy(classes.astype(np.int64)),
    }


def collate_samples(samples: list[dict]) -> dict:
    """Stack images; keep per-image mask and class tensors as lists (instance counts differ)."""
    return {
        "pixel_values": torch.stack([s["pixel_values"] for s in samples]),
        "mask_labels": [s["mask_labels"] for s in samples],
        "class_labels": [s["class_labels"] for s in samples],
        "records": [s.get("record") for s in samples],
    }
