"""Training data: the generated-field stream the base model pretrains on (seeded, never repeating,
resumable), replay of it during fine-tuning, and each training dataset its share of the steps."""

import itertools

import numpy as np
import pytest
import torch

from mask2former.config import load_config
from mask2former.data.catalog import register_two_stage_datasets
from mask2former.data.synthetic_stream import StreamSampler, SyntheticFieldStream, stream_input_scale_factor
from mask2former.engine.loader import (
    FIELDS,
    SOURCE_KEY,
    InfiniteShuffledSampler,
    ReplaySampler,
    SharedSampler,
    build_train_loader,
    training_records,
)
from mask2former.engine.trainer import train
from mask2former.errors import ConfigError
from tests.helpers import REPO_ROOT, make_unified_dataset, tiny_cfg

STREAM = (
    "SYNTHETIC.ENABLED",
    True,
    "DATASETS.TRAIN",
    "()",
    "DATASETS.TEST",
    "()",
    "DATALOADER.NUM_WORKERS",
    0,
)


def _stream_cfg(*opts):
    return tiny_cfg(
        *STREAM, "SYNTHETIC.FIELD_SIZES", "(64, 96)", "SYNTHETIC.FIELD_SIZE_WEIGHTS", "(0.5, 0.5)", *opts
    )


def test_a_stream_index_always_gives_the_same_field_and_others_differ():
    stream = SyntheticFieldStream(_stream_cfg(), batch_span=2)
    a, b, c = stream[5], stream[5], stream[6]
    assert torch.equal(a["pixel_values"], b["pixel_values"]) and torch.equal(
        a["mask_labels"], b["mask_labels"]
    )
    assert not torch.equal(a["pixel_values"][:, :64, :64], c["pixel_values"][:, :64, :64])
    other_seed = SyntheticFieldStream(_stream_cfg("SYNTHETIC.SEED", 1), batch_span=2).draw(5)
    assert not np.array_equal(other_seed.image, stream.draw(5).image)


def test_samples_carry_the_generators_exact_masks():
    cfg = _stream_cfg("INPUT.MIN_INSTANCE_AREA", 1)
    stream = SyntheticFieldStream(cfg, batch_span=1)
    for index in range(4):
        field = stream.draw(index)
        sample = stream[index]
        side = field.image.shape[0]
        masks = sample["mask_labels"][:, :side, :side].numpy()
        kept = field.masks[field.masks.reshape(len(field.masks), -1).sum(1) >= 1]
        assert np.array_equal(masks, kept)
        assert not sample["mask_labels"][:, side:, :].any()  # padding holds no instance
        assert sample["class_labels"].tolist() == [0] * len(kept)


def test_every_sample_of_a_step_has_one_size_drawn_from_the_configured_sides():
    stream = SyntheticFieldStream(_stream_cfg(), batch_span=4)
    sizes = [stream.field_size(i) for i in range(64)]
    for step in range(16):
        assert len(set(sizes[4 * step : 4 * step + 4])) == 1
    assert set(sizes) == {64, 96}


def test_the_sampler_never_draws_an_index_twice_across_processes_and_resumes_in_place():
    per, world = 3, 2
    taken = [
        list(itertools.islice(iter(StreamSampler(per, 0, rank, world)), per * 10)) for rank in range(world)
    ]
    everything = taken[0] + taken[1]
    assert len(set(everything)) == len(everything) == per * world * 10
    assert sorted(everything) == list(range(per * world * 10))
    # Resuming at step 4 draws exactly what the uninterrupted run drew from its step 4 on.
    resumed = list(itertools.islice(iter(StreamSampler(per, 4, 1, world)), per * 6))
    assert resumed == taken[1][per * 4 :]


@pytest.mark.parametrize(
    "key,value,problem",
    [
        ("SYNTHETIC.PIXEL_SCALE", "0", "PIXEL_SCALE"),
        ("SYNTHETIC.DENSITY", "(0.3, 0.1)", "DENSITY"),
        ("SYNTHETIC.FIELD_SIZES", "(64, 96)", "FIELD_SIZE_WEIGHTS"),
        ("SYNTHETIC.FIELD_SIZES", "(16,)", "FIELD_SIZES"),
        ("SYNTHETIC.BIT_DEPTH", "12", "BIT_DEPTH"),
    ],
)
def test_bad_stream_settings_are_refused_by_name(key, value, problem):
    with pytest.raises(ConfigError, match=problem):
        tiny_cfg(*STREAM, key, value)


def test_an_unknown_generator_preset_is_refused_by_name():
    with pytest.raises(ConfigError, match="SYNTHETIC.PRESET"):
        SyntheticFieldStream(tiny_cfg(*STREAM, "SYNTHETIC.PRESET", "cartoon"), 1)


def test_pretraining_on_the_stream_needs_no_dataset_and_records_its_scale(tmp_path):
    out = str(tmp_path / "base")
    cfg = _stream_cfg(
        "OUTPUT_DIR",
        out,
        "SOLVER.MAX_ITER",
        4,
        "SOLVER.IMS_PER_BATCH",
        2,
        "SOLVER.CHECKPOINT_PERIOD",
        2,
        "SOLVER.LOG_PERIOD",
        1,
        "SEED",
        0,
        "INPUT.IMAGE_SIZE",
        96,
    )
    final = train(cfg)
    state = torch.load(final, map_location="cpu", weights_only=False)
    assert state["class_names"] == ["myotube"]
    assert state["input_scale"]["factor"] == pytest.approx(stream_input_scale_factor(cfg))
    # 0.5 of the reference field (a 2048 px field drawn at 1500 px): a 2048 px field is 750 model px.
    assert 2048 * stream_input_scale_factor(
        load_config(f"{REPO_ROOT}/configs/base/myotube_base.yaml")
    ) == pytest.approx(750, rel=0.01)


def test_a_resumed_pretraining_continues_the_stream_where_it_stopped(tmp_path):
    def run(out, stop_after=None, resume=False):
        cfg = _stream_cfg(
            "OUTPUT_DIR",
            str(out),
            "SOLVER.MAX_ITER",
            4,
            "SOLVER.IMS_PER_BATCH",
            1,
            "SOLVER.CHECKPOINT_PERIOD",
            2,
            "SOLVER.LOG_PERIOD",
            1,
            "SEED",
            0,
            "INPUT.IMAGE_SIZE",
            96,
        )
        return train(cfg, resume=resume, stop_after=stop_after)

    whole = torch.load(run(tmp_path / "whole"), map_location="cpu", weights_only=False)["model"]
    assert run(tmp_path / "split", stop_after=2) is None
    split = torch.load(run(tmp_path / "split", resume=True), map_location="cpu", weights_only=False)["model"]
    for key in whole:
        assert torch.allclose(whole[key], split[key], atol=1e-5), key


def _steps(sampler: ReplaySampler, per: int, steps: int) -> list[list[tuple[str, int]]]:
    keys = list(itertools.islice(iter(sampler), per * steps))
    return [keys[per * k : per * (k + 1)] for k in range(steps)]


def test_replay_takes_its_share_of_steps_from_the_stream_and_every_rank_agrees_on_which():
    per, world, steps = 2, 2, 400
    ranks = [
        _steps(
            ReplaySampler(
                InfiniteShuffledSampler(5, 0, rank, world), 0.3, per, seed=7, rank=rank, world_size=world
            ),
            per,
            steps,
        )
        for rank in range(world)
    ]
    kinds = [[step[0][0] for step in rank] for rank in ranks]
    assert kinds[0] == kinds[1]
    for rank in ranks:
        assert all(len({source for source, _ in step}) == 1 for step in rank)  # one source per batch
    replayed = [k for k, kind in enumerate(kinds[0]) if kind != FIELDS]
    assert 0.2 < len(replayed) / steps < 0.4
    generated = [index for rank in ranks for step in rank for source, index in step if source != FIELDS]
    assert len(generated) == len(set(generated)) == len(replayed) * per * world
    records = [{index for step in rank for source, index in step if source == FIELDS} for rank in ranks]
    assert records[0] | records[1] == set(range(5))  # the ranks share the records, pass after pass
    # A run resumed at step 100 replays the same steps with the same generated fields.
    resumed = _steps(
        ReplaySampler(
            InfiniteShuffledSampler(5, 1, 0, world), 0.3, per, seed=7, start_step=100, world_size=world
        ),
        per,
        50,
    )
    assert [s for s in resumed if s[0][0] != FIELDS] == [s for s in ranks[0][100:150] if s[0][0] != FIELDS]


def test_no_replay_and_a_replay_share_out_of_range_is_refused():
    assert all(
        source == FIELDS
        for step in _steps(ReplaySampler(InfiniteShuffledSampler(3, 0), 0.0, 2, seed=0), 2, 50)
        for source, _ in step
    )
    with pytest.raises(ConfigError, match="SYNTHETIC.REPLAY"):
        tiny_cfg("SYNTHETIC.REPLAY", 1.0)


def test_fine_tuning_with_replay_batches_registered_fields_and_generated_ones(tmp_path):
    register_two_stage_datasets(
        make_unified_dataset(str(tmp_path / "ds"), size=64, n_train=3, n_test=1, n_manual=1)
    )
    cfg = tiny_cfg(
        "SYNTHETIC.REPLAY",
        0.5,
        "SYNTHETIC.FIELD_SIZES",
        "(64,)",
        "INPUT.IMAGE_SIZE",
        64,
        "DATALOADER.NUM_WORKERS",
        0,
    )
    records = training_records(cfg)
    loader = iter(build_train_loader(cfg, records, 2, seed=0, rank=0, world_size=1, pin_memory=False))
    names = [[record["file_name"] for record in next(loader)["records"]] for _ in range(12)]
    generated = [batch for batch in names if batch[0].startswith("synthetic:")]
    assert 0 < len(generated) < len(names)
    assert all(all(name.startswith("synthetic:") for name in batch) for batch in generated)
    assert {name for batch in names if batch not in generated for name in batch} <= {
        r["file_name"] for r in records
    }


def test_train_shares_give_each_dataset_its_share_of_the_steps_and_a_resumed_run_the_same_sources():
    groups = [[0, 1], list(range(2, 40))]  # 2 manual fields, 38 annotator-labelled ones
    per, steps = 2, 400
    batches = _steps(SharedSampler(groups, [0.5, 0.5], per, seed=3), per, steps)
    sources = [0 if set(batch) <= set(groups[0]) else 1 for batch in batches]
    assert all(set(batch) <= set(groups[source]) for batch, source in zip(batches, sources))  # one source
    assert 0.4 < sources.count(0) / steps < 0.6  # vs 2 / 40 of the steps in one pass over all
    assert {index for batch in batches for index in batch} == set(range(40))
    resumed = _steps(SharedSampler(groups, [0.5, 0.5], per, seed=3, start_step=100), per, 50)
    assert [0 if set(b) <= set(groups[0]) else 1 for b in resumed] == sources[100:150]
    # A rank sees every record of a dataset smaller than the number of ranks.
    assert {i for b in _steps(SharedSampler(groups, [1, 0], per, seed=3, rank=5), per, 4) for i in b} == {
        0,
        1,
    }


def test_train_shares_in_the_loader_and_shares_that_do_not_fit_are_refused(tmp_path):
    register_two_stage_datasets(
        make_unified_dataset(str(tmp_path / "ds"), size=64, n_train=6, n_test=1, n_manual=1)
    )
    both = ("DATASETS.TRAIN", "('myotube_manual_train', 'myotube_algorithmic_train')", "INPUT.IMAGE_SIZE", 64)
    cfg = tiny_cfg(*both, "DATASETS.TRAIN_SHARES", "(1.0, 0.0)", "DATALOADER.NUM_WORKERS", 0)
    records = training_records(cfg)
    manual = {r["file_name"] for r in records if r[SOURCE_KEY] == 0}
    assert len(manual) == 1 and len(records) > 2
    loader = iter(build_train_loader(cfg, records, 2, seed=0, rank=0, world_size=1, pin_memory=False))
    assert all({r["file_name"] for r in next(loader)["records"]} == manual for _ in range(4))
    with pytest.raises(ConfigError, match="one share per dataset"):
        tiny_cfg(*both, "DATASETS.TRAIN_SHARES", "(1.0,)")
    with pytest.raises(ConfigError, match="positive sum"):
        tiny_cfg(*both, "DATASETS.TRAIN_SHARES", "(0.0, 0.0)")
