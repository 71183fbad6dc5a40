"""Named models shipped with the package (``MODEL.WEIGHTS myotube-base``): publishing a checkpoint
into the zoo, resolving the name everywhere weights are read, checksum errors, and the fallback of
other names to the existing kinds. The zoo is a temporary folder holding the package's manifest and
a tiny model written the way ``save_final`` writes one."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil

import numpy as np
import pytest
import tifffile
import torch

from mask2former.config import load_config
from mask2former.engine.checkpoint import rng_state, save_final
from mask2former.errors import WeightsError
from mask2former.inference.predictor import class_names_for_weights, input_scale_for_weights
from mask2former.modeling import zoo
from mask2former.modeling.build import build_model
from mask2former.modeling.weights import (
    QUERY_KEYS,
    checkpoint_config,
    describe_weights,
    load_model,
    resolve_weights,
    weights_kind,
)
from mask2former.napari.core import TRAINED_MODEL, model_choices
from tests.helpers import REPO_ROOT, TINY_STAGE2, load_script, tiny_cfg

NAME = "myotube-base"
PACKAGE_ZOO = zoo.ZOO_DIR
# Not the tiny preset's defaults (16 queries, 128 px): a config built from the checkpoint shows them.
QUERIES, IMAGE_SIZE = 12, 96
SCALE = {"factor": 0.5, "pixel_size_um": 1.3, "low": 0.5, "high": 0.5, "fields": 4}


@pytest.fixture(scope="module")
def training_checkpoint(tmp_path_factory) -> str:
    """A finished run's model_final.pth (as ``save_final`` writes it) with a training checkpoint's
    optimizer, scheduler and RNG states added, which publishing must drop."""
    cfg = load_config(
        TINY_STAGE2,
        [
            "MODEL.WEIGHTS",
            "",
            "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES",
            QUERIES,
            "INPUT.IMAGE_SIZE",
            IMAGE_SIZE,
        ],
    )
    torch.manual_seed(0)
    model = build_model(cfg, ["myotube"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    out = str(tmp_path_factory.mktemp("run"))
    state = {
        "model": model.state_dict(),
        "iteration": 40,
        "cfg": cfg.dump(),
        "class_names": ["myotube"],
        "input_scale": SCALE,
        "optimizer": optimizer.state_dict(),
        "scheduler": {"last_epoch": 40},
        "rng": rng_state(),
    }
    return save_final(out, state)


@pytest.fixture
def empty_zoo(tmp_path, monkeypatch) -> str:
    """A zoo folder holding the package's own manifest (myotube-base not published yet)."""
    folder = tmp_path / "zoo"
    folder.mkdir()
    shutil.copy(os.path.join(PACKAGE_ZOO, zoo.MANIFEST), folder / zoo.MANIFEST)
    monkeypatch.setattr(zoo, "ZOO_DIR", str(folder))
    monkeypatch.setattr(zoo, "_DIGESTS", {})
    manifest = json.loads((folder / zoo.MANIFEST).read_text())
    manifest[NAME].update(sha256="", size_bytes=0)  # as shipped before the trainer publishes
    (folder / zoo.MANIFEST).write_text(json.dumps(manifest))
    return str(folder)


@pytest.fixture
def published(empty_zoo, training_checkpoint) -> str:
    """The zoo with the tiny model published as myotube-base; returns the model's file."""
    return zoo.publish(training_checkpoint, NAME).path


def predict_main():
    return load_script("predict.py").main


def write_field(folder, size: int = 80) -> str:
    os.makedirs(folder, exist_ok=True)
    image = np.random.default_rng(0).normal(30, 5, (size, size))
    image[size // 2 - 4 : size // 2 + 4, 5:-5] += 150
    path = os.path.join(folder, "field.tif")
    tifffile.imwrite(path, np.clip(image, 0, 255).astype(np.uint8))
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


# --------------------------------------------------------------------------- the shipped zoo


def test_the_package_ships_a_consistent_manifest_as_package_data():
    models = zoo.zoo_models()
    assert NAME in models and models[NAME].file == f"{NAME}.pth" and models[NAME].description
    if models[NAME].sha256:  # once published, the file ships with it and matches
        assert zoo.zoo_path(NAME) == os.path.join(PACKAGE_ZOO, f"{NAME}.pth")
    else:
        assert models[NAME].size_bytes == 0
    with open(os.path.join(REPO_ROOT, "pyproject.toml"), encoding="utf-8") as f:
        package_data = re.search(r'^"mask2former\.model_zoo" = (\[.*\])$', f.read(), re.MULTILINE)
    assert package_data and set(json.loads(package_data.group(1))) >= {zoo.MANIFEST, "*.pth"}
    assert os.path.isfile(os.path.join(PACKAGE_ZOO, "__init__.py"))  # a package, so setuptools ships its data


# --------------------------------------------------------------------------- publishing


def test_publish_keeps_weights_config_and_scale_and_records_the_checksum(
    empty_zoo, training_checkpoint, capsys
):
    rc = load_script("mask2former/model_zoo/publish.py").main([training_checkpoint, "--name", NAME])
    assert rc == 0, capsys.readouterr().err
    path = os.path.join(empty_zoo, f"{NAME}.pth")
    assert f"sha256 {zoo.file_sha256(path)}" in capsys.readouterr().out
    entry = json.loads(open(os.path.join(empty_zoo, zoo.MANIFEST)).read())[NAME]
    with open(path, "rb") as f:
        assert entry["sha256"] == hashlib.sha256(f.read()).hexdigest()
    assert entry["size_bytes"] == os.path.getsize(path) and entry["description"]  # the description is kept
    shipped = torch.load(path, weights_only=True)
    source = torch.load(training_checkpoint, weights_only=True)
    assert sorted(shipped) == sorted(zoo.KEPT_KEYS)  # no optimizer, scheduler or RNG states
    assert shipped["cfg"] == source["cfg"] and shipped["input_scale"] == SCALE and shipped["iteration"] == 40
    for key, tensor in source["model"].items():
        assert shipped["model"][key].dtype == tensor.dtype and torch.equal(shipped["model"][key], tensor), key
    assert sorted(os.listdir(empty_zoo)) == sorted([f"{NAME}.pth", zoo.MANIFEST])  # no temp files left


def test_publish_writes_chosen_settings_into_the_models_config(empty_zoo, training_checkpoint):
    from mask2former.config import CfgNode

    zoo.publish(training_checkpoint, NAME, settings=["MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", "0.7"])
    shipped = CfgNode.load_cfg(torch.load(os.path.join(empty_zoo, f"{NAME}.pth"), weights_only=True)["cfg"])
    assert shipped.MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD == 0.7
    with pytest.raises(WeightsError, match="cannot apply the settings"):
        zoo.publish(training_checkpoint, NAME, settings=["MODEL.NO_SUCH_KEY", "1"])


def test_publish_refuses_a_checkpoint_without_its_config(empty_zoo, tmp_path):
    bare = tmp_path / "bare.pth"
    torch.save({"model": build_model(tiny_cfg(), ["myotube"]).state_dict()}, bare)
    with pytest.raises(WeightsError, match="holds no config"):
        zoo.publish(str(bare), NAME)
    with pytest.raises(WeightsError, match="model name"):
        zoo.publish(str(bare), "owner/model")
    assert os.listdir(empty_zoo) == [zoo.MANIFEST]


# --------------------------------------------------------------------------- resolving the name


def test_the_name_resolves_to_the_verified_file_and_loads_everywhere(published, monkeypatch):
    hashed = []
    real_sha = zoo.file_sha256
    monkeypatch.setattr(zoo, "file_sha256", lambda path: hashed.append(path) or real_sha(path))
    assert weights_kind(NAME) == "zoo" and resolve_weights(NAME) == published
    cfg = tiny_cfg("MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", QUERIES, "MODEL.WEIGHTS", NAME)
    model, described = load_model(cfg, ["myotube"])
    assert described.startswith(f"{NAME} ({published}")
    source = torch.load(published, weights_only=True)["model"]
    assert all(torch.equal(source[k], v) for k, v in model.state_dict().items())
    assert class_names_for_weights(NAME) == ["myotube"] and input_scale_for_weights(NAME).pixel_size_um == 1.3
    info = describe_weights(NAME)
    assert info["kind"] == "zoo" and info["status"] == "ok" and info["path"] == published
    # The config it was trained with, for predicting without a config file.
    stored = checkpoint_config(NAME)
    assert stored.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES == QUERIES and stored.INPUT.IMAGE_SIZE == IMAGE_SIZE
    assert stored.MODEL.WEIGHTS == NAME and stored.MODEL.DEVICE == "auto"
    assert hashed == [published]  # checked once in this process, however often the name is read
    assert model_choices() == [NAME, TRAINED_MODEL]  # the napari widget's default


def test_predict_with_the_name_needs_no_config_file(published, tmp_path, capsys):
    field = write_field(tmp_path / "in")
    out = tmp_path / "out"
    rc = predict_main()(
        [
            "--weights",
            NAME,
            "--input",
            field,
            "--output",
            str(out),
            "--device",
            "cpu",
            "--no-progress",
            "--score-threshold",
            "0",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    for suffix in ("_overlay.png", "_labels.tif", "_coco.json", "_rois.zip", "_measurements.csv"):
        assert (out / f"field{suffix}").is_file(), suffix
    assert tifffile.imread(out / "field_labels.tif").shape == (80, 80)
    used = load_config(str(out / "config.yaml"))
    assert used.MODEL.WEIGHTS == NAME and used.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES == QUERIES
    assert used.INFERENCE.INPUT_SCALE == pytest.approx(SCALE["factor"])  # the scale recorded with the model


def test_without_a_config_file_the_weights_must_carry_one(empty_zoo, tmp_path, capsys):
    field = write_field(tmp_path / "in")
    rc = predict_main()(
        ["--method", "model", "--input", field, "--output", str(tmp_path / "out"), "--no-progress"]
    )
    assert rc == 1 and "give --config-file" in one_line_error(capsys)
    bare = tmp_path / "bare.pth"
    torch.save({"model": build_model(tiny_cfg(), ["myotube"]).state_dict()}, bare)
    rc = predict_main()(
        ["--weights", str(bare), "--input", field, "--output", str(tmp_path / "out"), "--no-progress"]
    )
    line = one_line_error(capsys)
    assert rc == 1 and str(bare) in line and "holds no config" in line


def test_training_starts_from_the_name_and_grows_the_queries(published, unified_dataset, tmp_path, capsys):
    cfg = tiny_cfg("MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", QUERIES + 4, "MODEL.WEIGHTS", NAME)
    model, _ = load_model(cfg, ["myotube"], for_training=True)
    source = torch.load(published, weights_only=True)["model"]
    for key in QUERY_KEYS:
        assert model.state_dict()[key].shape[0] == QUERIES + 4 and torch.equal(
            model.state_dict()[key][:QUERIES], source[key]
        )
    with pytest.raises(WeightsError, match="queries"):
        load_model(cfg, ["myotube"])  # only training may add queries

    out = tmp_path / "train"
    rc = load_script("train_net.py").main(
        [
            "--config-file",
            TINY_STAGE2,
            "--dataset",
            unified_dataset,
            "MODEL.WEIGHTS",
            NAME,
            "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES",
            str(QUERIES + 4),
            "INPUT.IMAGE_SIZE",
            "96",
            "SOLVER.MAX_ITER",
            "2",
            "OUTPUT_DIR",
            str(out),
            "SEED",
            "1",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert (out / "model_final.pth").is_file()
    assert f"{NAME} ({published}" in (out / "log.txt").read_text()


# --------------------------------------------------------------------------- what goes wrong


def test_a_flipped_byte_or_a_truncated_file_is_one_line_naming_the_checksum(published, tmp_path, capsys):
    resolve_weights(NAME)  # hashed and cached while intact
    size = os.path.getsize(published)
    with open(published, "r+b") as f:
        f.seek(size // 2)
        byte = f.read(1)
        f.seek(size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    # Same size, new contents: the cache is keyed by mtime, which a coarse clock may leave unchanged
    # within one tick; a real damage happens between processes, so move the mtime on as time would.
    st = os.stat(published)
    os.utime(published, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(WeightsError) as err:
        load_model(tiny_cfg("MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", QUERIES), ["myotube"], NAME)
    message = str(err.value)
    assert message.startswith(published) and "checksum does not match" in message and "reinstall" in message
    assert "\n" not in message
    assert describe_weights(NAME)["status"] == "missing"

    field = write_field(tmp_path / "in")
    rc = predict_main()(
        ["--weights", NAME, "--input", field, "--output", str(tmp_path / "out"), "--no-progress"]
    )
    line = one_line_error(capsys)
    assert rc == 1 and "checksum does not match" in line and published in line

    with open(published, "r+b") as f:
        f.truncate(size // 3)
    with pytest.raises(
        WeightsError, match=rf"checksum does not match models.json \({size // 3} bytes, {size} expected\)"
    ):
        resolve_weights(NAME)


def test_a_missing_or_unpublished_model_is_one_line(published, tmp_path, capsys):
    os.remove(published)
    field = write_field(tmp_path / "in")
    rc = predict_main()(
        ["--weights", NAME, "--input", field, "--output", str(tmp_path / "out"), "--no-progress"]
    )
    line = one_line_error(capsys)
    assert rc == 1 and f"{NAME}.pth" in line and "is not installed" in line
    assert model_choices() == [TRAINED_MODEL]

    manifest = os.path.join(zoo.ZOO_DIR, zoo.MANIFEST)
    entries = json.loads(open(manifest).read())
    entries[NAME].update(sha256="", size_bytes=0)
    with open(manifest, "w") as f:
        json.dump(entries, f)
    with pytest.raises(WeightsError, match="has not been published") as err:
        load_model(tiny_cfg(), ["myotube"], NAME)
    assert "python -m mask2former.model_zoo.publish" in str(err.value) and "\n" not in str(err.value)
    hint = describe_weights(NAME)
    assert hint["status"] == "missing" and "has not been published" in hint["hint"]


def test_other_names_keep_their_kinds(published, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert weights_kind("facebook/mask2former-swin-base-coco-instance") == "hub_id"
    assert weights_kind("out/model_final.pth") == "checkpoint" and weights_kind("") == "none"
    assert weights_kind("./myotube-base") == "hf_dir"  # the way to a folder that shares the name
    # A name the manifest does not hold is a folder, as before: a Hugging Face model saved here loads.
    cfg = tiny_cfg()
    build_model(cfg, ["myotube"]).save_pretrained(tmp_path / "my-model")
    assert weights_kind("my-model") == "hf_dir" and resolve_weights("my-model") == "my-model"
    _, described = load_model(cfg, ["myotube"], "my-model")
    assert "Hugging Face" in described
    with pytest.raises(WeightsError, match="folder not found"):
        load_model(cfg, ["myotube"], "myotube-large")
