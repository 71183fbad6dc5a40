"""Install time and size of the package alone and with each extra, in fresh virtual environments;
and the wheel itself.

    python -m bench.install                      # core, +formats, +napari
    python -m bench.install --extras formats     # core and one extra
    python -m bench.install --wheel              # the wheel: its size, build and install time

Each environment gets torch (TORCH_SPEC, as the Makefile) and then the package, with pip's cache
as it is on this machine, so the times are what a second install costs here, not a download. The
package is the committed tree (git archive HEAD).
Results go to bench/results/install.json.

``--wheel`` builds the wheel of the working tree (``pip wheel --no-deps --no-build-isolation``)
and installs it alone (``--no-deps``) into a fresh environment whose dependencies are this
environment's (see :func:`venv_with_wheel`); results go to bench/results/install_wheel.json.
tests/test_wheel.py uses the same functions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile

from bench.common import REPO_ROOT, write_results

# What a wheel is built from: the project's metadata and the package (no tests, benches or outputs).
WHEEL_SOURCES = ("pyproject.toml", "README.md", "LICENSE", "mask2former")


def folder_size(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                total += os.path.getsize(full)
    return total


def install(folder: str, source: str, extra: str | None, torch_spec: str) -> dict:
    venv = os.path.join(folder, extra or "core")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    python = os.path.join(venv, "bin", "python")
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *torch_spec.split()], check=True)
    base = folder_size(venv)
    start = time.perf_counter()
    target = source + (f"[{extra}]" if extra else "")
    subprocess.run([*pip, target], check=True)
    seconds = time.perf_counter() - start
    size = folder_size(venv)
    return {
        "extra": extra or "core",
        "seconds": round(seconds, 1),
        "size_mb": round(size / 2**20),
        "size_without_torch_mb": round((size - base) / 2**20),
    }


def package_source(dest: str) -> str:
    """A copy of the working tree's package and metadata in ``dest``: pip builds in the source
    folder, and building in the checkout would leave build/ and egg-info there."""
    os.makedirs(dest, exist_ok=True)
    for name in WHEEL_SOURCES:
        src = os.path.join(REPO_ROOT, name)
        if os.path.isdir(src):
            shutil.copytree(
                src, os.path.join(dest, name), ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            shutil.copy2(src, dest)
    return dest


def build_wheel(source: str, out_dir: str) -> tuple[str, float]:
    """The wheel of ``source`` (no dependencies, with this environment's setuptools) and the seconds it
    took."""
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            source,
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            out_dir,
            "--disable-pip-version-check",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    [wheel] = [os.path.join(out_dir, f) for f in os.listdir(out_dir) if f.endswith(".whl")]
    return wheel, seconds


def venv_with_wheel(wheel: str, venv: str) -> float:
    """A fresh environment in ``venv`` with ``wheel`` installed (console scripts included) and the
    seconds pip took. Its dependencies are this environment's, found through a .pth file as a plain
    path after the environment's own site-packages, so nothing is downloaded. A plain path, not a
    site folder: the .pth files there (an editable install's import finder among them) are not
    run, and only the wheel's mask2former can be imported."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = os.path.join(venv, "bin", "python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    with open(os.path.join(site, "zz_dependencies.pth"), "w", encoding="utf-8") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    start = time.perf_counter()
    # This environment's pip, run by the new interpreter (pip --python): scripts point at the new one.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            "--disable-pip-version-check",
            wheel,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - start


def measure_wheel() -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_wheel_") as folder:
        wheel, build_seconds = build_wheel(
            package_source(os.path.join(folder, "source")), os.path.join(folder, "dist")
        )
        install_seconds = venv_with_wheel(wheel, os.path.join(folder, "venv"))
        with zipfile.ZipFile(wheel) as z:
            names = z.namelist()
        return {
            "wheel": os.path.basename(wheel),
            "size_kb": round(os.path.getsize(wheel) / 1024),
            "files": len(names),
            "configs": sum(n.startswith("mask2former/configs/") for n in names),
            "build_seconds": round(build_seconds, 1),
            "install_seconds": round(install_seconds, 1),
        }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--extras", nargs="*", default=["formats", "napari"])
    parser.add_argument("--torch-spec", default=os.environ.get("TORCH_SPEC", "torch==2.13.0"))
    parser.add_argument(
        "--out",
        default=None,
        help="result file (default: bench/results/install.json, install_wheel.json with --wheel)",
    )
    parser.add_argument(
        "--wheel",
        action="store_true",
        help="measure the wheel alone (size, build and install time), not the installs",
    )
    args = parser.parse_args(argv)
    if args.wheel:
        result = measure_wheel()
        print(result, flush=True)
        write_results(
            args.out or os.path.join(REPO_ROOT, "bench", "results", "install_wheel.json"),
            result,
            with_torch=False,
        )
        return
    args.out = args.out or os.path.join(REPO_ROOT, "bench", "results", "install.json")
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench_install_") as folder:
        # The committed tree, exported: building in the checkout would leave build/ behind.
        source = os.path.join(folder, "source")
        os.makedirs(source)
        archive = subprocess.run(
            ["git", "-C", REPO_ROOT, "archive", "HEAD"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", source], input=archive, check=True)
        for extra in [None, *args.extras]:
            run = install(folder, source, extra, args.torch_spec)
            print(run, flush=True)
            runs.append(run)
    core = runs[0]
    for run in runs[1:]:
        run["adds_mb"] = run["size_mb"] - core["size_mb"]
        run["adds_seconds"] = round(run["seconds"] - core["seconds"], 1)
    write_results(args.out, {"torch_spec": args.torch_spec, "installs": runs})


if __name__ == "__main__":
    main()
