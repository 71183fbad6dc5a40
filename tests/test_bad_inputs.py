"""The bad-input matrix, at the command line: every broken input gives exit code 1, one clear
message naming the file, no traceback, and leaves the user's files exactly as they were.
Unusual but valid images (16-bit, RGB, RGBA, channels, Z-stacks) must pass instead."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from tests.helpers import REPO_ROOT, TINY, make_unified_dataset, snapshot, text

TRAIN_JSON = "algorithmic_train_annotations.json"
SIZE = 48


def run_script(script: str, *args: str, cwd: Path, extra_env: dict | None = None, timeout: int = 300):
    env = dict(
        os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", **(extra_env or {})
    )
    return subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        timeout=timeout,
    )


def printed(path: str | os.PathLike) -> str:
    """How a path appears in our messages (non-UTF-8 bytes are printed escaped)."""
    return os.fsdecode(path).encode("utf-8", "backslashreplace").decode("utf-8")


# --------------------------------------------------------------------------- dataset surgery


def load_json(root: Path, name: str = TRAIN_JSON) -> dict:
    return json.loads((root / "annotations" / name).read_text(encoding="utf-8"))


def save_json(root: Path, data: dict, name: str = TRAIN_JSON) -> Path:
    path = root / "annotations" / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def image_path(root: Path, index: int) -> Path:
    return root / "images" / load_json(root)["images"][index]["file_name"]


def as_tiff(root: Path, index: int) -> Path:
    """Store a training image as a 16-bit TIFF and point the JSON at it."""
    data = load_json(root)
    png = root / "images" / data["images"][index]["file_name"]
    tif = png.with_suffix(".tif")
    tifffile.imwrite(tif, cv2.imread(str(png), cv2.IMREAD_UNCHANGED).astype(np.uint16) * 16)
    png.unlink()
    data["images"][index]["file_name"] = tif.name
    save_json(root, data)
    return tif


def set_segmentation(root: Path, ann: int, segmentation) -> Path:
    data = load_json(root)
    data["annotations"][ann]["segmentation"] = segmentation
    return save_json(root, data)


# Each problem: (dataset root, which image / annotation / JSON to break) → (file the message must
# name, fragment it must contain). Image and annotation problems go in the training split.


def missing_image(root, image=0, ann=0, json_name=None):
    path = image_path(root, image)
    path.unlink()
    return path, "not found"


def truncated_png(root, image=0, ann=0, json_name=None):
    path = image_path(root, image)
    path.write_bytes(path.read_bytes()[:200])
    return path, "truncated"


def corrupt_png(root, image=0, ann=0, json_name=None):
    path = image_path(root, image)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4 + b"IEND\xaeB`\x82")
    return path, "decode"


def truncated_tiff(root, image=0, ann=0, json_name=None):
    path = as_tiff(root, image)
    path.write_bytes(path.read_bytes()[:300])
    return path, "TIFF"


def corrupt_tiff(root, image=0, ann=0, json_name=None):
    path = as_tiff(root, image)
    path.write_bytes(b"II*\x00" + b"\x13" * 500)
    return path, "TIFF"


def size_mismatch(root, image=0, ann=0, json_name=None):
    data = load_json(root)
    data["images"][image]["height"] = SIZE + 7
    save_json(root, data)
    return image_path(root, image), f"{SIZE}x{SIZE + 7}"


def non_utf8_name_corrupt(root, image=0, ann=0, json_name=None):
    """A file name with invalid UTF-8 bytes (the JSON names it through surrogate escapes), corrupt."""
    data = load_json(root)
    (root / "images" / data["images"][image]["file_name"]).unlink()
    raw_name = b"myotube_\xe9\xff.png"
    bad = os.path.join(os.fsencode(root / "images"), raw_name)
    with open(bad, "wb") as f:
        f.write(b"not an image at all")
    data["images"][image]["file_name"] = os.fsdecode(raw_name)
    save_json(root, data)
    return bad, "decode"


def polygon_two_points(root, image=0, ann=0, json_name=None):
    ann_id = load_json(root)["annotations"][ann]["id"]
    return set_segmentation(root, ann, [[3, 3, 20, 20]]), f"annotation id {ann_id} "


def polygon_self_intersecting(root, image=0, ann=0, json_name=None):
    return set_segmentation(root, ann, [[5, 5, 30, 30, 30, 5, 5, 40]]), "self-intersecting"


def polygon_outside(root, image=0, ann=0, json_name=None):
    return set_segmentation(root, ann, [[60, 60, 90, 60, 90, 90]]), "outside"


def rle_wrong_size(root, image=0, ann=0, json_name=None):
    return set_segmentation(root, ann, {"size": [SIZE, SIZE + 1], "counts": [SIZE * (SIZE + 1)]}), "RLE size"


def unknown_category(root, image=0, ann=0, json_name=None):
    data = load_json(root)
    data["annotations"][ann]["category_id"] = 77
    return save_json(root, data), "unknown category id 77"


def duplicate_annotation_id(root, image=0, ann=0, json_name=None):
    data = load_json(root)
    data["annotations"].append(dict(data["annotations"][ann]))  # a valid instance, reusing an id
    return save_json(root, data), f"duplicate annotation id {data['annotations'][ann]['id']}"


def duplicate_image_id(root, image=0, ann=0, json_name=TRAIN_JSON):
    data = load_json(root, json_name)
    data["images"][1]["id"] = data["images"][0]["id"]
    return save_json(root, data, json_name), "duplicate image id"


def empty_annotation_list(root, image=0, ann=0, json_name=TRAIN_JSON):
    data = load_json(root, json_name)
    data["annotations"] = []
    return save_json(root, data, json_name), "no annotations"


def json_not_coco(root, image=0, ann=0, json_name=TRAIN_JSON):
    path = root / "annotations" / json_name
    path.write_text(json.dumps({"type": "labelme", "shapes": []}), encoding="utf-8")
    return path, "not a COCO instances file"


# Where each problem goes in the one broken dataset that setup_two_stage.py checks: different
# images, annotations and files, so no problem hides another.
PLACEMENT = {
    missing_image: {"image": 0},
    truncated_png: {"image": 1},
    corrupt_png: {"image": 2},
    truncated_tiff: {"image": 3},
    corrupt_tiff: {"image": 4},
    non_utf8_name_corrupt: {"image": 5},
    size_mismatch: {"image": 6},  # its annotations (RLE of the true size) are flagged too
    # Annotation problems: each on its own annotation (an "ann" index is assigned below).
    polygon_two_points: {},
    polygon_self_intersecting: {},
    polygon_outside: {},
    rle_wrong_size: {},
    unknown_category: {},
    duplicate_annotation_id: {},
    duplicate_image_id: {"json_name": "manual_train_annotations.json"},
    empty_annotation_list: {"json_name": "manual_test_annotations.json"},
    json_not_coco: {"json_name": "algorithmic_test_annotations.json"},
}
PROBLEMS = {f.__name__: f for f in PLACEMENT}


def make_base(root: Path) -> Path:
    # 8 training images with 3-4 instances each: room for one problem per image and annotation.
    make_unified_dataset(str(root), size=SIZE, n_train=8, n_test=2, n_manual=2, seed=5)
    return root


@pytest.fixture(scope="module")
def base_dataset(tmp_path_factory) -> Path:
    return make_base(tmp_path_factory.mktemp("bad_inputs") / "pristine")


@pytest.fixture
def dataset(base_dataset, tmp_path) -> Path:
    root = tmp_path / "myotube_dataset"
    shutil.copytree(base_dataset, root)
    return root


@pytest.fixture(scope="module")
def broken_setup(base_dataset, tmp_path_factory):
    """Every dataset problem at once, checked by one setup_two_stage.py run."""
    work = tmp_path_factory.mktemp("broken_setup")
    root = work / "myotube_dataset"
    shutil.copytree(base_dataset, root)
    data = load_json(root)
    size_mismatch_image = data["images"][PLACEMENT[size_mismatch]["image"]]["id"]
    free_annotations = iter(
        i for i, a in enumerate(data["annotations"]) if a["image_id"] != size_mismatch_image
    )
    expected = {}
    for problem, where in PLACEMENT.items():
        kwargs = where or {"ann": next(free_annotations)}
        expected[problem.__name__] = problem(root, **kwargs)
    before = snapshot(root)
    # A strict UTF-8 stdout, as on a desktop UTF-8 locale: unprintable names must not crash it.
    out = run_script(
        "setup_two_stage.py", "--dataset", str(root), cwd=work, extra_env={"PYTHONIOENCODING": "utf-8:strict"}
    )
    return {"out": out, "expected": expected, "unchanged": snapshot(root) == before}


# --------------------------------------------------------------------------- setup_two_stage.py


def test_setup_on_the_broken_dataset_exits_1_cleanly(broken_setup):
    out = broken_setup["out"]
    assert out.returncode == 1, text(out.stdout) + text(out.stderr)
    assert "Traceback" not in text(out.stderr), text(out.stderr)
    assert "NOT READY" in text(out.stdout)
    assert broken_setup["unchanged"], "setup_two_stage.py modified the dataset"


@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_setup_names_the_problem_and_its_file(problem, broken_setup):
    stdout = text(broken_setup["out"].stdout)
    bad_file, fragment = broken_setup["expected"][problem]
    errors = [line.strip() for line in stdout.splitlines() if line.strip().startswith("ERROR")]
    naming = [line for line in errors if f"ERROR   {printed(bad_file)}: " in line]
    assert naming, f"no error names {printed(bad_file)}:\n{stdout}"
    assert any(fragment in line for line in naming), naming


@pytest.mark.parametrize("problem", ["missing_image", "polygon_two_points"])
def test_setup_fails_on_a_single_problem(problem, dataset, tmp_path):
    """One problem alone is enough to fail (the grouped run above cannot show that)."""
    bad_file, fragment = PROBLEMS[problem](dataset)
    out = run_script("setup_two_stage.py", "--dataset", str(dataset), cwd=tmp_path)
    assert out.returncode == 1
    errors = [line for line in text(out.stdout).splitlines() if line.strip().startswith("ERROR")]
    assert len(errors) == 1 and printed(bad_file) in errors[0] and fragment in errors[0], errors


def test_setup_with_dataset_pointing_at_nothing(tmp_path):
    missing = tmp_path / "no_such_dataset"
    out = run_script("setup_two_stage.py", "--dataset", str(missing), cwd=tmp_path)
    assert out.returncode == 1
    assert "Traceback" not in text(out.stderr)
    assert f"{missing}: dataset folder not found" in text(out.stdout)
    assert not missing.exists()


def test_stray_file_with_a_non_utf8_name_is_ignored(dataset, tmp_path):
    """Decision: a file the JSON does not list is none of the dataset's business, whatever its name."""
    stray = os.path.join(os.fsencode(dataset / "images"), b"stray_\xff\xfe.png")
    shutil.copyfile(image_path(dataset, 0), stray)
    before = snapshot(dataset)
    out = run_script(
        "setup_two_stage.py",
        "--dataset",
        str(dataset),
        cwd=tmp_path,
        extra_env={"PYTHONIOENCODING": "utf-8:strict"},
    )
    assert out.returncode == 0, text(out.stdout) + text(out.stderr)
    assert snapshot(dataset) == before


def test_listed_image_with_a_non_utf8_name_is_read(dataset, tmp_path):
    """Decision: names that are not UTF-8 work when the JSON refers to them (surrogate escapes)."""
    data = load_json(dataset)
    old = dataset / "images" / data["images"][0]["file_name"]
    new = os.path.join(os.fsencode(dataset / "images"), b"zelle_\xe9.png")
    os.rename(old, new)
    data["images"][0]["file_name"] = os.fsdecode(b"zelle_\xe9.png")
    save_json(dataset, data)
    out = run_script("setup_two_stage.py", "--dataset", str(dataset), cwd=tmp_path)
    assert out.returncode == 0, text(out.stdout) + text(out.stderr)

    from mask2former.data.coco_records import load_coco_instances, record_masks

    records = load_coco_instances(dataset / "annotations" / TRAIN_JSON, dataset / "images")
    assert os.fsencode(records[0]["file_name"]) == new
    assert record_masks(records[0]).shape[1:] == (SIZE, SIZE)


# --------------------------------------------------------------------------- training refuses


def assert_one_line_error(out: subprocess.CompletedProcess, path: str | os.PathLike, *fragments: str) -> str:
    stderr = text(out.stderr)
    assert out.returncode == 1, text(out.stdout) + stderr
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert errors[0].startswith(f"error: {printed(path)}: "), errors[0]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize(
    "problem", ["truncated_tiff", "polygon_self_intersecting", "json_not_coco", "non_utf8_name_corrupt"]
)
def test_training_refuses_a_broken_dataset_before_training(problem, dataset, tmp_path):
    bad_file, fragment = PROBLEMS[problem](dataset)
    before = snapshot(dataset)
    cwd, output = tmp_path / "cwd", tmp_path / "run"
    cwd.mkdir()
    out = run_script(
        "train_two_stage.py",
        "--config-dir",
        TINY,
        "--stage",
        "1",
        "--dataset",
        str(dataset),
        "--opts",
        "SOLVER.MAX_ITER",
        "1",
        "OUTPUT_DIR",
        str(output),
        cwd=cwd,
    )
    assert_one_line_error(out, bad_file, fragment)
    assert snapshot(dataset) == before
    assert not list(cwd.iterdir())
    if output.exists():  # no training happened: no checkpoint, no metrics
        assert not [
            p.name
            for p in output.iterdir()
            if p.suffix == ".pth" or p.name in ("metrics.json", "last_checkpoint")
        ]


def test_training_with_dataset_pointing_at_nothing(tmp_path):
    missing = tmp_path / "no_such_dataset"
    out = run_script(
        "train_two_stage.py",
        "--config-dir",
        TINY,
        "--stage",
        "1",
        "--dataset",
        str(missing),
        "--opts",
        "OUTPUT_DIR",
        str(tmp_path / "run"),
        cwd=tmp_path,
    )
    assert_one_line_error(out, missing, "not found")
    assert not missing.exists()


def test_stage2_without_stage1(dataset, tmp_path):
    before = snapshot(dataset)
    out = run_script(
        "train_two_stage.py", "--stage", "2", "--config-dir", TINY, "--dataset", str(dataset), cwd=tmp_path
    )
    line = assert_one_line_error(out, os.path.join(".", "output_stage1_algorithmic", "model_final.pth"))
    assert "Stage 1" in line and "--stage 1" in line
    assert snapshot(dataset) == before
    assert [p.name for p in tmp_path.iterdir()] == ["myotube_dataset"]  # no output folder created


def test_eval_with_weights_that_do_not_exist(dataset, tmp_path):
    before = snapshot(dataset)
    out = run_script(
        "train_net.py",
        "--config-file",
        os.path.join(TINY, "stage1_config.yaml"),
        "--dataset",
        str(dataset),
        "--eval-only",
        "MODEL.WEIGHTS",
        "/nonexistent.pth",
        "OUTPUT_DIR",
        str(tmp_path / "eval"),
        cwd=tmp_path,
    )
    assert_one_line_error(out, "/nonexistent.pth", "not found")
    assert snapshot(dataset) == before


# --------------------------------------------------------------------------- unusual but valid images


def _convert_images(
    root: Path, writer: Callable[[Path, np.ndarray, int], str], json_names=(TRAIN_JSON,)
) -> None:
    """Rewrite the images of ``json_names`` through ``writer(images_dir, gray8, index) -> new name``."""
    index = 0
    for json_name in json_names:
        data = load_json(root, json_name)
        for entry in data["images"]:
            png = root / "images" / entry["file_name"]
            gray = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
            png.unlink()
            entry["file_name"] = writer(root / "images", gray, index)
            index += 1
        save_json(root, data, json_name)


def _unusual_formats(images: Path, gray: np.ndarray, i: int) -> str:
    """One unusual format per image: 16-bit PNG, RGB(A) PNG, 16-bit TIFF, Z-stack TIFF."""
    kind = ["png16", "rgb", "rgba", "tif_rgb16", "zstack"][i]
    if kind == "png16":
        cv2.imwrite(str(images / "g16.png"), gray.astype(np.uint16) * 200)
        return "g16.png"
    if kind in ("rgb", "rgba"):
        img = np.dstack(
            [gray, gray // 2, np.full_like(gray, 30)] + ([np.full_like(gray, 255)] if kind == "rgba" else [])
        )
        cv2.imwrite(str(images / f"{kind}.png"), img)
        return f"{kind}.png"
    if kind == "tif_rgb16":  # a 16-bit grey TIFF stored as RGB by some software: RGB only for 8-bit PNG/JPG
        tifffile.imwrite(images / "g16.tif", gray.astype(np.uint16) * 100, photometric="minisblack")
        return "g16.tif"
    stack = np.stack([gray // 3, gray, gray // 2]).astype(np.uint16)
    tifffile.imwrite(images / "z.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    return "z.tif"


def _multichannel(images: Path, gray: np.ndarray, i: int) -> str:
    noise = np.random.default_rng(i).integers(0, 50, gray.shape).astype(np.uint16)
    if i % 2 == 0:  # channel 0: nuclei-like noise, channel 1: the myotubes
        tifffile.imwrite(
            images / f"c{i}.tif",
            np.stack([noise, gray.astype(np.uint16) * 16]),
            imagej=True,
            metadata={"axes": "CYX"},
        )
    else:  # a Z-stack of two-channel planes
        zc = np.stack([np.stack([noise, gray.astype(np.uint16) * z]) for z in (4, 16)])
        tifffile.imwrite(images / f"c{i}.tif", zc, imagej=True, metadata={"axes": "ZCYX"})
    return f"c{i}.tif"


def _mapper_outputs_are_finite(dataset: Path, opts: list[str]) -> None:
    from mask2former.config import load_config
    from mask2former.data.coco_records import load_coco_instances
    from mask2former.data.mapper import MyotubeDatasetMapper

    cfg = load_config(os.path.join(TINY, "stage1_config.yaml"), opts)
    records = load_coco_instances(
        dataset / "annotations" / TRAIN_JSON, dataset / "images", channel=cfg.INPUT.CHANNEL
    )
    for is_train in (True, False):
        mapper = MyotubeDatasetMapper(cfg, is_train=is_train)
        for record in records:
            sample = mapper(record, np.random.default_rng(0))
            pixels = sample["pixel_values"]
            assert pixels.shape[0] == 3 and pixels.shape[1] >= cfg.INPUT.IMAGE_SIZE
            assert bool(pixels.isfinite().all())
            assert float(pixels.std()) > 0  # the image content made it through
            assert sample["mask_labels"].shape[0] == sample["class_labels"].shape[0]
            assert bool(sample["mask_labels"].isfinite().all())
            if not is_train:  # no crop: every instance survives
                assert sample["mask_labels"].shape[0] == len(record["annotations"])


def test_unusual_formats_validate_and_map(base_dataset, tmp_path):
    root = tmp_path / "formats"
    make_unified_dataset(str(root), size=SIZE, n_train=5, n_test=1, n_manual=1, seed=6)
    _convert_images(root, _unusual_formats)
    out = run_script("setup_two_stage.py", "--dataset", str(root), cwd=tmp_path)
    assert out.returncode == 0, text(out.stdout) + text(out.stderr)
    assert "Validation: 0 errors" in text(out.stdout)
    _mapper_outputs_are_finite(root, [])


def test_multichannel_images_need_and_accept_input_channel(tmp_path):
    root = tmp_path / "channels"
    make_unified_dataset(str(root), size=SIZE, n_train=2, n_test=1, n_manual=1, seed=7)
    every_split = [p.name for p in sorted((root / "annotations").glob("*.json"))]
    _convert_images(root, _multichannel, every_split)  # INPUT.CHANNEL applies to every split
    before = snapshot(root)

    unset = run_script("setup_two_stage.py", "--dataset", str(root), cwd=tmp_path)
    assert unset.returncode == 1
    assert "2 channels" in text(unset.stdout) and "INPUT.CHANNEL" in text(unset.stdout)

    chosen = run_script(
        "setup_two_stage.py", "--dataset", str(root), "--opts", "INPUT.CHANNEL", "1", cwd=tmp_path
    )
    assert chosen.returncode == 0, text(chosen.stdout) + text(chosen.stderr)
    assert "Validation: 0 errors" in text(chosen.stdout)
    _mapper_outputs_are_finite(root, ["INPUT.CHANNEL", "1"])
    assert snapshot(root) == before
