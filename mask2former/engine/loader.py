"""Training data loader: an infinite, seeded, rank-sharded stream of mapped samples.

Three sources: the registered fields (shuffled passes, or each dataset its share of the steps with
DATASETS.TRAIN_SHARES), the generated stream (SYNTHETIC.ENABLED), or the registered fields with a
share of the steps replaying the generated stream (SYNTHETIC.REPLAY). A step's batch always comes
from one source: its samples form one tensor.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..config import CfgNode
from ..data.catalog import get_dataset_dicts
from ..data.mapper import MyotubeDatasetMapper, collate_samples
from ..data.synthetic_stream import StreamSampler, SyntheticFieldStream, stream_worker_init
from ..errors import DatasetError


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


class SharedSampler(Sampler):
    """Per step, ``per_process`` records of one dataset, dataset ``i`` with probability
    ``shares[i]``, decided by ``(seed, step)`` alone so that every rank and a resumed run agree.
    Within a dataset: endless reshuffled passes of its records (``groups[i]``, indices into the
    concatenated records), each rank shuffling its own, since a dataset of 5 manual fields can have
    fewer records than there are ranks."""

    def __init__(
        self,
        groups: list[list[int]],
        shares: list[float],
        per_process: int,
        seed: int,
        start_step: int = 0,
        rank: int = 0,
    ):
        total = float(sum(shares))
        self.groups, self.shares = groups, [v / total for v in shares]
        self.per_process, self.seed, self.start_step, self.rank = per_process, seed, start_step, rank

    def source(self, step: int) -> int:
        return int(np.random.default_rng([self.seed, 3, step]).choice(len(self.shares), p=self.shares))

    def _passes(self, i: int):
        rng = np.random.default_rng([self.seed, 4, self.rank, i])
        while True:
            yield from (self.groups[i][k] for k in rng.permutation(len(self.groups[i])))

    def __iter__(self):
        passes = [self._passes(i) for i in range(len(self.groups))]
        step = self.start_step
        while True:
            chosen = passes[self.source(step)]
            for _ in range(self.per_process):
                yield next(chosen)
            step += 1


FIELDS, STREAM = "fields", "stream"


class ReplayDataset(Dataset):
    """Keys ``(FIELDS, i)``: registered record ``i``; ``(STREAM, k)``: generated field ``k``."""

    def __init__(self, fields: MappedDataset, stream: SyntheticFieldStream):
        self.fields, self.stream = fields, stream

    def __len__(self) -> int:
        return len(self.fields)

    def __getitem__(self, key: tuple[str, int]) -> dict:
        source, index = key
        return (self.stream if source == STREAM else self.fields)[index]


class ReplaySampler(Sampler):
    """Per step, ``per_process`` keys of one source: the generated stream with probability
    ``fraction``, decided by ``(seed, step)`` alone so that every rank and a resumed run agree;
    otherwise the next records of the shuffled passes. Stream indices follow the step as in
    :class:`StreamSampler`, so no generated field is drawn twice."""

    def __init__(
        self,
        records: Sampler,
        fraction: float,
        per_process: int,
        seed: int,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.records, self.fraction, self.per_process, self.seed = records, fraction, per_process, seed
        self.start_step, self.rank, self.world_size = start_step, rank, world_size

    def replays(self, step: int) -> bool:
        return bool(np.random.default_rng([self.seed, 2, step]).random() < self.fraction)

    def __iter__(self):
        order = iter(self.records)
        step = self.start_step
        while True:
            if self.replays(step):
                first = (step * self.world_size + self.rank) * self.per_process
                yield from ((STREAM, k) for k in range(first, first + self.per_process))
            else:
                for _ in range(self.per_process):
                    yield (FIELDS, next(order))
            step += 1


# Which DATASETS.TRAIN entry a training record came from (its index).
SOURCE_KEY = "train_source"


def training_records(cfg: CfgNode) -> list[dict]:
    """The registered training fields, each tagged with its dataset's index (none when training
    draws generated fields)."""
    if cfg.SYNTHETIC.ENABLED:
        return []
    records = []
    for source, name in enumerate(cfg.DATASETS.TRAIN):
        loaded = get_dataset_dicts(name, channel=cfg.INPUT.CHANNEL, z_project=cfg.INPUT.Z_PROJECT)
        records.extend({**record, SOURCE_KEY: source} for record in loaded)
    return records


def records_sampler(
    cfg: CfgNode,
    records: list[dict],
    batch_per_process: int,
    seed: int,
    start_iter: int,
    rank: int,
    world_size: int,
) -> Sampler:
    """Shuffled passes over all ``records``, or with DATASETS.TRAIN_SHARES each dataset its share."""
    shares = [float(v) for v in cfg.DATASETS.TRAIN_SHARES]
    if not shares:
        return InfiniteShuffledSampler(len(records), seed, rank, world_size)
    groups: list[list[int]] = [[] for _ in shares]
    for index, record in enumerate(records):
        groups[record.get(SOURCE_KEY, 0)].append(index)
    for name, group, share in zip(cfg.DATASETS.TRAIN, groups, shares):
        if share > 0 and not group:
            raise DatasetError(
                name, "DATASETS.TRAIN_SHARES gives it a share of the steps, but it has no images"
            )
    return SharedSampler(groups, shares, batch_per_process, seed, start_iter, rank)


def build_train_loader(
    cfg: CfgNode,
    records: list[dict],
    batch_per_process: int,
    seed: int,
    rank: int,
    world_size: int,
    pin_memory: bool,
    start_iter: int = 0,
) -> DataLoader:
    """Endless batches: shuffled passes over ``records`` (reshuffled from ``seed``), or, with
    SYNTHETIC.ENABLED, the generated stream from the step ``start_iter`` on; with SYNTHETIC.REPLAY,
    the records with that share of the steps from the stream."""
    workers = cfg.DATALOADER.NUM_WORKERS
    generated = cfg.SYNTHETIC.ENABLED or cfg.SYNTHETIC.REPLAY > 0
    if cfg.SYNTHETIC.ENABLED:
        dataset = SyntheticFieldStream(cfg, batch_per_process * world_size)
        sampler = StreamSampler(batch_per_process, start_iter, rank, world_size)
    else:
        dataset = MappedDataset(records, MyotubeDatasetMapper(cfg, is_train=True))
        sampler = records_sampler(cfg, records, batch_per_process, seed, start_iter, rank, world_size)
        if cfg.SYNTHETIC.REPLAY > 0:
            dataset = ReplayDataset(dataset, SyntheticFieldStream(cfg, batch_per_process * world_size))
            sampler = ReplaySampler(
                sampler,
                float(cfg.SYNTHETIC.REPLAY),
                batch_per_process,
                int(cfg.SYNTHETIC.SEED),
                start_iter,
                rank,
                world_size,
            )
    return DataLoader(
        dataset,
        batch_size=batch_per_process,
        sampler=sampler,
        num_workers=workers,
        worker_init_fn=stream_worker_init if generated and workers > 0 else None,
        collate_fn=collate_samples,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    )
