"""One version number: mask2former.__version__, which pyproject.toml reads and every command prints
with --version."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest

import mask2former
from tests.helpers import REPO_ROOT

ROOT_SCRIPTS = [
    "predict.py",
    "train_net.py",
    "train_two_stage.py",
    "setup_two_stage.py",
    "organize_unified_dataset.py",
    "register_two_stage_datasets.py",
    "utils/batch_myotube_processing.py",
    "utils/make_synthetic_dataset.py",
]
COMMANDS = [
    "predict",
    "annotate",
    "organize",
    "setup_two_stage",
    "train",
    "train_two_stage",
    "register_datasets",
    "make_synthetic",
]
MODULES = [
    *(f"mask2former.commands.{name}" for name in COMMANDS),
    "mask2former.demo",
    "mask2former.modeling.convert_detectron2",
    "mask2former.model_zoo.publish",
]


def run_version(command: list[str], cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, *command, "--version"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("script", ROOT_SCRIPTS)
def test_every_root_script_prints_its_name_and_the_version(script, tmp_path):
    out = run_version([os.path.join(REPO_ROOT, script)], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{os.path.basename(script)} {mask2former.__version__}"
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("module", MODULES)
def test_every_module_command_prints_the_version(module):
    out = run_version(["-m", module], cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"python -m {module} {mask2former.__version__}"


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+; 3.10 skips these checks
    with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_the_version_is_written_once_and_pyproject_reads_it():
    if importlib.util.find_spec("setuptools") is None:  # found without importing it (see below)
        pytest.skip("setuptools is not installed")
    raw = pyproject()
    assert "version" not in raw["project"] and "version" in raw["project"]["dynamic"]
    assert raw["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "mask2former.__version__"}
    # setuptools resolves it to the package's number, as a build would: in a process of its own,
    # since its distutils shim refuses to load after another module imported the standard library's.
    resolved = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from setuptools.config.pyprojecttoml import read_configuration; "
            "print(read_configuration(sys.argv[1])['project']['version'])",
            os.path.join(REPO_ROOT, "pyproject.toml"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert resolved.stdout.strip() == mask2former.__version__, resolved.stderr[-1000:]
    assert re.fullmatch(r"\d+\.\d+\.\d+", mask2former.__version__)


def test_the_changelog_and_citation_name_the_version():
    with open(os.path.join(REPO_ROOT, "CHANGELOG.md"), encoding="utf-8") as f:
        assert f"## [{mask2former.__version__}]" in f.read()
    with open(os.path.join(REPO_ROOT, "CITATION.cff"), encoding="utf-8") as f:
        assert re.search(rf'^version: "?{re.escape(mask2former.__version__)}"?$', f.read(), re.MULTILINE)


def test_every_console_script_runs_a_command_module_and_every_root_script_calls_one():
    scripts = pyproject()["project"]["scripts"]
    assert set(scripts) == {
        "myotube-predict",
        "myotube-annotate",
        "myotube-organize",
        "myotube-setup",
        "myotube-train",
        "myotube-train-two-stage",
    }
    for target in scripts.values():
        module, _, function = target.partition(":")
        assert (
            module.startswith("mask2former.commands.")
            and module.rsplit(".", 1)[1] in COMMANDS
            and function == "main"
        )
    # A root script is a shim: it runs the command module of the same name's main, nothing else.
    for script in ROOT_SCRIPTS:
        with open(os.path.join(REPO_ROOT, script), encoding="utf-8") as f:
            source = f.read()
        assert re.search(r"^from mask2former\.commands\.(\w+) import main", source, re.MULTILINE), script
        assert "add_argument" not in source, script
