"""Root scripts run as a user would: setup_two_stage.py, register_two_stage_datasets.py, --help texts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, make_unified_dataset

SPLIT_FILES = {
    "myotube_algorithmic_train": "algorithmic_train_annotations.json",
    "myotube_algorithmic_test": "algorithmic_test_annotations.json",
    "myotube_manual_train": "manual_train_annotations.json",
    "myotube_manual_test": "manual_test_annotations.json",
}


def run_script(script: str, *args: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run a root script from another working directory, the way a user does."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def expected_counts(dataset: Path) -> dict[str, dict]:
    """Images, instances and per-image min/max computed straight from the JSON files."""
    counts = {}
    for name, fname in SPLIT_FILES.items():
        path = dataset / "annotations" / fname
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        per_image = {img["id"]: 0 for img in data["images"]}
        for ann in data["annotations"]:
            per_image[ann["image_id"]] += 1
        counts[name] = {
            "images": len(data["images"]),
            "instances": len(data["annotations"]),
            "min": min(per_image.values()),
            "max": max(per_image.values()),
        }
    return counts


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("setup") / "myotube_dataset"
    make_unified_dataset(str(root), n_train=5, n_test=3, n_manual=2, seed=4)
    return root


def test_setup_on_a_valid_dataset_prints_the_counts(dataset, tmp_path):
    out = run_script("setup_two_stage.py", "--dataset", str(dataset), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    text = out.stdout
    for name, c in expected_counts(dataset).items():
        line = next(line for line in text.splitlines() if line.strip().startswith(name))
        numbers = re.findall(r"[\d.]+", line.split(name, 1)[1])
        assert int(numbers[0]) == c["images"], line
        assert int(numbers[1]) == c["instances"], line
        low, _median, high = line.split()[-1].split("/")
        assert (int(low), int(high)) == (c["min"], c["max"]), line
    assert "Validation: 0 errors" in text
    assert "READY" in text and "NOT READY" not in text
    assert not list(tmp_path.iterdir())  # a check writes nothing into the working directory


def test_setup_json_is_one_object_with_the_same_counts(dataset, tmp_path):
    out = run_script("setup_two_stage.py", "--dataset", str(dataset), "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)  # the whole of stdout is one JSON object
    assert isinstance(report, dict)
    assert report["ready"] is True
    assert report["dataset"] == str(dataset)
    for name, c in expected_counts(dataset).items():
        split = report["splits"][name]
        assert split["present"] is True
        assert (split["images"], split["instances"]) == (c["images"], c["instances"])
        assert (split["instances_per_image"]["min"], split["instances_per_image"]["max"]) == (
            c["min"],
            c["max"],
        )
    assert [f for f in report["findings"] if f["level"] == "error"] == []
    assert report["environment"]["torch"]["version"]
    assert set(report["weights"]) == {"stage1", "stage2"}


def test_setup_without_the_optional_manual_test_split(tmp_path):
    root = Path(make_unified_dataset(str(tmp_path / "ds"), size=64, n_train=2, n_test=1, n_manual=1))
    (root / "annotations" / "manual_test_annotations.json").unlink()
    out = run_script("setup_two_stage.py", "--dataset", str(root), "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["splits"]["myotube_manual_test"]["present"] is False
    assert report["ready"] is True


def _break(root: Path) -> dict[str, str]:
    """One problem in each split file; returns problem → the file the report must name."""
    ann = root / "annotations"
    images = root / "images"

    def load(name):
        return json.loads((ann / name).read_text())

    def save(name, data):
        (ann / name).write_text(json.dumps(data))

    algo_train = load("algorithmic_train_annotations.json")
    missing = images / algo_train["images"][0]["file_name"]
    missing.unlink()

    algo_test = load("algorithmic_test_annotations.json")
    corrupt = images / algo_test["images"][1]["file_name"]
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)

    manual_train = load("manual_train_annotations.json")
    manual_train["annotations"][0]["segmentation"] = [[3.0, 3.0, 9.0, 9.0]]
    save("manual_train_annotations.json", manual_train)

    manual_test = load("manual_test_annotations.json")
    manual_test["annotations"][-1]["category_id"] = 42
    save("manual_test_annotations.json", manual_test)
    return {
        "missing image": str(missing),
        "corrupt image": str(corrupt),
        "bad polygon": str(ann / "manual_train_annotations.json"),
        "unknown category": str(ann / "manual_test_annotations.json"),
    }


def test_setup_names_every_problem_with_its_file(tmp_path):
    root = Path(make_unified_dataset(str(tmp_path / "ds"), size=64, n_train=3, n_test=2, n_manual=2))
    problems = _break(root)
    out = run_script("setup_two_stage.py", "--dataset", str(root), cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    error_lines = [line.strip() for line in out.stdout.splitlines() if line.strip().startswith("ERROR")]
    assert len(error_lines) == 4, out.stdout
    by_file = {line.split(None, 1)[1].split(": ", 1)[0]: line for line in error_lines}
    assert set(by_file) == set(problems.values())
    assert "not found" in by_file[problems["missing image"]]
    assert "corrupt" in by_file[problems["corrupt image"]]
    assert "2 points" in by_file[problems["bad polygon"]]
    assert "unknown category id 42" in by_file[problems["unknown category"]]
    assert "NOT READY" in out.stdout

    as_json = run_script("setup_two_stage.py", "--dataset", str(root), "--json", cwd=tmp_path)
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["ready"] is False
    errors = [f for f in report["findings"] if f["level"] == "error"]
    assert {f["file"] for f in errors} == set(problems.values())
    assert {f["split"] for f in errors} == set(SPLIT_FILES)


def test_register_script_lists_the_four_names(dataset, tmp_path):
    out = run_script("register_two_stage_datasets.py", "--dataset", str(dataset), "--load", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    registered = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("registered")]
    assert registered == list(SPLIT_FILES)
    counts = expected_counts(dataset)
    for line in out.stdout.splitlines():
        name = line.split()[1]
        assert line.rstrip().endswith(f"{counts[name]['images']} images")


def test_register_script_on_a_missing_folder(tmp_path):
    out = run_script("register_two_stage_datasets.py", "--dataset", str(tmp_path / "nope"), cwd=tmp_path)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert str(tmp_path / "nope") in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "script, flags",
    [
        ("train_two_stage.py", ["--stage", "--dataset", "--resume", "--num-gpus", "--config-dir", "--opts"]),
        ("train_net.py", ["--config-file", "--eval-only", "--dataset", "--resume", "--num-gpus", "--opts"]),
        ("setup_two_stage.py", ["--dataset", "--config-dir", "--json"]),
        ("register_two_stage_datasets.py", ["--dataset", "--load"]),
    ],
)
def test_help_describes_the_options(script, flags, tmp_path):
    out = run_script(script, "--help", cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage:")
    options = out.stdout.split("options:", 1)[1]
    entries = re.split(r"\n(?=  -)", options)  # one entry per option, continuation lines included
    for flag in flags:
        entry = next((e for e in entries if re.match(rf"\s*(-\w, )?{re.escape(flag)}\b", e)), None)
        assert entry, f"{script} --help does not list {flag}"
        words = re.findall(r"\b[a-z]{3,}\b", entry.split(flag, 1)[1])
        assert len(words) >= 2, f"{flag} has no description in {script} --help: {entry!r}"
    assert not list(tmp_path.iterdir())
