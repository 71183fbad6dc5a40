"""The package outside the checkout: its wheel, installed into a fresh environment, runs the
console scripts, finds its shipped configs and model, and runs the quick demo, from a folder that
is not the checkout.

The fresh environment gets only the wheel; its dependencies (torch and the rest) come from the
environment running the tests through a .pth path, so nothing is downloaded (bench/install.py,
:func:`venv_with_wheel`). That environment also has this checkout installed in editable mode: the
test checks that ``mask2former`` is imported from the wheel, not from the checkout.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import zipfile

import pytest

import mask2former
from tests.helpers import REPO_ROOT, write_fields

SCRIPTS = (
    "myotube-predict",
    "myotube-annotate",
    "myotube-organize",
    "myotube-setup",
    "myotube-train",
    "myotube-train-two-stage",
)


def _pip_can_build_here() -> str | None:
    """Why the wheel cannot be built and installed offline here (None: it can)."""
    if importlib.util.find_spec("setuptools") is None:
        return "setuptools is not installed (pip wheel --no-build-isolation needs it)"
    if importlib.util.find_spec("pip") is None:
        return "pip is not installed"
    from pip import __version__ as pip_version

    if tuple(int(p) for p in pip_version.split(".")[:2]) < (22, 3):
        return f"pip {pip_version} has no --python (22.3 or newer)"
    return None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.wheel,
    pytest.mark.skipif(_pip_can_build_here() is not None, reason=str(_pip_can_build_here())),
]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel of the working tree, and a fresh environment with it installed."""
    from bench.install import build_wheel, package_source, venv_with_wheel

    folder = tmp_path_factory.mktemp("wheel")
    wheel, build_seconds = build_wheel(package_source(str(folder / "source")), str(folder / "dist"))
    venv = folder / "venv"
    install_seconds = venv_with_wheel(wheel, str(venv))
    # Shown with -s or -rP; bench/results/install_wheel.json keeps the benchmark's.
    print(
        f"wheel {os.path.basename(wheel)}: {os.path.getsize(wheel) / 2**20:.1f} MiB, "
        f"built in {build_seconds:.1f} s, installed in {install_seconds:.1f} s"
    )
    return {"wheel": wheel, "venv": venv, "bin": venv / "bin"}


def run(installed, args: list[str], cwd, timeout: float = 300) -> subprocess.CompletedProcess:
    """A command in the fresh environment, from ``cwd``: its bin first on PATH, no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(
        PATH=f"{installed['bin']}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(installed["venv"]),
        OMP_NUM_THREADS="1",
        MPLBACKEND="Agg",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_wheel_holds_the_configs_the_model_and_the_console_scripts(installed):
    with zipfile.ZipFile(installed["wheel"]) as z:
        names = set(z.namelist())
        entry_points = next(z.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    shipped = {
        os.path.relpath(os.path.join(root, f), os.path.dirname(mask2former.__file__))
        for root, _, files in os.walk(os.path.join(os.path.dirname(mask2former.__file__), "configs"))
        for f in files
        if f.endswith(".yaml")
    }
    assert shipped and {f"mask2former/{p}" for p in shipped} <= names
    assert {
        "mask2former/model_zoo/models.json",
        "mask2former/model_zoo/myotube-base.pth",
        "mask2former/napari/napari.yaml",
    } <= names
    assert not any(n.startswith(("tests/", "bench/", "configs/")) for n in names)
    for script in SCRIPTS:
        assert f"{script} = mask2former.commands." in entry_points


def test_the_installed_package_is_the_wheel_not_the_checkout(installed, tmp_path):
    out = run(
        installed,
        [
            "python",
            "-c",
            "import mask2former, mask2former.config as c; print(mask2former.__file__); "
            "print(c.config_path('cpu_tiny'))",
        ],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    package, configs = out.stdout.split()
    site = os.path.realpath(installed["venv"])
    assert os.path.realpath(package).startswith(site + os.sep), package
    assert os.path.realpath(configs).startswith(site + os.sep) and not os.path.realpath(package).startswith(
        os.path.realpath(REPO_ROOT)
    )


def test_every_console_script_prints_its_version_outside_the_checkout(installed, tmp_path):
    for script in SCRIPTS:
        out = run(installed, [script, "--version"], cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"{script} {mask2former.__version__}"
    assert not list(tmp_path.iterdir())


def test_myotube_predict_with_the_shipped_model_and_with_the_annotator_outside_the_checkout(
    installed, tmp_path
):
    write_fields(tmp_path / "fields", 1, size=160)
    for method, out in ((["--weights", "myotube-base"], "pred"), (["--method", "annotator"], "annotated")):
        done = run(
            installed,
            [
                "myotube-predict",
                *method,
                "--input",
                "fields",
                "--output",
                out,
                "--pixel-size",
                "0.5",
                "--no-progress",
            ],
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        for name in (
            "f00_overlay.png",
            "f00_labels.tif",
            "f00_coco.json",
            "f00_rois.zip",
            "f00_measurements.csv",
            "summary.csv",
            "predictions_coco.json",
        ):
            assert (tmp_path / out / name).is_file(), (out, name)
    assert "WEIGHTS: myotube-base" in (tmp_path / "pred" / "config.yaml").read_text()
    assert (tmp_path / "annotated" / "annotator.yaml").is_file()


def test_the_quick_demo_runs_outside_the_checkout(installed, tmp_path):
    done = run(
        installed,
        [
            "python",
            "-m",
            "mask2former.demo",
            "--quick",
            "--output",
            "demo",
            "--workers",
            "1",
            "--set",
            "comparisons=false",
        ],
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "demo" / "demo_results.json").read_text())
    assert {"Classical annotator", "Stage 1 (annotator labels)", "Stage 2 (Stage 1 + manual)"} <= set(
        results["results"]
    )
    # Each step ran the installed package's command, shown as its console script
    # with the shipped configs by name.
    assert (
        "\n$ myotube-train-two-stage --stage 1 --dataset demo/myotube_dataset --config-dir configs/cpu_tiny "
        in done.stdout
    )
    assert (tmp_path / "demo" / "predictions" / "summary.csv").is_file()
