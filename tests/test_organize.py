"""organize_unified_dataset: atomic replacement, failure safety, splits, categories, links, rescaling, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tifffile

import organize_unified_dataset as cli
from mask2former.data import organize as organize_module
from mask2former.data.coco import read_coco_json
from mask2former.data.coco_validation import Finding
from mask2former.data.organize import organize_unified_dataset, parse_category_map
from mask2former.errors import DatasetError, InputError
from tests.helpers import (
    POLY_A,
    POLY_B,
    REPO_ROOT,
    H,
    W,
    assert_same_instances,
    label_scene,
    make_coco_dataset,
    output_masks,
    rasterise,
    scene,
    tree_digest,
    write_cvat,
    write_image,
    write_labelme,
)


@pytest.fixture
def sources(tmp_path):
    """Annotator output + a CVAT manual export, in their own folder (so OUT's parent starts empty)."""
    inputs = tmp_path / "inputs"
    make_coco_dataset(
        str(inputs / "annotator_out"), {"train_annotations.json": 3, "test_annotations.json": 2}, size=H
    )
    write_cvat(str(inputs / "cvat"), scene())
    (tmp_path / "work").mkdir()
    return {
        "algorithmic": str(inputs / "annotator_out"),
        "manual": str(inputs / "cvat" / "annotations.xml"),
        "inputs": inputs,
        "out": str(tmp_path / "work" / "myotube_dataset"),
        "parent": tmp_path / "work",
    }


def run(sources, **kwargs):
    kwargs.setdefault("progress", False)
    return organize_unified_dataset(sources["algorithmic"], sources.get("manual"), sources["out"], **kwargs)


def run_cli(sources, *extra: str) -> int:
    argv = [
        "--algorithmic_dataset",
        sources["algorithmic"],
        "--output_dataset",
        sources["out"],
        "--no-progress",
    ]
    if sources.get("manual"):
        argv += ["--manual_dataset", sources["manual"]]
    return cli.main(argv + list(extra))


# --------------------------------------------------------------------------- layout and contents


def test_unified_layout_and_contents(sources):
    summary = run(sources, manual_test_fraction=0.5, seed=3)
    out = sources["out"]
    assert sorted(os.listdir(os.path.join(out, "annotations"))) == [
        "algorithmic_test_annotations.json",
        "algorithmic_train_annotations.json",
        "manual_test_annotations.json",
        "manual_train_annotations.json",
    ]
    assert os.listdir(sources["parent"]) == ["myotube_dataset"], "no temporary folder may be left beside OUT"
    counts = {name: (s["images"], s["instances"]) for name, s in summary["splits"].items()}
    assert counts["myotube_algorithmic_train"][0] == 3 and counts["myotube_algorithmic_test"][0] == 2
    assert counts["myotube_manual_train"] == (1, 2) and counts["myotube_manual_test"][0] == 1
    for split in summary["splits"].values():
        data = read_coco_json(split["json_file"])
        assert data["categories"] == [{"id": 1, "name": "myotube", "supercategory": "cell"}]
        assert [img["id"] for img in data["images"]] == list(range(1, len(data["images"]) + 1))
        assert [a["id"] for a in data["annotations"]] == list(range(1, len(data["annotations"]) + 1))
    report = json.load(open(os.path.join(out, "organize_report.json")))
    assert report["manual_format"] == "cvat" and report["splits"].keys() == summary["splits"].keys()


def test_algorithmic_annotations_survive_unchanged(sources):
    summary = run(sources)
    truth = make_coco_dataset(
        str(sources["parent"] / "again"), {"train_annotations.json": 3, "test_annotations.json": 2}, size=H
    )
    got = output_masks(summary["splits"]["myotube_algorithmic_train"]["json_file"])
    for i, masks in enumerate(truth["train_annotations.json"]):
        assert_same_instances(np.stack(masks), got[f"train_{i:03d}.png"], min_iou=1.0)


def test_manual_test_fraction_is_seeded(sources):
    write_labelme(str(sources["inputs"] / "lm"), {f"f{i}.png": [("polygon", POLY_A)] for i in range(10)})
    sources["manual"] = str(sources["inputs"] / "lm")

    def test_names(seed):
        summary = run(sources, manual_test_fraction=0.3, seed=seed, force=True)
        return sorted(
            img["original_file_name"]
            for img in read_coco_json(summary["splits"]["myotube_manual_test"]["json_file"])["images"]
        )

    first = test_names(1)
    assert len(first) == 3
    assert test_names(1) == first
    assert any(test_names(seed) != first for seed in (2, 3, 4))


def test_without_manual_dataset_only_algorithmic_splits(sources):
    sources["manual"] = None
    summary = run(sources)
    assert set(summary["splits"]) == {"myotube_algorithmic_train", "myotube_algorithmic_test"}
    assert any("Stage 2 needs manual annotations" in w for w in summary["warnings"])


# --------------------------------------------------------------------------- categories


def test_unknown_categories_are_listed_then_mapped_or_ignored(sources):
    folder = sources["inputs"] / "lm"
    write_labelme(str(folder), {"a.png": [("polygon", POLY_A), ("polygon", POLY_B)]})
    doc = json.loads((folder / "a.json").read_text())
    doc["shapes"][0]["label"] = "Myotubes"
    doc["shapes"][1]["label"] = "nucleus"
    (folder / "a.json").write_text(json.dumps(doc))
    sources["manual"] = str(folder)
    with pytest.raises(
        DatasetError,
        match=r"unknown categories 'Myotubes' \(1 instances.*'nucleus' \(1 instances.*--category-map",
    ):
        run(sources)
    assert not os.path.exists(sources["out"])
    summary = run(sources, category_map=["myotubes=myotube", "NUCLEUS=ignore"])
    got = output_masks(summary["splits"]["myotube_manual_train"]["json_file"])
    assert_same_instances(rasterise(POLY_A)[None], got["a.png"])
    assert any("'nucleus' left out" in w for w in summary["warnings"])


def test_category_map_syntax_errors():
    assert parse_category_map([" Cell = MYOTUBE"]) == {"cell": "myotube"}
    with pytest.raises(InputError, match="NAME=myotube or NAME=ignore"):
        parse_category_map(["cell=nucleus"])
    with pytest.raises(InputError):
        parse_category_map(["cell"])


# --------------------------------------------------------------------------- links, sizes, empties


def test_link_hard_links_and_copy_copies(sources):
    run(sources, link=True)
    written = os.path.join(sources["out"], "images", "field_a.png")
    assert os.path.samefile(written, sources["inputs"] / "cvat" / "images" / "field_a.png")
    run(sources, force=True)
    assert not os.path.samefile(written, sources["inputs"] / "cvat" / "images" / "field_a.png")


def test_label_image_at_half_resolution_is_rescaled_nearest(sources):
    folder = sources["inputs"] / "labels"
    folder.mkdir()
    labels, truth = label_scene()
    tifffile.imwrite(str(folder / "big_labels.tif"), labels[::2, ::2])  # annotated on a half-size copy
    write_image(str(folder / "big.png"))
    sources["manual"] = str(folder)
    summary = run(sources)
    assert summary["rescaled_images"] == [
        {"image": "big.png", "split": "manual_train", "from": [H // 2, W // 2], "to": [H, W]}
    ]
    expected = [
        cv2.resize(m[::2, ::2].astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST_EXACT).astype(bool)
        for m in truth
    ]
    assert_same_instances(
        np.stack(expected),
        output_masks(summary["splits"]["myotube_manual_train"]["json_file"])["big.png"],
        min_iou=1.0,
    )


def test_polygons_annotated_on_a_resized_copy_are_scaled(sources):
    folder = sources["inputs"] / "lm"
    write_labelme(str(folder), {"a.png": [("polygon", [v / 2 for v in POLY_A])]})
    doc = json.loads((folder / "a.json").read_text())
    doc["imageHeight"], doc["imageWidth"] = H // 2, W // 2
    (folder / "a.json").write_text(json.dumps(doc))
    sources["manual"] = str(folder)
    summary = run(sources)
    got = output_masks(summary["splits"]["myotube_manual_train"]["json_file"])["a.png"]
    assert_same_instances(rasterise(POLY_A)[None], got)


def test_other_aspect_ratio_is_an_error(sources):
    folder = sources["inputs"] / "lm"
    write_labelme(str(folder), {"a.png": [("polygon", POLY_A)]})
    doc = json.loads((folder / "a.json").read_text())
    doc["imageHeight"] = H * 2
    (folder / "a.json").write_text(json.dumps(doc))
    sources["manual"] = str(folder)
    with pytest.raises(DatasetError, match=r"a.json: image 'a.png' is 64x48 but was annotated as 64x96"):
        run(sources)


def test_self_intersecting_polygon_is_kept_as_its_pixels(sources):
    bowtie = [5.0, 5.0, 40.0, 30.0, 40.0, 5.0, 5.0, 30.0]
    write_labelme(str(sources["inputs"] / "lm"), {"a.png": [("polygon", bowtie)]})
    sources["manual"] = str(sources["inputs"] / "lm")
    summary = run(sources)
    data = read_coco_json(summary["splits"]["myotube_manual_train"]["json_file"])
    assert isinstance(data["annotations"][0]["segmentation"], dict)
    assert_same_instances(
        rasterise(bowtie)[None],
        output_masks(summary["splits"]["myotube_manual_train"]["json_file"])["a.png"],
        min_iou=1.0,
    )


def test_empty_manual_images_are_left_out_unless_kept(sources):
    write_labelme(str(sources["inputs"] / "lm"), {"a.png": [("polygon", POLY_A)], "empty.png": []})
    sources["manual"] = str(sources["inputs"] / "lm")
    summary = run(sources)
    assert summary["splits"]["myotube_manual_train"]["images"] == 1
    assert any("without any myotube left out" in w for w in summary["warnings"])
    summary = run(sources, keep_empty_manual_images=True, force=True)
    assert summary["splits"]["myotube_manual_train"]["images"] == 2


# --------------------------------------------------------------------------- safety


def test_existing_output_needs_force(sources, capsys):
    assert run_cli(sources) == 0
    before = tree_digest(sources["out"])
    assert run_cli(sources) == 1
    assert "already exists; use --force" in capsys.readouterr().err
    assert tree_digest(sources["out"]) == before
    assert run_cli(sources, "--force") == 0


def break_truncated_json(sources):
    folder = sources["inputs"] / "lm"
    write_labelme(str(folder), scene())
    data = (folder / "field_b.json").read_bytes()
    (folder / "field_b.json").write_bytes(data[: len(data) // 3])
    sources["manual"] = str(folder)
    return "field_b.json: not valid JSON"


def break_missing_image(sources):
    os.remove(sources["inputs"] / "cvat" / "images" / "field_b.png")
    return "annotations.xml: image 'field_b.png' not found"


@pytest.mark.parametrize(
    "breaker", [break_truncated_json, break_missing_image], ids=["truncated-json", "missing-image"]
)
def test_failing_input_leaves_existing_output_intact(sources, capsys, breaker):
    assert run_cli(sources) == 0
    capsys.readouterr()
    before = tree_digest(sources["out"])
    expected = breaker(sources)
    inputs_before = tree_digest(sources["inputs"])
    assert run_cli(sources, "--force") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err and "\n" not in err
    assert tree_digest(sources["out"]) == before, "the old dataset must be byte-identical"
    assert tree_digest(sources["inputs"]) == inputs_before, "inputs are never modified"
    assert os.listdir(sources["parent"]) == ["myotube_dataset"], "the temporary folder must be removed"


def test_validation_failure_keeps_old_output(sources, monkeypatch):
    run(sources)
    before = tree_digest(sources["out"])
    monkeypatch.setattr(
        organize_module,
        "validate_coco",
        lambda json_file, root, **kwargs: [Finding("error", json_file, "broken on purpose")],
    )
    with pytest.raises(
        DatasetError,
        match=r"fails validation: broken on purpose \(and 2 more problems\); nothing was written",
    ):
        run(sources, force=True)
    assert tree_digest(sources["out"]) == before
    assert os.listdir(sources["parent"]) == ["myotube_dataset"]


def test_failed_swap_restores_old_output(sources, monkeypatch):
    run(sources)
    before = tree_digest(sources["out"])
    real_rename = os.rename

    def rename(src, dst):
        if os.path.basename(src).startswith(".myotube_dataset.partial-"):
            raise OSError("simulated failure")
        return real_rename(src, dst)

    monkeypatch.setattr(organize_module.os, "rename", rename)
    with pytest.raises(
        InputError, match=r"cannot write the dataset \(simulated failure\); nothing was changed"
    ):
        run(sources, force=True)
    monkeypatch.undo()
    assert tree_digest(sources["out"]) == before
    assert os.listdir(sources["parent"]) == ["myotube_dataset"]


def test_full_disk_while_copying_keeps_old_output(sources, monkeypatch):
    run(sources)
    before = tree_digest(sources["out"])

    def copy2(src, dst):
        raise OSError(28, "No space left on device", dst)

    monkeypatch.setattr(organize_module.shutil, "copy2", copy2)
    with pytest.raises(InputError, match="No space left on device"):
        run(sources, force=True)
    monkeypatch.undo()
    assert tree_digest(sources["out"]) == before
    assert os.listdir(sources["parent"]) == ["myotube_dataset"]


def test_force_refuses_folders_that_are_not_datasets(sources):
    os.makedirs(sources["out"])
    open(os.path.join(sources["out"], "thesis.docx"), "w").write("precious")
    with pytest.raises(InputError, match="does not look like a dataset folder"):
        run(sources, force=True)
    assert open(os.path.join(sources["out"], "thesis.docx")).read() == "precious"


def test_output_and_inputs_must_not_nest(sources):
    with pytest.raises(InputError, match="inside the input"):
        organize_unified_dataset(
            sources["algorithmic"],
            sources["manual"],
            os.path.join(sources["algorithmic"], "unified"),
            progress=False,
        )
    with pytest.raises(InputError, match="contains the input"):
        organize_unified_dataset(
            sources["algorithmic"], sources["manual"], str(sources["inputs"]), force=True, progress=False
        )
    assert not os.path.exists(os.path.join(sources["algorithmic"], "unified"))


def test_output_may_sit_beside_a_manual_file_but_not_be_a_symlink(sources, tmp_path):
    sources["out"] = str(sources["inputs"] / "cvat" / "unified")  # next to annotations.xml
    run(sources)
    assert os.path.isdir(os.path.join(sources["out"], "images"))
    os.symlink(sources["out"], tmp_path / "link")
    sources["out"] = str(tmp_path / "link")
    with pytest.raises(InputError, match="symbolic link"):
        run(sources, force=True)


def test_cli_category_map_and_link_flags(sources):
    folder = sources["inputs"] / "lm"
    write_labelme(str(folder), {"a.png": [("polygon", POLY_A), ("polygon", POLY_B)]})
    doc = json.loads((folder / "a.json").read_text())
    doc["shapes"][1]["label"] = "nucleus"
    (folder / "a.json").write_text(json.dumps(doc))
    sources["manual"] = str(folder)
    assert run_cli(sources) == 1
    assert run_cli(sources, "--category-map", "nucleus=ignore", "Myotube=myotube", "--link") == 0
    data = read_coco_json(os.path.join(sources["out"], "annotations", "manual_train_annotations.json"))
    assert len(data["annotations"]) == 1
    assert os.path.samefile(os.path.join(sources["out"], "images", "a.png"), folder / "a.png")


def test_missing_parent_folders_are_created_and_removed_on_failure(sources):
    sources["out"] = str(sources["parent"] / "a" / "b" / "ds")
    break_missing_image(sources)
    with pytest.raises(DatasetError):
        run(sources)
    assert os.listdir(sources["parent"]) == []


# --------------------------------------------------------------------------- command line


def test_cli_then_setup_two_stage_accepts_the_dataset(tmp_path):
    algorithmic = tmp_path / "annotator_out"
    manual = tmp_path / "manual"
    make_coco_dataset(str(algorithmic), {"train_annotations.json": 3, "test_annotations.json": 2}, size=64)
    make_coco_dataset(str(manual), {"instances_default.json": 4}, size=64, seed=5, use_polygons=True)
    out = tmp_path / "myotube_dataset"
    env = {**os.environ, "PYTHONPATH": REPO_ROOT}
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO_ROOT, "organize_unified_dataset.py"),
            "--algorithmic_dataset",
            str(algorithmic),
            "--manual_dataset",
            str(manual),
            "--output_dataset",
            str(out),
            "--manual_test_fraction",
            "0.25",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "myotube_manual_test" in proc.stdout and "Validation: OK" in proc.stdout
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "setup_two_stage.py"), "--dataset", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation: 0 errors" in proc.stdout
