"""An endless, seeded stream of generated training fields with exact instance labels.

The base model is pretrained on fields drawn from :mod:`mask2former.data.synthetic` as it trains,
instead of a fixed pool: a long run never sees the same field twice, so it cannot overfit its
data. Field ``k`` of a stream depends only on ``(SYNTHETIC.SEED, k)``, so a run resumed at
iteration ``i`` continues with the fields it would have drawn next, on any number of processes.
Drawing a 256 px field costs 15-20 ms, far less than a training step (``bench/synthetic_stream.py``),
so the fields are drawn in the loader itself rather than pre-drawn to disk.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..config import CfgNode
from ..errors import ConfigError
from .io import to_model_float
from .mapper import padded_size, training_sample
from .synthetic import GENERATOR_PRESETS, generate_field

# The generator's reference field: a 2048 px microscope field drawn at 1500 px.
REFERENCE_PIXELS_PER_ORIGINAL = 1500.0 / 2048.0


def stream_input_scale_factor(cfg: CfgNode) -> float:
    """Model pixels per pixel of a 2048 px microscope field (the factor predict.py resizes by)."""
    low, high = cfg.SYNTHETIC.SCALE_JITTER
    return float(cfg.SYNTHETIC.PIXEL_SCALE) * math.sqrt(low * high) * REFERENCE_PIXELS_PER_ORIGINAL


class SyntheticFieldStream(Dataset):
    """Index ``k`` → training sample of field ``k``: the generator's image and exact masks,
    prepared as :class:`MyotubeDatasetMapper` prepares a registered record.

    ``batch_span``: samples per optimisation step over all processes; all samples of one step
    share one field size (a batch is one tensor), drawn from SYNTHETIC.FIELD_SIZES.
    """

    def __init__(self, cfg: CfgNode, batch_span: int):
        node = cfg.SYNTHETIC
        if node.PRESET not in GENERATOR_PRESETS:
            raise ConfigError(
                None, f"SYNTHETIC.PRESET must be one of {', '.join(GENERATOR_PRESETS)}, got {node.PRESET!r}"
            )
        self.cfg = cfg
        self.params = GENERATOR_PRESETS[node.PRESET]
        self.batch_span = max(1, int(batch_span))
        weights = np.asarray(node.FIELD_SIZE_WEIGHTS, float)
        self.sizes = [int(s) for s in node.FIELD_SIZES]
        self.size_p = weights / weights.sum()

    def __len__(self) -> int:  # a sampler, not the length, ends the stream
        return 2**62

    def field_size(self, index: int) -> int:
        step = index // self.batch_span
        rng = np.random.default_rng([int(self.cfg.SYNTHETIC.SEED), 1, step])
        return self.sizes[int(rng.choice(len(self.sizes), p=self.size_p))]

    def draw(self, index: int):
        """The generated field of stream index ``index`` (image and exact masks)."""
        node = self.cfg.SYNTHETIC
        rng = np.random.default_rng([int(node.SEED), 0, int(index)])
        low, high = node.SCALE_JITTER
        scale = float(node.PIXEL_SCALE) * math.exp(rng.uniform(math.log(low), math.log(high)))
        density = float(rng.uniform(*node.DENSITY))
        return generate_field(
            self.field_size(index),
            rng=rng,
            density=density,
            bit_depth=int(node.BIT_DEPTH),
            pixel_scale=scale,
            params=self.params,
        )

    def __getitem__(self, index: int) -> dict:
        field = self.draw(index)
        cfg = self.cfg
        image01 = to_model_float(field.image[..., None], cfg.INPUT.PERCENTILE_LOW, cfg.INPUT.PERCENTILE_HIGH)
        masks = field.masks
        keep = (
            masks.reshape(len(masks), -1).sum(1) >= cfg.INPUT.MIN_INSTANCE_AREA
            if len(masks)
            else np.zeros(0, bool)
        )
        masks = masks[keep]
        sample = training_sample(
            image01, masks, np.zeros(len(masks), np.int64), cfg, padded_size(image01.shape[0])
        )
        sample["record"] = {
            "file_name": f"synthetic:{int(cfg.SYNTHETIC.SEED)}:{int(index)}",
            "image_id": int(index),
        }
        return sample


class StreamSampler(Sampler):
    """Consecutive stream indices from ``start_step``: step ``b`` of process ``rank`` takes indices
    ``(b * world + rank) * per_process ... + per_process - 1``; no index is ever drawn twice."""

    def __init__(self, per_process: int, start_step: int = 0, rank: int = 0, world_size: int = 1):
        self.per_process, self.start_step, self.rank, self.world_size = (
            per_process,
            start_step,
            rank,
            world_size,
        )

    def __iter__(self) -> Iterator[int]:
        step = self.start_step
        while True:
            first = (step * self.world_size + self.rank) * self.per_process
            yield from range(first, first + self.per_process)
            step += 1


def stream_worker_init(worker_id: int) -> None:
    """Loader workers draw fields with one thread each: the training process owns the cores."""
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


__all__ = ["SyntheticFieldStream", "StreamSampler", "stream_input_scale_factor", "stream_worker_init"]
