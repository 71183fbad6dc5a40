"""bench/postprocess_time.py on generated fields laid out like the real data set."""

import argparse
import json

from bench import postprocess_time
from tests.helpers import save_tiny_checkpoint
from tests.test_bench_real import _write_fields


def test_every_setting_post_processes_the_same_prediction(tmp_path):
    data = tmp_path / "fields"
    _write_fields(data, [f"F_XY{k:02d}" for k in range(4)], seed=20)
    weights = save_tiny_checkpoint(
        tmp_path / "model_final.pth",
        opts=("MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", 0.0, "INFERENCE.MIN_AREA", 0),
        input_scale={"factor": 0.5},
    )
    out = tmp_path / "time.json"
    args = argparse.Namespace(
        model=weights,
        data=str(data),
        fields=0,
        setting=[
            ["split", "INFERENCE.SPLIT_DISCONNECTED", "True"],
            ["score", "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", "1.1"],
        ],
        out=str(out),
    )
    postprocess_time.run(args)
    result = json.loads(out.read_text())
    assert result["fields"] == 2  # the held-out half: odd positions
    rows = result["rows"]
    assert list(rows) == ["shipped", "split", "score"]
    assert rows["shipped"]["ratio_to_shipped"] == 1.0
    # The same prediction each time: only the post-processing differs.
    assert rows["shipped"]["instances_per_field"] > 0
    assert rows["split"]["instances_per_field"] >= rows["shipped"]["instances_per_field"]
    assert rows["score"]["instances_per_field"] == 0  # no score reaches 1.1
    for row in rows.values():
        assert row["seconds_per_field"] > row["postprocess_seconds_per_field"] >= 0
