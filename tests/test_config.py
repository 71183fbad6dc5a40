"""Config tree: declared keys, _BASE_ inheritance, overrides, errors, stage presets, round-trip."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

import mask2former
from mask2former.config import (
    COCO_SWIN_B_WEIGHTS,
    CONFIG_DIR,
    CfgNode,
    add_myotube_config,
    config_path,
    find_config,
    get_cfg,
    load_config,
    save_config,
    shipped_configs,
)
from mask2former.errors import ConfigError
from tests.helpers import REPO_ROOT

CFG_KEY = re.compile(r"\bcfg\.((?:[A-Z][A-Z0-9_]*)(?:\.[A-Z][A-Z0-9_]*)*)")
# "inf = cfg.INFERENCE" ... "inf.MIN_AREA": keys read through a local alias of a section.
CFG_ALIAS = re.compile(
    r"^\s*(\w+)\s*=\s*cfg\.((?:[A-Z][A-Z0-9_]*)(?:\.[A-Z][A-Z0-9_]*)*)\s*(?:#.*)?$", re.MULTILINE
)


def _flatten(node: CfgNode, prefix: str = "") -> dict:
    flat = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, CfgNode):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _lookup(cfg: CfgNode, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- declared keys


def test_add_myotube_config_declares_onto_any_node():
    cfg = CfgNode()
    add_myotube_config(cfg)
    assert _flatten(cfg) == _flatten(get_cfg())
    assert get_cfg() is not get_cfg()  # fresh tree each time: callers may mutate theirs


def _python_sources() -> list[Path]:
    root = Path(REPO_ROOT)
    return sorted(root.glob("*.py")) + sorted((root / "mask2former").rglob("*.py"))


def test_every_key_the_code_reads_is_declared():
    cfg = get_cfg()
    missing = []
    for path in _python_sources():
        source = path.read_text(encoding="utf-8")
        keys = set(CFG_KEY.findall(source))
        for alias, section in CFG_ALIAS.findall(source):
            pattern = rf"\b{alias}\.([A-Z][A-Z0-9_]*(?:\.[A-Z][A-Z0-9_]*)*)"
            keys |= {f"{section}.{key}" for key in re.findall(pattern, source)}
        for key in keys:
            try:
                _lookup(cfg, key)
            except KeyError:
                missing.append(f"{path.relative_to(REPO_ROOT)}: cfg.{key}")
    assert not missing, "config keys read by the code but not declared in add_myotube_config: " + ", ".join(
        missing
    )


def test_every_yaml_in_the_repo_uses_declared_keys_only():
    yamls = [Path(REPO_ROOT, "stage1_config.yaml"), Path(REPO_ROOT, "stage2_config.yaml")]
    yamls += sorted(Path(REPO_ROOT, "configs").rglob("*.yaml"))
    assert len(yamls) >= 5
    for path in yamls:
        load_config(path)  # raises ConfigError on any undeclared key


def test_defaults_are_sane():
    cfg = get_cfg()
    assert cfg.MODEL.SWIN.DEPTHS == [2, 2, 18, 2]
    assert len(cfg.MODEL.SWIN.DEPTHS) == len(cfg.MODEL.SWIN.NUM_HEADS)
    assert cfg.MODEL.DEVICE == "auto"
    assert cfg.INPUT.EMPTY_CROP_POLICY in ("resample", "background")
    assert tuple(cfg.DATASETS.TRAIN) == ("myotube_algorithmic_train",)
    load_config(None)  # the defaults pass the value checks


# --------------------------------------------------------------------------- _BASE_ and overrides


def test_base_is_resolved_relative_to_the_file_that_names_it(tmp_path, monkeypatch):
    _write(tmp_path / "cfgs" / "common" / "base.yaml", "SEED: 11\nSOLVER:\n  BASE_LR: 0.5\n  MAX_ITER: 7\n")
    _write(
        tmp_path / "cfgs" / "common" / "mid.yaml",
        "_BASE_: base.yaml\nSOLVER:\n  MAX_ITER: 9\nINPUT:\n  IMAGE_SIZE: 64\n",
    )
    child = _write(
        tmp_path / "cfgs" / "deep" / "nested" / "child.yaml",
        "_BASE_: ../../common/mid.yaml\nINPUT:\n  IMAGE_SIZE: 96\nOUTPUT_DIR: out_child\n",
    )
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)

    cfg = load_config(os.path.relpath(child, elsewhere))
    assert cfg.SEED == 11  # from the grandparent
    assert cfg.SOLVER.BASE_LR == 0.5
    assert cfg.SOLVER.MAX_ITER == 9  # parent overrides grandparent
    assert cfg.INPUT.IMAGE_SIZE == 96  # child overrides parent
    assert cfg.OUTPUT_DIR == "out_child"
    assert cfg.SOLVER.IMS_PER_BATCH == get_cfg().SOLVER.IMS_PER_BATCH  # untouched key keeps its default


def test_opts_win_over_the_file_and_are_typed(tmp_path):
    path = _write(tmp_path / "c.yaml", "SOLVER:\n  BASE_LR: 0.5\n  MAX_ITER: 7\nMODEL:\n  WEIGHTS: a.pth\n")
    cfg = load_config(
        path,
        [
            "SOLVER.MAX_ITER",
            "3",
            "SOLVER.BASE_LR",
            "1e-4",
            "MODEL.WEIGHTS",
            "/x/b.pth",
            "DATASETS.TRAIN",
            "('myotube_manual_train',)",
            "MODEL.SWIN.DEPTHS",
            "[1, 1, 1, 1]",
        ],
    )
    assert cfg.SOLVER.MAX_ITER == 3 and isinstance(cfg.SOLVER.MAX_ITER, int)
    assert cfg.SOLVER.BASE_LR == pytest.approx(1e-4)
    assert cfg.MODEL.WEIGHTS == "/x/b.pth"
    assert tuple(cfg.DATASETS.TRAIN) == ("myotube_manual_train",)
    assert cfg.MODEL.SWIN.DEPTHS == [1, 1, 1, 1]


def test_loaded_config_is_frozen_unless_asked():
    cfg = load_config(None, ["SEED", "5"])
    with pytest.raises(AttributeError):
        cfg.SEED = 6
    thawed = load_config(None, ["SEED", "5"], freeze=False)
    thawed.SEED = 6
    assert thawed.SEED == 6


def test_unknown_key_in_a_file_names_file_and_key(tmp_path):
    path = _write(tmp_path / "typo.yaml", "MODEL:\n  WETGHTS: x.pth\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert "MODEL.WETGHTS" in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_key_in_a_base_file_is_an_error(tmp_path):
    _write(tmp_path / "base.yaml", "SOLVER:\n  BASE_LRR: 0.1\n")
    child = _write(tmp_path / "child.yaml", "_BASE_: base.yaml\nSEED: 1\n")
    with pytest.raises(ConfigError, match="BASE_LRR"):
        load_config(child)


def test_unknown_new_section_in_a_file_is_an_error(tmp_path):
    path = _write(tmp_path / "new.yaml", "NEWSECTION:\n  A: 1\n")
    with pytest.raises(ConfigError, match="NEWSECTION"):
        load_config(path)


@pytest.mark.parametrize(
    "opts, needle",
    [
        (["MODEL.WETGHTS", "x.pth"], "MODEL.WETGHTS"),
        (["SOLVER.MAX_ITER", "abc"], "SOLVER.MAX_ITER"),
        (["NOPE", "1"], "NOPE"),
    ],
)
def test_bad_opts_are_config_errors_naming_the_key(opts, needle):
    with pytest.raises(ConfigError) as err:
        load_config(None, opts)
    assert needle in str(err.value)
    assert str(err.value).count("\n") == 0


def test_odd_number_of_opts():
    with pytest.raises(ConfigError, match="odd number"):
        load_config(None, ["SOLVER.MAX_ITER", "3", "SEED"])


def test_missing_config_file_and_missing_base(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(err.value) and "not found" in str(err.value)

    child = _write(tmp_path / "sub" / "child.yaml", "_BASE_: ../missing_base.yaml\nSEED: 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(child)
    assert str(child) in str(err.value)
    assert "missing_base.yaml" in str(err.value)


def test_base_loop_is_an_error_not_a_recursion(tmp_path):
    _write(tmp_path / "a.yaml", "_BASE_: sub/b.yaml\nSEED: 1\n")
    _write(tmp_path / "sub" / "b.yaml", "_BASE_: ../a.yaml\nSEED: 2\n")
    with pytest.raises(ConfigError, match="loops back"):
        load_config(tmp_path / "a.yaml")
    _write(tmp_path / "self.yaml", "_BASE_: ./self.yaml\n")
    with pytest.raises(ConfigError, match="loops back"):
        load_config(tmp_path / "self.yaml")


def test_empty_config_file_means_no_overrides(tmp_path):
    empty = _write(tmp_path / "empty.yaml", "# nothing to change\n")
    assert load_config(empty) == load_config(None)
    child = _write(tmp_path / "child.yaml", "_BASE_: empty.yaml\nSEED: 4\n")
    assert load_config(child).SEED == 4


@pytest.mark.parametrize("base", ["123", "[a.yaml, b.yaml]", "''", "{x: 1}"])
def test_base_that_is_not_a_path(tmp_path, base):
    path = _write(tmp_path / "c.yaml", f"_BASE_: {base}\nSEED: 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and "_BASE_" in str(err.value)


def test_non_utf8_config_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("OUTPUT_DIR: ./résultats\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


@pytest.mark.parametrize("where", ["file", "opts"])
def test_null_values_are_refused(tmp_path, where):
    if where == "file":
        args = (_write(tmp_path / "n.yaml", "SOLVER:\n  MAX_ITER: null\n"), ())
    else:
        args = (None, ["INPUT.IMAGE_SIZE", "None"])
    with pytest.raises(ConfigError, match="empty"):
        load_config(*args)


def test_messages_stay_one_short_line(tmp_path):
    path = _write(tmp_path / "section.yaml", "MODEL: 3\n")  # a value where a whole section belongs
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "\n" not in str(err.value) and len(str(err.value)) < 400 + len(str(path))


@pytest.mark.parametrize(
    "text, needle",
    [
        ("SOLVER: [unclosed\n", "YAML"),
        ("- just\n- a list\n", "mapping"),
    ],
)
def test_malformed_yaml_is_a_config_error(tmp_path, text, needle):
    path = _write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and needle in str(err.value)


@pytest.mark.parametrize(
    "opts, needle",
    [
        (["SOLVER.IMS_PER_BATCH", "0"], "IMS_PER_BATCH"),
        (["SOLVER.MAX_ITER", "0"], "MAX_ITER"),
        (["SOLVER.BASE_LR", "0.0"], "BASE_LR"),
        (["MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "0"], "NUM_OBJECT_QUERIES"),
        (["MODEL.SWIN.DEPTHS", "[2, 2]"], "DEPTHS"),
        (["INPUT.EMPTY_CROP_POLICY", "skip"], "EMPTY_CROP_POLICY"),
        (["SOLVER.LR_SCHEDULER_NAME", "Step"], "LR_SCHEDULER_NAME"),
        (["MODEL.DEVICE", "tpu"], "MODEL.DEVICE"),
        (["INPUT.CHANNEL", "-2"], "INPUT.CHANNEL"),
    ],
)
def test_value_checks(opts, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(None, opts)


# --------------------------------------------------------------------------- stage presets


def _assert_swin_b(cfg):
    assert cfg.MODEL.SWIN.EMBED_DIM == 128
    assert cfg.MODEL.SWIN.DEPTHS == [2, 2, 18, 2]
    assert cfg.MODEL.SWIN.NUM_HEADS == [4, 8, 16, 32]
    assert cfg.MODEL.SWIN.WINDOW_SIZE == 12
    assert cfg.INPUT.IMAGE_SIZE == 1500
    assert cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES == 200


def test_stage1_config(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # _BASE_ must not depend on the working directory
    cfg = load_config(os.path.join(REPO_ROOT, "stage1_config.yaml"))
    _assert_swin_b(cfg)
    assert cfg.SOLVER.IMS_PER_BATCH == 2
    assert cfg.SOLVER.BASE_LR == pytest.approx(3e-5)
    assert cfg.SOLVER.MAX_ITER == 4000
    assert cfg.MODEL.WEIGHTS == COCO_SWIN_B_WEIGHTS == "facebook/mask2former-swin-base-coco-instance"
    assert os.path.normpath(cfg.OUTPUT_DIR) == "output_stage1_algorithmic"
    assert tuple(cfg.DATASETS.TRAIN) == ("myotube_algorithmic_train",)
    assert tuple(cfg.DATASETS.TEST) == ("myotube_algorithmic_test",)


def test_stage2_config(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(os.path.join(REPO_ROOT, "stage2_config.yaml"))
    _assert_swin_b(cfg)
    assert cfg.SOLVER.IMS_PER_BATCH == 1
    assert cfg.SOLVER.BASE_LR == pytest.approx(8e-5)
    assert cfg.SOLVER.MAX_ITER == 1500
    assert os.path.normpath(cfg.MODEL.WEIGHTS) == os.path.join("output_stage1_algorithmic", "model_final.pth")
    assert os.path.normpath(cfg.OUTPUT_DIR) == "output_stage2_manual"
    # The manual fields, with half of the steps rehearsing the Stage 1 fields.
    assert tuple(cfg.DATASETS.TRAIN) == ("myotube_manual_train", "myotube_algorithmic_train")
    assert tuple(cfg.DATASETS.TRAIN_SHARES) == (0.5, 0.5)
    assert tuple(cfg.DATASETS.TEST) == ("myotube_manual_test",)


def test_stage1_output_is_stage2_input():
    s1 = load_config(os.path.join(REPO_ROOT, "stage1_config.yaml"))
    s2 = load_config(os.path.join(REPO_ROOT, "stage2_config.yaml"))
    assert os.path.normpath(s2.MODEL.WEIGHTS) == os.path.normpath(
        os.path.join(s1.OUTPUT_DIR, "model_final.pth")
    )


@pytest.mark.parametrize("stage", [1, 2])
def test_cpu_tiny_presets_inherit_their_stage_config(stage, monkeypatch, tmp_path):
    tiny_path = Path(config_path(f"cpu_tiny/stage{stage}_config.yaml"))
    # The stage's config first, then the tiny architecture shared by both stages.
    bases = yaml.safe_load(tiny_path.read_text())["_BASE_"]
    assert [os.path.normpath(tiny_path.parent / b) for b in bases] == [
        config_path(f"stage{stage}_config.yaml"),
        os.path.normpath(tiny_path.parent / "Base-Tiny.yaml"),
    ]

    monkeypatch.chdir(tmp_path)
    tiny = load_config(tiny_path)
    full = load_config(os.path.join(REPO_ROOT, f"stage{stage}_config.yaml"))
    # Tiny model: a small ResNet backbone where the full configs have Swin-B.
    assert tiny.MODEL.BACKBONE.NAME == "resnet" and full.MODEL.BACKBONE.NAME == "swin"
    assert tiny.MODEL.RESNET.DEPTHS == [1, 1, 1, 1] and tiny.MODEL.RESNET.LAYER_TYPE == "basic"
    assert tiny.MODEL.MASK_FORMER.HIDDEN_DIM < full.MODEL.MASK_FORMER.HIDDEN_DIM
    assert tiny.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES == 64  # the base model's queries
    assert 128 <= tiny.INPUT.IMAGE_SIZE <= 256
    assert tiny.MODEL.DEVICE == "cpu"
    # Whatever the preset does not override comes from the stage config.
    assert tuple(tiny.DATASETS.TRAIN) == tuple(full.DATASETS.TRAIN)
    assert tuple(tiny.DATASETS.TEST) == tuple(full.DATASETS.TEST)
    assert tiny.OUTPUT_DIR == full.OUTPUT_DIR
    tiny_yaml = yaml.safe_load(tiny_path.read_text())
    _merge(tiny_yaml, yaml.safe_load((tiny_path.parent / "Base-Tiny.yaml").read_text()))
    for key, value in _flatten(full).items():
        node = tiny_yaml
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:  # not overridden in the preset
            assert _lookup(tiny, key) == value, key
    if stage == 2:
        assert tiny.MODEL.WEIGHTS == full.MODEL.WEIGHTS  # still fine-tunes the Stage 1 model


def _merge(into: dict, other: dict) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into.setdefault(key, value)


# --------------------------------------------------------------------------- shipped configs


def test_the_checkout_paths_are_links_to_the_one_copy_in_the_package():
    # configs/ and the two stage configs exist once, as package data; the checkout's paths lead there.
    assert os.path.realpath(os.path.join(REPO_ROOT, "configs")) == os.path.realpath(CONFIG_DIR)
    for name in ("stage1_config.yaml", "stage2_config.yaml"):
        assert os.path.realpath(os.path.join(REPO_ROOT, name)) == os.path.realpath(config_path(name))
    assert CONFIG_DIR == os.path.join(os.path.dirname(os.path.abspath(mask2former.__file__)), "configs")
    assert {
        "stage1_config.yaml",
        "stage2_config.yaml",
        "cpu_tiny/stage1_config.yaml",
        "cpu_tiny/stage2_config.yaml",
        "Base-Myotube-SwinB.yaml",
    } <= set(shipped_configs())


@pytest.mark.parametrize(
    "name", ["cpu_tiny/stage2_config.yaml", "configs/cpu_tiny/stage2_config.yaml", "stage1_config.yaml"]
)
def test_a_shipped_config_is_found_by_name_and_loads_through_the_checkout_links_alike(name):
    path = config_path(name)
    assert os.path.isfile(path) and path.startswith(CONFIG_DIR)
    checkout = (
        os.path.join(REPO_ROOT, "configs", name.removeprefix("configs/"))
        if "/" in name
        else os.path.join(REPO_ROOT, name)
    )
    assert _flatten(load_config(path)) == _flatten(load_config(checkout))


def test_names_that_are_no_shipped_config_are_refused_in_one_line():
    assert config_path() == os.path.normpath(CONFIG_DIR) and os.path.isdir(config_path("configs/cpu_tiny"))
    for bad in ("nope.yaml", "../config.py", "/etc/passwd"):
        with pytest.raises(ConfigError, match="no shipped config of this name"):
            config_path(bad)


def test_a_config_file_missing_here_is_the_shipped_one_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_config("stage2_config.yaml") == config_path("stage2_config.yaml")
    assert find_config("configs/cpu_tiny") == config_path("cpu_tiny")
    assert load_config("configs/cpu_tiny/stage1_config.yaml").MODEL.BACKBONE.NAME == "resnet"
    # A file of that name here wins; a name nothing ships stays as given, to be reported missing.
    _write(tmp_path / "stage2_config.yaml", "SOLVER:\n  MAX_ITER: 3\n")
    assert load_config("stage2_config.yaml").SOLVER.MAX_ITER == 3
    assert find_config("mine.yaml") == "mine.yaml"
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("mine.yaml")


def test_a_copy_of_a_shipped_config_loads_in_another_folder(tmp_path):
    # Its _BASE_ is not beside the copy: the shipped file of that name is (also the checkout's
    # former spelling, configs/Base-Myotube-SwinB.yaml).
    for base in ("Base-Myotube-SwinB.yaml", "configs/Base-Myotube-SwinB.yaml"):
        text = (
            Path(config_path("stage2_config.yaml"))
            .read_text()
            .replace("_BASE_: Base-Myotube-SwinB.yaml", f"_BASE_: {base}")
        )
        copy = _write(tmp_path / "mine.yaml", text + "SEED: 7\n")
        cfg = load_config(copy)
        assert cfg.SEED == 7 and _flatten(cfg) == _flatten(
            load_config(config_path("stage2_config.yaml"), ["SEED", "7"])
        )
    with pytest.raises(ConfigError, match="_BASE_ file not found"):
        load_config(_write(tmp_path / "other.yaml", "_BASE_: no_such_base.yaml\n"))


def test_base_follows_a_linked_config_to_where_it_really_is(tmp_path):
    _write(tmp_path / "real" / "base.yaml", "SEED: 5\n")
    _write(tmp_path / "real" / "child.yaml", "_BASE_: base.yaml\nSOLVER:\n  MAX_ITER: 4\n")
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "real" / "child.yaml", tmp_path / "elsewhere" / "child.yaml")
    cfg = load_config(tmp_path / "elsewhere" / "child.yaml")
    assert (cfg.SEED, cfg.SOLVER.MAX_ITER) == (5, 4)


def test_base_lists_merge_in_order_and_loops_are_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("SOLVER:\n  BASE_LR: 0.1\n  MAX_ITER: 7\n")
    (tmp_path / "b.yaml").write_text("SOLVER:\n  BASE_LR: 0.2\n")
    (tmp_path / "c.yaml").write_text("_BASE_: [a.yaml, b.yaml]\nSOLVER:\n  WARMUP_ITERS: 3\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, cfg.SOLVER.WARMUP_ITERS) == (0.2, 7, 3)
    (tmp_path / "loop.yaml").write_text("_BASE_: [a.yaml, loop.yaml]\n")
    with pytest.raises(ConfigError, match="loops back"):
        load_config(tmp_path / "loop.yaml")


# --------------------------------------------------------------------------- save/load round-trip


@pytest.mark.parametrize(
    "source", ["stage1_config.yaml", "stage2_config.yaml", "configs/cpu_tiny/stage1_config.yaml"]
)
def test_save_config_round_trips(tmp_path, source):
    cfg = load_config(os.path.join(REPO_ROOT, source), ["SEED", "123", "INPUT.PIXEL_MEAN", "[0.1, 0.2, 0.3]"])
    out = tmp_path / "run" / "config.yaml"
    out.parent.mkdir()
    save_config(cfg, out)
    assert not [p for p in out.parent.iterdir() if p.name != "config.yaml"]  # no temp file left behind

    back = get_cfg()
    back.merge_from_file(str(out))
    assert _flatten(back) == _flatten(cfg)
    assert back == cfg
    assert load_config(out) == cfg


def test_whole_field_configs_snap_and_split_the_cpu_presets_flip_and_the_demo_only_flips():
    """The stage configs (whole microscope fields) snap outlines and split masks; the CPU presets
    also fuse the four flips, measured at their 750 px scale; the demo's generated crops, where the
    first two cost F1, keep the flips only; the config's own defaults do none of them."""
    from mask2former.config import get_cfg, load_config
    from mask2former.demo import DemoPlan, model_opts

    for name in (
        "stage1_config.yaml",
        "stage2_config.yaml",
        "cpu_tiny/stage1_config.yaml",
        "cpu_tiny/stage2_config.yaml",
    ):
        shipped = load_config(os.path.join(REPO_ROOT, "configs", name))
        assert shipped.INFERENCE.SNAP_REACH > 0 and shipped.INFERENCE.SPLIT_DISCONNECTED, name
        assert shipped.TEST.AUG.ENABLED == name.startswith("cpu_tiny/"), name
        demo = load_config(os.path.join(REPO_ROOT, "configs", name), model_opts(DemoPlan()))
        assert demo.INFERENCE.SNAP_REACH == 0 and not demo.INFERENCE.SPLIT_DISCONNECTED, name
        assert demo.TEST.AUG.ENABLED == shipped.TEST.AUG.ENABLED, name
    defaults = get_cfg()
    assert defaults.INFERENCE.SNAP_REACH == 0 and not defaults.INFERENCE.SPLIT_DISCONNECTED
    assert not defaults.TEST.AUG.ENABLED
