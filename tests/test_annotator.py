"""Classical annotator: instances on constructed tubes, COCO output, bad inputs, untouched inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tifffile

from mask2former.annotate import AnnotatorParams, annotate_image, annotate_instances, foreground_mask
from mask2former.annotate.batch import annotate_folder, output_names
from mask2former.data.coco_records import load_coco_instances, record_masks
from mask2former.data.coco_validation import validate_coco
from mask2former.data.synthetic import SyntheticParams, generate_field
from tests.helpers import REPO_ROOT, load_script

CROP = AnnotatorParams(scale=1.0)  # test images are crops drawn at the reference pixel size

main = load_script("utils/batch_myotube_processing.py").main


def tubes_on_background(size: int, segments: list[tuple], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Straight tubes (start, end, width, brightness) added to a generated background: noise,
    uneven illumination, faint myoblasts and debris but no myotubes of its own."""
    background = generate_field(size, seed=seed, density="sparse", params=SyntheticParams(max_tubes=0))
    assert len(background.masks) == 0
    image = background.image.astype(np.float32)
    masks = []
    for start, end, width, brightness in segments:
        m = np.zeros((size, size), np.uint8)
        cv2.line(m, start, end, 1, width)
        masks.append(m.astype(bool))
        image += brightness * cv2.GaussianBlur(m.astype(np.float32), (0, 0), 1.0)
    return np.clip(image, 0, 255).astype(np.uint8), np.stack(masks)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def matched(pred: np.ndarray, truth: np.ndarray) -> list[int]:
    """Index of the best-matching prediction for each true tube."""
    return [int(np.argmax([iou(p, t) for p in pred])) for t in truth]


@pytest.mark.parametrize("angle", [90, 55])
def test_two_crossing_tubes_become_two_overlapping_instances(angle):
    c, half = 128, 115
    d1 = np.array([1.0, 0.0])
    d2 = np.array([np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))])
    pt = lambda v: tuple(int(round(x)) for x in v)  # noqa: E731
    image, truth = tubes_on_background(
        256,
        [(pt(c - half * d1), pt(c + half * d1), 14, 90), (pt(c - half * d2), pt(c + half * d2), 12, 80)],
        seed=angle,
    )
    masks = annotate_image(image, CROP)
    assert masks.dtype == bool and masks.shape[1:] == image.shape
    assert len(masks) == 2
    best = matched(masks, truth)
    assert sorted(best) == [0, 1], "each tube has its own instance"
    for k, t in enumerate(truth):
        assert iou(masks[best[k]], t) > 0.6
    # The crossing belongs to both tubes.
    assert masks[:, c, c].all()


def test_tube_ending_against_another_is_a_separate_myotube_and_a_shallow_branch_is_not():
    image, truth = tubes_on_background(
        256, [((20, 100), (236, 100), 14, 90), ((128, 107), (128, 240), 12, 80)], seed=3
    )
    masks = annotate_image(image, CROP)
    assert len(masks) == 2 and sorted(matched(masks, truth)) == [0, 1]
    branch_end = (240, 128 - int(112 * np.tan(np.deg2rad(22))))
    image, _ = tubes_on_background(
        256, [((10, 128), (246, 128), 14, 90), ((128, 128), branch_end, 10, 80)], seed=4
    )
    assert len(annotate_image(image, CROP)) == 1


def test_debris_round_cells_and_blank_images_give_no_myotubes():
    blank = np.full((128, 128), 20, np.uint8)
    assert annotate_image(blank, CROP).shape == (0, 128, 128)
    image, truth = tubes_on_background(200, [((20, 60), (180, 80), 12, 90)], seed=5)
    cv2.circle(image, (60, 150), 12, 200, -1)  # a round bright mononuclear cell
    cv2.circle(image, (150, 150), 2, 255, -1)  # debris
    masks = annotate_image(image, CROP)
    assert len(masks) == 1 and iou(masks[0], truth[0]) > 0.6


def test_instances_carry_scores_and_match_the_foreground():
    f = generate_field(256, seed=11, density="dense")
    inst = annotate_instances(f.image, CROP)
    assert len(inst) >= 2 and inst.scores.shape == (len(inst),)
    assert ((inst.scores > 0) & (inst.scores <= 1)).all()
    fg = foreground_mask(f.image, CROP).mask
    assert np.array_equal(inst.masks.any(axis=0), fg)  # every foreground pixel belongs to a myotube
    # and the annotator finds the generated tubes, not background
    assert iou(fg, f.masks.any(axis=0)) > 0.7


def test_parameters_scale_with_resolution():
    f = generate_field(384, seed=2, density="medium")
    full = annotate_image(f.image, CROP)
    half_image = cv2.resize(f.image, (192, 192), interpolation=cv2.INTER_AREA)
    half = annotate_image(half_image, CROP.replace(scale=0.5))
    assert abs(len(full) - len(half)) <= max(1, len(full) // 3)
    up = cv2.resize(half.any(axis=0).astype(np.uint8), (384, 384), interpolation=cv2.INTER_NEAREST) > 0
    assert iou(up, full.any(axis=0)) > 0.75


def test_sixteen_bit_and_eight_bit_versions_agree():
    f8 = generate_field(256, seed=6, density="medium", bit_depth=8)
    f16 = generate_field(256, seed=6, density="medium", bit_depth=16)
    a = annotate_image(f8.image, CROP).any(axis=0)
    b = annotate_image(f16.image, CROP).any(axis=0)
    assert iou(a, b) > 0.85


# --------------------------------------------------------------------------- folders and CLI


def write_raw_folder(folder, n: int = 3, size: int = 200) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(n):
        f = generate_field(size, seed=20 + i, density="dense")
        path = os.path.join(folder, f"field{i}_myosin.png")
        cv2.imwrite(path, f.image)
        paths.append(path)
    return paths


def snapshot(folder) -> dict:
    out = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        with open(path, "rb") as fh:
            out[name] = (fh.read(), os.stat(path).st_mtime_ns)
    return out


def test_folder_output_loads_and_validates(tmp_path):
    raw = tmp_path / "raw"
    write_raw_folder(raw, n=4)
    summary = annotate_folder(
        raw, tmp_path / "out", resolution=160, test_fraction=0.25, seed=1, workers=1, progress=False
    )
    assert summary.ok and summary.annotated == 4 and summary.instances > 0
    assert summary.train_images == 3 and summary.test_images == 1
    images = tmp_path / "out" / "images"
    assert sorted(os.listdir(images)) == [f"field{i}_myosin.png" for i in range(4)]
    names = []
    for split in ("train", "test"):
        json_file = tmp_path / "out" / "annotations" / f"{split}_annotations.json"
        assert [f for f in validate_coco(json_file, images) if f.level == "error"] == []
        records = load_coco_instances(json_file, images)
        for r in records:
            assert max(r["height"], r["width"]) == 160
            # The size before resizing travels with the record: training records the model's scale from it.
            original = cv2.imread(str(raw / os.path.basename(r["file_name"])), cv2.IMREAD_UNCHANGED).shape[:2]
            assert (r["original_height"], r["original_width"]) == original
            assert cv2.imread(r["file_name"], cv2.IMREAD_UNCHANGED).shape == (r["height"], r["width"])
            assert record_masks(r).shape[1:] == (r["height"], r["width"])
        names += [os.path.basename(r["file_name"]) for r in records]
    assert sorted(names) == sorted(os.listdir(images))
    # The written masks are the annotator's masks of the written image.
    record = load_coco_instances(tmp_path / "out" / "annotations" / "train_annotations.json", images)[0]
    written = cv2.imread(record["file_name"], cv2.IMREAD_UNCHANGED)
    expected = annotate_image(written)
    assert np.array_equal(record_masks(record), expected)
    with open(tmp_path / "out" / "annotation_summary.json", encoding="utf-8") as f:
        assert json.load(f)["instances"] == summary.instances


def test_bad_files_are_reported_others_processed_inputs_untouched(tmp_path, capsys):
    raw = tmp_path / "raw"
    good = write_raw_folder(raw, n=2)
    with open(good[0], "rb") as f:
        data = f.read()
    (raw / "truncated.png").write_bytes(data[: len(data) // 2])
    (raw / "notes.tif").write_text("this is not a TIFF file\n", encoding="utf-8")
    (raw / "readme.txt").write_text("ignored: not an image extension\n", encoding="utf-8")
    before = snapshot(raw)

    code = main(
        [
            "--input_dir",
            str(raw),
            "--output_dir",
            str(tmp_path / "out"),
            "--resolution",
            "160",
            "--workers",
            "2",
            "--no-progress",
        ]
    )
    assert code == 1
    out = capsys.readouterr().out
    assert "Annotated 2/4 images" in out
    failures = [line.strip() for line in out.splitlines() if "truncated.png" in line or "notes.tif" in line]
    assert len(failures) == 2
    assert any("truncated.png: " in line and "truncated" in line.split(": ", 1)[1] for line in failures)
    assert any("notes.tif: " in line and "TIFF" in line for line in failures)
    assert sorted(os.listdir(tmp_path / "out" / "images")) == ["field0_myosin.png", "field1_myosin.png"]
    records = load_coco_instances(
        tmp_path / "out" / "annotations" / "train_annotations.json", tmp_path / "out" / "images"
    )
    records += load_coco_instances(
        tmp_path / "out" / "annotations" / "test_annotations.json", tmp_path / "out" / "images"
    )
    assert len(records) == 2
    assert snapshot(raw) == before  # bytes and modification times unchanged
    with open(tmp_path / "out" / "annotation_summary.json", encoding="utf-8") as f:
        assert len(json.load(f)["failed"]) == 2
    # No temporary files left behind.
    leftovers = [
        n
        for root, _, files in os.walk(tmp_path / "out")
        for n in files
        if n.endswith(".tmp") or n.startswith(".")
    ]
    assert leftovers == []


def test_tiff_channels_z_stacks_and_sixteen_bit(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    f = generate_field(180, seed=4, density="dense", bit_depth=16)
    # Z-stack of two planes (the myotubes in one of them), two channels: myosin, DAPI.
    zstack = np.zeros((2, 2, 180, 180), np.uint16)
    zstack[1, 0] = f.image
    zstack[0, 0] = f.image // 4
    zstack[:, 1] = f.nuclei_image
    tifffile.imwrite(raw / "stack_myosin.tif", zstack, imagej=True, metadata={"axes": "ZCYX"})
    summary = annotate_folder(
        raw, tmp_path / "out", resolution=180, test_fraction=0.0, channel=0, workers=1, progress=False
    )
    assert summary.ok and summary.instances > 0 and summary.test_images == 0
    # Every channel is kept (so INPUT.CHANNEL 0 picks the same channel in training), Z max-projected.
    written = tifffile.imread(tmp_path / "out" / "images" / "stack_myosin.tif")
    assert written.dtype == np.uint16 and written.shape == (2, 180, 180)
    assert np.array_equal(written[0], f.image) and np.array_equal(written[1], f.nuclei_image)
    assert not os.path.exists(tmp_path / "out" / "annotations" / "test_annotations.json")
    direct = annotate_image(f.image)
    written_masks = record_masks(
        load_coco_instances(
            tmp_path / "out" / "annotations" / "train_annotations.json",
            tmp_path / "out" / "images",
            channel=0,
        )[0]
    )
    assert np.array_equal(written_masks, direct)


def test_output_names_keep_stems_and_never_collide():
    assert output_names(["a/field_myosin.tif", "a/x.png"]) == ["field_myosin.png", "x.png"]
    assert output_names(["a/f.tif", "a/f.png", "a/F.jpg"]) == ["f.png", "f_png.png", "F_jpg.png"]


def test_cli_refuses_bad_folders_with_one_line(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--input_dir", str(empty), "--output_dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no images found" in err[0]
    raw = tmp_path / "images"
    write_raw_folder(raw, n=1, size=96)
    assert main(["--input_dir", str(raw), "--output_dir", str(tmp_path), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "input folder" in err[0]


def test_root_script_runs_as_a_file(tmp_path):
    raw = tmp_path / "raw"
    write_raw_folder(raw, n=2, size=128)
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO_ROOT, "utils", "batch_myotube_processing.py"),
            "--input_dir",
            str(raw),
            "--output_dir",
            str(tmp_path / "out"),
            "--resolution",
            "128",
            "--workers",
            "1",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Annotated 2/2 images" in result.stdout


def test_error_breakdown_separates_missed_regions_boundary_and_false_regions():
    from bench.annotator import ERROR_CLASSES, error_breakdown

    human = np.zeros((100, 100), bool)
    human[10:30, 10:90] = True  # a tube found with an outline 2 px too narrow
    human[60:70, 10:50] = True  # a tube not found at all
    pred = np.zeros_like(human)
    pred[12:28, 10:90] = True
    pred[80:90, 60:95] = True  # a predicted tube the human did not draw
    counts = error_breakdown(human, pred, band_px=4)
    assert counts["intersection"] == 16 * 80
    assert counts["missed_regions"] == 10 * 40
    assert counts["boundary_fn"] == 4 * 80 and counts["interior_fn"] == 0
    assert counts["false_regions"] == 10 * 35
    assert counts["boundary_fp"] == counts["interior_fp"] == 0
    union = (human | pred).sum()
    assert counts["intersection"] + sum(counts[k] for k in ERROR_CLASSES) == union


def test_scale_from_the_pixel_size_makes_two_magnifications_agree(tmp_path, capsys):
    """--reference-pixel-size: an image's scale follows from its microns per pixel, so the same
    field at two magnifications (0.5 and 1.0 um per pixel, 2x apart in size) is annotated alike;
    the image entries record the written images' pixel size."""
    raw = tmp_path / "raw"
    raw.mkdir()
    f = generate_field(320, seed=2, density="sparse")
    tifffile.imwrite(
        raw / "fine.ome.tif",
        f.image,
        ome=True,
        metadata={"axes": "YX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5},
    )
    coarse = cv2.resize(f.image, (160, 160), interpolation=cv2.INTER_AREA)
    tifffile.imwrite(
        raw / "coarse.ome.tif",
        coarse,
        ome=True,
        metadata={"axes": "YX", "PhysicalSizeX": 1.0, "PhysicalSizeY": 1.0},
    )
    # Written at 160 px: 1.0 um per pixel for both; a reference pixel of 0.5 um gives scale 0.5.
    assert (
        main(
            [
                "--input_dir",
                str(raw),
                "--output_dir",
                str(tmp_path / "out"),
                "--resolution",
                "160",
                "--test_fraction",
                "0",
                "--reference-pixel-size",
                "0.5",
                "--workers",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    summary = json.loads((tmp_path / "out" / "annotation_summary.json").read_text())
    assert summary["scale_per_image"] == {"fine.ome.png": 0.5, "coarse.ome.png": 0.5}
    coco = json.loads((tmp_path / "out" / "annotations" / "train_annotations.json").read_text())
    assert {e["file_name"]: e["pixel_size_um"] for e in coco["images"]} == {
        "fine.ome.png": 1.0,
        "coarse.ome.png": 1.0,
    }
    counts = summary["instances_per_image"]
    assert counts["fine.ome.png"] == counts["coarse.ome.png"] > 0

    # A file without a pixel size: one line naming it, unless --pixel-size says it.
    png = tmp_path / "png"
    png.mkdir()
    cv2.imwrite(str(png / "field.png"), coarse)
    args = [
        "--input_dir",
        str(png),
        "--resolution",
        "160",
        "--reference-pixel-size",
        "0.5",
        "--workers",
        "1",
        "--no-progress",
    ]
    assert main([*args, "--output_dir", str(tmp_path / "o1")]) == 1
    err = capsys.readouterr()
    assert "field.png" in err.out + err.err and "--pixel-size" in err.out + err.err
    assert main([*args, "--output_dir", str(tmp_path / "o2"), "--pixel-size", "1.0"]) == 0
    assert (
        main(
            [
                "--input_dir",
                str(png),
                "--output_dir",
                str(tmp_path / "o3"),
                "--scale",
                "1",
                "--reference-pixel-size",
                "0.5",
            ]
        )
        == 1
    )
    assert "give one" in capsys.readouterr().err
