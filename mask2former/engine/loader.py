"""Training data loader: an infinite, seeded, rank-sharded stream of mapped samples."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..config import CfgNode
from ..data.catalog import get_dataset_dicts
from ..data.mapper import MyotubeDatasetMapper, collate_samples
from ..data.synthetic_stream import StreamSampler, SyntheticFieldStream, stream_worker_init


class MappedDataset(Dataset):
    def __init__(self, records: list[dict], mapper: MyotubeDatasetMapper):
        self.records = records
        self.mapper = mapper

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        # torch seeds each worker differently; draw the augmentation RNG from it.
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
        return self.mapper(self.records[index], np.random.default_rng(seed))


class InfiniteShuffledSampler(Sampler):
    """detectron2's TrainingSampler: endless reshuffled passes, each rank taking its own share."""

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.seed)
        while True:
            yield from torch.randperm(self.size, generator=g)[self.rank :: self.world_size].tolist()


def training_records(cfg: CfgNode) -> list[dict]:
    """The registered training fields (none when training draws generated fields)."""
    if cfg.SYNTHETIC.ENABLED:
        return []
    records = []
    for name in cfg.DATASETS.TRAIN:
        records.extend(get_dataset_dicts(name, channel=cfg.INPUT.CHANNEL, z_project=cfg.INPUT.Z_PROJECT))
    return records


def build_train_loader(cfg: CfgNode, records: list[dict], batch_per_process: int, seed: int, rank: int, world_size: int,
                       pin_memory: bool, start_iter: int = 0) -> DataLoader:
    """Endless batches: shuffled passes over ``records`` (reshuffled from ``seed``), or, with
    SYNTHETIC.ENABLED, the generated stream from the step ``start_iter`` on."""
    workers = cfg.DATALOADER.NUM_WORKERS
    if cfg.SYNTHETIC.ENABLED:
        dataset = SyntheticFieldStream(cfg, batch_per_process * world_size)
        sampler = StreamSampler(batch_per_process, start_iter, rank, world_size)
    else:
        dataset = MappedDataset(records, MyotubeDatasetMapper(cfg, is_train=True))
        sampler = InfiniteShuffledSampler(len(dataset), seed, rank, world_size)
    return DataLoader(
        dataset,
        batch_size=batch_per_process,
        sampler=sampler,
        num_workers=workers,
        worker_init_fn=stream_worker_init if cfg.SYNTHETIC.ENABLED and workers > 0 else None,
        collate_fn=collate_samples,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    )
