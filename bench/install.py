"""Install time and size of the package alone and with each extra, in fresh virtual environments.

    python -m bench.install                      # core, +formats, +napari
    python -m bench.install --extras formats     # core and one extra

Each environment gets torch (TORCH_SPEC, as the Makefile) and then the package, with pip's cache
as it is on this machine, so the times are what a second install costs here, not a download. The
package is the committed tree (git archive HEAD).
Results go to bench/results/install.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from bench.common import REPO_ROOT, write_results


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
    return {"extra": extra or "core", "seconds": round(seconds, 1), "size_mb": round(size / 2**20),
            "size_without_torch_mb": round((size - base) / 2**20)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--extras", nargs="*", default=["formats", "napari"])
    parser.add_argument("--torch-spec", default=os.environ.get("TORCH_SPEC", "torch==2.13.0"))
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "bench", "results", "install.json"))
    args = parser.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench_install_") as folder:
        # The committed tree, exported: building in the checkout would leave build/ behind.
        source = os.path.join(folder, "source")
        os.makedirs(source)
        archive = subprocess.run(["git", "-C", REPO_ROOT, "archive", "HEAD"], check=True, capture_output=True).stdout
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
