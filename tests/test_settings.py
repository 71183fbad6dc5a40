"""``--set FIELD=VALUE`` on the demo's and the benches' plans, and the benches' refusal to reuse
models trained with other settings."""

import json
from dataclasses import dataclass

import pytest

from bench.common import train_once
from mask2former.utils.settings import with_settings
from tests.helpers import TINY_STAGE1


@dataclass
class Plan:
    ceiling: bool = True
    iters: int = 100
    lr: float = 1e-3
    weights: str = "myotube-base"
    extra: tuple = ()


@pytest.mark.parametrize(
    ("text", "value"),
    [("false", False), ("False", False), ("0", False), ("no", False), ("true", True), ("1", True)],
)
def test_booleans_are_read_as_words_not_as_non_empty_strings(text, value):
    assert with_settings(Plan(), [f"ceiling={text}"]).ceiling is value


def test_each_value_takes_its_field_type_and_the_plan_is_not_changed_in_place():
    plan = Plan()
    changed = with_settings(plan, ["iters=3000", "lr=2e-4", "weights=", "extra=A,B"])
    assert (changed.iters, changed.lr, changed.weights, changed.extra) == (3000, 2e-4, "", ("A", "B"))
    assert plan == Plan()


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("epochs=3", "unknown field 'epochs'"),
        ("iters=many", "iters: 'many' is not a valid int"),
        ("ceiling=maybe", "not a yes/no value"),
        ("iters", "expected FIELD=VALUE"),
    ],
)
def test_bad_settings_name_the_field(item, message):
    with pytest.raises(ValueError, match=message):
        with_settings(Plan(), [item])


def test_demo_plan_set_from_the_command_line_parses_booleans():
    from mask2former.demo import DemoPlan

    assert with_settings(DemoPlan(), ["ceiling=false"]).ceiling is False


def test_a_model_trained_with_other_settings_is_refused_not_reused(tmp_path):
    out = tmp_path / "stage1"
    log = str(tmp_path / "log.txt")
    # A finished training of one request: reused as it is (no training runs).
    out.mkdir()
    (out / "model_final.pth").write_bytes(b"trained")
    (out / "train_seconds.json").write_text("12.5")
    from mask2former.config import load_config

    request = {
        "config": load_config(TINY_STAGE1, ["SOLVER.MAX_ITER", "7"], freeze=False).dump(),
        "dataset": str(tmp_path / "data"),
    }
    (out / "train_request.json").write_text(json.dumps(request))
    assert train_once(TINY_STAGE1, str(tmp_path / "data"), ["SOLVER.MAX_ITER", "7"], str(out), log) == 12.5
    # The same folder asked for with another option: refused, naming the folder.
    with pytest.raises(SystemExit, match="holds a training of other settings"):
        train_once(TINY_STAGE1, str(tmp_path / "data"), ["SOLVER.MAX_ITER", "8"], str(out), log)
    # A folder with no record of its request is not trusted either.
    (out / "train_request.json").unlink()
    with pytest.raises(SystemExit, match=str(out)):
        train_once(TINY_STAGE1, str(tmp_path / "data"), ["SOLVER.MAX_ITER", "7"], str(out), log)
