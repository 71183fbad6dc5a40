"""Dataset catalog: the four split names, re-registration, loading, errors, optional detectron2 bridge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import pytest

from mask2former.data import catalog
from mask2former.data.catalog import (
    ANNOTATION_FILES,
    get_dataset,
    get_dataset_dicts,
    get_metadata,
    is_registered,
    register_two_stage_datasets,
    registered_names,
)
from mask2former.errors import DatasetError
from tests.helpers import REPO_ROOT, make_unified_dataset

FOUR = {
    "myotube_algorithmic_train",
    "myotube_algorithmic_test",
    "myotube_manual_train",
    "myotube_manual_test",
}


@pytest.fixture(autouse=True)
def empty_catalog(monkeypatch):
    """Each test starts from an empty catalog and leaves the real one untouched."""
    monkeypatch.setattr(catalog, "_CATALOG", {})


@pytest.fixture
def no_detectron2(monkeypatch):
    monkeypatch.setitem(sys.modules, "detectron2", None)  # any import of it raises ImportError
    monkeypatch.setitem(sys.modules, "detectron2.data", None)


def _image_count(json_file: str) -> int:
    with open(json_file, encoding="utf-8") as f:
        return len(json.load(f)["images"])


def test_split_names_are_the_contract():
    assert set(ANNOTATION_FILES) == FOUR


def test_registers_exactly_the_four_splits(unified_dataset, no_detectron2):
    names = register_two_stage_datasets(unified_dataset)
    assert set(names) == FOUR and len(names) == 4
    assert set(registered_names()) == FOUR
    for name in FOUR:
        assert is_registered(name)
        entry = get_dataset(name)
        assert entry.json_file == os.path.join(
            os.path.abspath(unified_dataset), "annotations", ANNOTATION_FILES[name]
        )
        assert entry.image_root == os.path.join(os.path.abspath(unified_dataset), "images")


def test_get_dataset_dicts_loads_the_records(unified_dataset, no_detectron2):
    register_two_stage_datasets(unified_dataset)
    for name in FOUR:
        records = get_dataset_dicts(name)
        assert len(records) == _image_count(get_dataset(name).json_file)
        assert all(os.path.isfile(r["file_name"]) for r in records)
        assert all(r["annotations"] for r in records)
        assert all(a["category_id"] == 0 for r in records for a in r["annotations"])
    meta = get_metadata("myotube_manual_train")
    assert meta["thing_classes"] == ["myotube"]
    assert meta["thing_dataset_id_to_contiguous_id"] == {1: 0}
    assert meta["evaluator_type"] == "coco"


def test_manual_test_split_is_optional(unified_dataset, no_detectron2):
    os.remove(os.path.join(unified_dataset, "annotations", "manual_test_annotations.json"))
    names = register_two_stage_datasets(unified_dataset)
    assert set(names) == FOUR - {"myotube_manual_test"}
    assert not is_registered("myotube_manual_test")
    with pytest.raises(DatasetError) as err:
        get_dataset_dicts("myotube_manual_test")
    assert "myotube_manual_test" in str(err.value) and "manual_test_annotations.json" in str(err.value)
    assert len(get_dataset_dicts("myotube_manual_train")) == 2


def test_reregistering_another_root_replaces_every_entry(tmp_path, no_detectron2):
    first = make_unified_dataset(str(tmp_path / "first"), n_train=3, seed=1)
    second = make_unified_dataset(str(tmp_path / "second"), n_train=5, seed=2)
    os.remove(os.path.join(second, "annotations", "manual_test_annotations.json"))

    register_two_stage_datasets(first)
    assert len(get_dataset_dicts("myotube_algorithmic_train")) == 3  # cached in the entry
    names = register_two_stage_datasets(second)
    assert "myotube_manual_test" not in names
    assert not is_registered("myotube_manual_test")  # the first root's split does not linger
    records = get_dataset_dicts("myotube_algorithmic_train")
    assert len(records) == 5
    assert all(r["file_name"].startswith(os.path.abspath(second)) for r in records)


def test_relative_root_survives_a_change_of_directory(tmp_path, monkeypatch, no_detectron2):
    make_unified_dataset(str(tmp_path / "ds"))
    monkeypatch.chdir(tmp_path)
    register_two_stage_datasets("ds")
    monkeypatch.chdir(tmp_path.parent)
    assert len(get_dataset_dicts("myotube_algorithmic_test")) == 2


def test_unknown_name_is_a_clear_error(unified_dataset, no_detectron2):
    register_two_stage_datasets(unified_dataset)
    with pytest.raises(DatasetError) as err:
        get_dataset_dicts("myotube_algorithmic_trian")
    message = str(err.value)
    assert "myotube_algorithmic_trian" in message and "not registered" in message
    assert "myotube_algorithmic_train" in message  # lists what is registered
    assert "\n" not in message


def test_nothing_registered_yet():
    with pytest.raises(DatasetError, match="registered: none"):
        get_dataset("myotube_algorithmic_train")


def test_missing_dataset_folder(tmp_path, no_detectron2):
    missing = tmp_path / "nothing_here"
    with pytest.raises(DatasetError) as err:
        register_two_stage_datasets(missing)
    assert str(missing) in str(err.value) and "not found" in str(err.value)
    assert registered_names() == []


def test_dataset_file_instead_of_folder(tmp_path, no_detectron2):
    path = tmp_path / "a_file"
    path.write_text("x")
    with pytest.raises(DatasetError, match="not found"):
        register_two_stage_datasets(path)


def test_empty_dataset_folder_registers_nothing(tmp_path, no_detectron2):
    (tmp_path / "empty").mkdir()
    assert register_two_stage_datasets(tmp_path / "empty") == []
    assert registered_names() == []


def test_a_broken_split_fails_when_loaded_with_its_file_named(unified_dataset, no_detectron2):
    broken = os.path.join(unified_dataset, "annotations", "algorithmic_test_annotations.json")
    with open(broken, "w", encoding="utf-8") as f:
        f.write("{ not json")
    assert set(register_two_stage_datasets(unified_dataset)) == FOUR  # registering does not read files
    with pytest.raises(DatasetError) as err:
        get_dataset_dicts("myotube_algorithmic_test")
    assert str(err.value).startswith(broken + ": ")
    assert len(get_dataset_dicts("myotube_algorithmic_train")) == 4  # the other splits still load


def test_detectron2_bridge_when_it_is_importable(unified_dataset, monkeypatch):
    """With detectron2 present the same splits appear in its catalogs, replacing stale entries."""

    class FakeDatasetCatalog:
        entries: dict = {}

        @classmethod
        def list(cls):
            return list(cls.entries)

        @classmethod
        def register(cls, name, fn):
            assert name not in cls.entries, "detectron2 refuses duplicate registration"
            cls.entries[name] = fn

        @classmethod
        def remove(cls, name):
            del cls.entries[name]

    class FakeMetadataCatalog:
        entries: dict = {}

        @classmethod
        def get(cls, name):
            return cls.entries.setdefault(
                name, types.SimpleNamespace(set=lambda **kw: cls.entries[name].__dict__.update(kw))
            )

        @classmethod
        def remove(cls, name):
            cls.entries.pop(name, None)

    d2 = types.ModuleType("detectron2")
    d2_data = types.ModuleType("detectron2.data")
    d2_data.DatasetCatalog, d2_data.MetadataCatalog = FakeDatasetCatalog, FakeMetadataCatalog
    d2.data = d2_data
    monkeypatch.setitem(sys.modules, "detectron2", d2)
    monkeypatch.setitem(sys.modules, "detectron2.data", d2_data)

    register_two_stage_datasets(unified_dataset)
    register_two_stage_datasets(unified_dataset)  # a second registration replaces, never raises
    assert set(FakeDatasetCatalog.entries) == FOUR
    records = FakeDatasetCatalog.entries["myotube_manual_train"]()
    assert len(records) == 2
    meta = FakeMetadataCatalog.entries["myotube_manual_train"]
    assert meta.thing_classes == ["myotube"] and meta.evaluator_type == "coco"


def test_importing_the_catalog_registers_nothing():
    # Registration must happen in main() (spawned workers redo it), never as an import side effect.
    code = "from mask2former.data import catalog; print(len(catalog.registered_names()))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"


def test_get_dataset_dicts_validates_with_the_configured_channel(tmp_path, no_detectron2):
    import numpy as np
    import tifffile

    root = make_unified_dataset(str(tmp_path / "ds"), size=48, n_train=1, n_test=1, n_manual=1)
    json_file = os.path.join(root, "annotations", "algorithmic_train_annotations.json")
    with open(json_file, encoding="utf-8") as f:
        data = json.load(f)
    data["images"][0]["file_name"] = "two_channels.tif"
    tifffile.imwrite(
        os.path.join(root, "images", "two_channels.tif"),
        np.zeros((2, 48, 48), np.uint16),
        imagej=True,
        metadata={"axes": "CYX"},
    )
    with open(json_file, "w", encoding="utf-8") as f:
        json.dump(data, f)
    register_two_stage_datasets(root)
    with pytest.raises(DatasetError, match="2 channels"):
        get_dataset_dicts("myotube_algorithmic_train")
    assert len(get_dataset_dicts("myotube_algorithmic_train", channel=0)) == 1
