"""The cluster examples of docs/predict.md ('Thousands of fields') run as written, with plain
processes standing in for the scheduler: the SLURM array script once per array index (with
SLURM_ARRAY_TASK_ID set, the #SBATCH lines being comments to bash and ``srun`` a plain launcher),
then its merge job; and the one-process-per-GPU loop on one node. Each gives one folder that holds
every image once, as one run would."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ENV, REPO_ROOT, write_fields

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cluster_examples")]

FIELDS = 8  # the array's 8 shards get one field each


def example_blocks() -> list[str]:
    with open(os.path.join(REPO_ROOT, "docs", "predict.md"), encoding="utf-8") as f:
        text = f.read()
    start = text.index("A SLURM array of")
    return re.findall(r"```bash\n(.*?)```", text[start:], re.DOTALL)[:3]


def stand_in_env(tmp: Path) -> dict:
    """``python`` is the interpreter running the tests, ``srun`` runs its command as it is."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for name, body in (("python", f'exec {shlex.quote(sys.executable)} "$@"'), ("srun", 'exec "$@"')):
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return {**ENV, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": REPO_ROOT}


def bash(script: str, cwd: Path, env: dict) -> None:
    done = subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{script}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


def merged_images(folder: Path) -> list[str]:
    with open(folder / "predictions_coco.json", encoding="utf-8") as f:
        images = json.load(f)["images"]
    with open(folder / "summary.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == [i["file_name"] for i in images]
    assert [i["id"] for i in images] == list(range(1, len(images) + 1))
    return [i["file_name"] for i in images]


@pytest.fixture
def project(tmp_path) -> Path:
    write_fields(tmp_path / "plate1", FIELDS, size=96)
    os.symlink(os.path.join(REPO_ROOT, "predict.py"), tmp_path / "predict.py")
    return tmp_path


def test_the_slurm_array_and_its_merge_job_run_with_plain_processes(project):
    array, merge, _ = example_blocks()
    assert "#SBATCH --array=1-8" in array and "--shard ${SLURM_ARRAY_TASK_ID}/8" in array
    env = stand_in_env(project)
    for index in range(1, 9):
        bash(array, project, {**env, "SLURM_ARRAY_TASK_ID": str(index)})
    # The merge job: the command sbatch --wrap would run once the array is done.
    wrapped = re.search(r'--wrap \\?\s*"(.*)"', merge, re.DOTALL).group(1)
    bash(wrapped, project, env)
    assert merged_images(project / "pred" / "all") == sorted(os.listdir(project / "plate1"))
    for name in sorted(os.listdir(project / "plate1")):
        assert (project / "pred" / "all" / f"{Path(name).stem}_labels.tif").is_file()


def test_one_process_per_gpu_runs_as_written_and_merges(project):
    _, _, per_gpu = example_blocks()
    assert "CUDA_VISIBLE_DEVICES=$k" in per_gpu
    bash(per_gpu, project, stand_in_env(project))
    assert merged_images(project / "pred" / "all") == sorted(os.listdir(project / "plate1"))
