"""The README's first screen and its three paths, run as written, from a fresh clone.

``tests/test_readme_start.py`` checks the same text statically (what the first screen says, that
every command names a real script and real options); here the commands run. The test clones the
checkout (``git clone`` of REPO_ROOT, then its HEAD commit checked out) into a temporary folder and
runs, from the clone's folder, every command of path 1 and path 2 as the README's ```bash blocks
write them, read from README.md so the test follows the README when it changes: lines ending in
``\\`` are joined to the next, comment lines are left out, and each command line goes to ``bash -c``
unchanged. Only ``python`` is replaced: a ``python`` wrapper first on PATH runs ``sys.executable``
(the environment running the tests), with PYTHONPATH set to the clone, so the clone's code is what
runs; the fixture checks that once (``import mask2former`` from the clone, also from a folder where
only PYTHONPATH can find it). The clone holds what is committed: changes not committed in the
working tree are not in it, on purpose (commit them to test them here).

Inputs the commands name are made first: the folder of images of ``--input``/``--input_dir``
(``raw/`` with ``*.tif``) gets a few generated whole fields, and the manual annotation file that
path 2's organizer reads is written by the napari plugin's own save function (see NOT_RUN).

Not run, by a rule on the command's program (NOT_RUN): installs (``make install``, ``source
.venv/bin/activate``, ``pip install``: the clone uses the test's environment, which has every
dependency) and the GUI (``napari``: no window here). Any other program fails the test until it is
classified. On the first screen, ``make demo`` (about 4 minutes on 2 cores; the quick demo runs in
tests/test_wheel.py) and ``make test`` (this suite) are not run but dry-run (``make -n``) in the
clone; the ``pip install`` of its prose is an install. Path 2's training runs as written: its
``--config-dir configs/cpu_tiny`` preset trains Stage 1 for 40 iterations and Stage 2 for 20 at
128 px (checked before it runs, so a bigger preset fails clearly instead of timing out). Path 3
trains the full configuration: without a CUDA GPU it is skipped, after the one script only it uses
(``train_net.py``) printed its ``--help`` from the clone (the others run in paths 1 and 2; the
static check covers every option); on a GPU it runs as written with training shortened by
``--opts``, which the README shows for that command (that branch has not yet run on a GPU).

About a minute on 2 busy CPU cores (57 s measured), most of it path 2's training (24 s) and the three
predict.py runs (about 7 s each).
"""

from __future__ import annotations

import csv
import glob
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
import tifffile

from mask2former.data.synthetic import generate_field
from tests.helpers import ENV, REPO_ROOT, scene, write_cvat, write_fields

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(name="readme_paths")]

README = os.path.join(REPO_ROOT, "README.md")
FIRST_SCREEN = 40  # lines, as tests/test_readme_start.py counts it
PATHS = {1: "## Path 1:", 2: "## Path 2:", 3: "## Path 3:"}

# Commands that are not run, by program, and why.
NOT_RUN = {
    "make": "installs the toolkit into .venv: the clone runs with the environment running the tests",
    "source": "activates that .venv: the clone runs with the environment running the tests",
    "pip": "installs into the active .venv: the clone runs with the environment running the tests",
    "napari": "opens napari's window, which cannot run headless: in its place the test saves the "
    "fields' generated myotubes with the plugin's own 'Save as manual annotation' "
    "(mask2former.napari.core.save_manual_annotation), the file path 2's organizer then reads",
}
# The first screen's commands: not run (too long, or the suite itself), only dry-run with make -n.
FIRST_SCREEN_NOT_RUN = {
    "make demo": "the whole two-stage demo takes about 4 minutes on 2 cores (tests/test_wheel.py runs "
    "its quick form)",
    "make test": "the test suite, which runs this test",
}

# The fields: whole fields (the generator draws a 1500 px field's myotubes at pixel_scale 1), small.
FIELDS, SIZE, MANUAL_FIELDS = 3, 320, 2
PIXEL_SCALE = SIZE / 1500
# The promised files of predict.py, per image NAME (README path 1, docs/predict.md "Outputs").
PER_IMAGE = ("_overlay.png", "_labels.tif", "_coco.json", "_rois.zip", "_measurements.csv")
# Path 2 runs its training as written: a preset bigger than this makes it too slow for the suite.
CPU_BUDGET = {"iterations": 100, "image_size": 256}
# Path 3 on a GPU: the README shows --opts for train_two_stage.py; this shortens both stages.
GPU_SHORTEN = ["SOLVER.MAX_ITER", "20"]
TIMEOUT = 300  # seconds per command


# ----------------------------------------------------------------------------- the README's commands


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def section(text: str, heading: str) -> str:
    """The README from the one heading starting with ``heading`` to the next heading of its level
    or above (headings inside code blocks do not count)."""
    level = len(heading) - len(heading.lstrip("#"))
    lines, fenced, start, end = text.splitlines(), False, None, None
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(rf"#{{1,{level}}} ", line):
            if line.startswith(heading):
                assert start is None, f"README.md: two headings start with {heading!r}"
                start = i
            elif start is not None and end is None:
                end = i
    assert start is not None, f"README.md: no heading starts with {heading!r}"
    return "\n".join(lines[start:end])


def command_lines(markdown: str) -> list[str]:
    """The commands of the ```bash blocks, as bash reads them: a line ending in ``\\`` joined to the
    next, blank and comment lines left out (a comment after a command stays: bash ignores it)."""
    out = []
    for block in re.findall(r"^```bash[ \t]*\n(.*?)^```", markdown, flags=re.M | re.S):
        for line in re.sub(r"\\\n[ \t]*", " ", block).splitlines():
            if line.strip() and not line.strip().startswith("#"):
                out.append(line.strip())
    return out


def path_lines(n: int) -> list[str]:
    return command_lines(section(read(README), PATHS[n]))


def argv(line: str) -> list[str]:
    return shlex.split(line, comments=True)


def option(line: str, flag: str) -> str | None:
    args = argv(line)
    return args[args.index(flag) + 1] if flag in args else None


def script(line: str) -> str | None:
    """The script a ``python`` command runs (``predict.py``), None for other commands."""
    args = argv(line)
    return os.path.basename(args[1]) if args[0] == "python" and len(args) > 1 else None


def is_run(line: str) -> bool:
    program = argv(line)[0]
    assert program == "python" or program in NOT_RUN, (
        f"README.md: {line!r}: the test neither runs {program!r} nor says why not (NOT_RUN)"
    )
    return program == "python"


# ----------------------------------------------------------------------------- the clone and its runs


def fresh_clone(dest: Path) -> Path:
    git = shutil.which("git")
    if git is None or not os.path.exists(os.path.join(REPO_ROOT, ".git")):
        pytest.skip("a fresh clone needs git and a git checkout (REPO_ROOT has no .git)")
    head = subprocess.run(
        [git, "-C", REPO_ROOT, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=60
    )
    assert head.returncode == 0, head.stderr
    for cmd in (
        [git, "clone", "--quiet", REPO_ROOT, str(dest)],
        [git, "-C", str(dest), "checkout", "--quiet", "--detach", head.stdout.strip()],
    ):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stderr[-2000:]}"
    return dest


def clone_env(clone: Path, bin_dir: Path) -> dict:
    """The test's environment (offline, one thread), with ``python`` the test's interpreter and the
    clone first on the module path."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    wrapper = bin_dir / "python"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n', encoding="utf-8")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    env = {k: v for k, v in ENV.items() if k not in ("BASH_ENV", "ENV", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(clone))
    return env


def tail(stream) -> str:
    if isinstance(stream, bytes):
        stream = stream.decode("utf-8", errors="backslashreplace")
    return (stream or "")[-3000:]


def run_line(line: str, ws: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """One command line, with bash, from the clone's folder; it must exit 0."""
    start = time.monotonic()
    try:
        done = subprocess.run(
            ["bash", "-c", line],
            cwd=cwd or ws["clone"],
            env=ws["env"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{line}\ntimed out after {TIMEOUT} s\nstderr (tail):\n{tail(err.stderr)}")
    print(f"{time.monotonic() - start:6.1f} s  {line}")
    assert done.returncode == 0, (
        f"{line}\nexited {done.returncode} in {ws['clone']}\n"
        f"stdout (tail):\n{tail(done.stdout)[-1500:]}\nstderr (tail):\n{tail(done.stderr)}"
    )
    return done


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> dict:
    """A fresh clone, how to run its commands, and its folder of images."""
    if shutil.which("bash") is None:
        pytest.skip("the README's commands are bash")
    root = tmp_path_factory.mktemp("readme_paths")
    clone = fresh_clone(root / "clone")
    ws = {"clone": clone, "env": clone_env(clone, root / "bin")}
    check_the_clone_runs(ws)
    ws["raw"], ws["names"] = write_raw_fields(clone, path_lines(1) + path_lines(2))
    return ws


def check_the_clone_runs(ws: dict) -> None:
    """The clone's code is what runs: from its folder, and from one where only PYTHONPATH finds it
    (the editable install of the environment points elsewhere)."""
    clone = ws["clone"]
    for cwd in (clone, clone / "utils"):
        where = run_line('python -c "import mask2former; print(mask2former.__file__)"', ws, cwd=cwd)
        package = os.path.realpath(where.stdout.strip())
        assert package == os.path.realpath(clone / "mask2former" / "__init__.py"), (
            f"python imports mask2former from {package}, not from the clone {clone}"
        )


def write_raw_fields(clone: Path, lines: list[str]) -> tuple[Path, list[str]]:
    """Generated fields where the commands read their images (``--input "raw/*.tif"``,
    ``--input_dir raw``); returns the folder and the fields' names without the suffix."""
    folders, suffixes = set(), set()
    for line in lines:
        for flag in ("--input", "--input_dir"):
            value = option(line, flag) if is_run(line) else None
            if value is None:
                continue
            if re.search(r"[*?[]", value):
                folders.add(os.path.dirname(value))
                suffixes.add(os.path.splitext(value)[1])
            else:
                folders.add(value)
    assert len(folders) == 1, f"the commands read images from several folders: {sorted(folders)}"
    assert len(suffixes) <= 1 and all(suffixes), f"images of several formats: {sorted(suffixes)}"
    raw = clone / folders.pop()
    suffix = suffixes.pop() if suffixes else ".tif"
    paths = write_fields(raw, FIELDS, size=SIZE, suffix=suffix, pixel_scale=PIXEL_SCALE)
    assert all(os.path.isfile(p) for p in paths), f"could not write {suffix} images"
    return raw, [Path(p).stem for p in paths]


# ----------------------------------------------------------------------------- what each step promises


def rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return next(csv.reader(f))


def coco_counts(path: Path) -> tuple[int, int]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return len(data["images"]), len(data["annotations"])


def check_promises(line: str, done: subprocess.CompletedProcess, ws: dict) -> None:
    """The files (or the output) README.md promises for this step."""
    clone, names, name = ws["clone"], ws["names"], script(line)
    if name == "predict.py":
        out = clone / option(line, "--output")
        missing = [f"{n}{end}" for n in names for end in PER_IMAGE if not (out / f"{n}{end}").is_file()]
        assert not missing, f"{line}: {out.name}/ lacks {missing}"
        summary = rows(out / "summary.csv")
        assert sorted(r["name"] for r in summary) == sorted(names), f"{line}: summary.csv {summary}"
        assert not any(r.get("error") for r in summary), f"{line}: summary.csv {summary}"
    elif name == "batch_myotube_processing.py":
        out = clone / option(line, "--output_dir")
        resolution = int(option(line, "--resolution"))
        for n in names:
            [image] = glob.glob(str(out / "images" / f"{n}.*"))
            read = tifffile.imread(image) if image.endswith((".tif", ".tiff")) else cv2.imread(image, -1)
            assert max(read.shape[:2]) == resolution, f"{line}: {image} is {read.shape}"
        counts = [coco_counts(Path(p)) for p in glob.glob(str(out / "annotations" / "*.json"))]
        assert sum(i for i, _ in counts) == len(names), f"{line}: annotations/ holds {counts}"
        assert sum(a for _, a in counts) > 0, f"{line}: the annotator found no myotube"
    elif name == "organize_unified_dataset.py":
        out = clone / option(line, "--output_dataset") / "annotations"
        algorithmic = [coco_counts(out / f"algorithmic_{s}_annotations.json")[0] for s in ("train", "test")]
        assert sum(algorithmic) == len(names) and all(algorithmic), f"{line}: algorithmic {algorithmic}"
        manual = [
            coco_counts(out / f"manual_{s}_annotations.json")[0]
            for s in ("train", "test")
            if (out / f"manual_{s}_annotations.json").is_file()
        ]
        assert manual and manual[0] and sum(manual) == ws["manual_fields"], f"{line}: manual {manual}"
    elif name == "setup_two_stage.py":
        assert "READY" in done.stdout and "NOT READY" not in done.stdout, done.stdout[-2000:]
    elif name == "train_two_stage.py":
        stage1 = glob.glob(str(clone / "output_stage1*" / "model_final.pth"))
        assert stage1, f"{line}: no output_stage1*/model_final.pth"
        assert (clone / "output_stage2_manual" / "model_final.pth").is_file(), line
    elif name == "train_net.py":
        assert "Evaluating output_stage2_manual/model_final.pth" in done.stdout, done.stdout[-2000:]
    else:
        raise AssertionError(f"README.md: {line!r}: the test does not know what this step promises")


def check_cpu_preset(line: str, clone: Path) -> None:
    """Path 2's training is run as written: only while its preset is small enough for the suite."""
    from mask2former.config import load_config

    folder = clone / (option(line, "--config-dir") or ".")  # without it: the stage configs at the root
    for stage in (1, 2):
        cfg = load_config(str(folder / f"stage{stage}_config.yaml"))
        assert (
            cfg.SOLVER.MAX_ITER <= CPU_BUDGET["iterations"]
            and cfg.INPUT.IMAGE_SIZE <= CPU_BUDGET["image_size"]
        ), (
            f"{line}: Stage {stage} trains {cfg.SOLVER.MAX_ITER} iterations at {cfg.INPUT.IMAGE_SIZE} px, "
            f"more than this test runs as written ({CPU_BUDGET}): shorten it with --opts where the README "
            "shows that option, or list the command as checked but not run"
        )


def save_as_manual_annotation(ws: dict, manual_json: str) -> None:
    """What napari's 'Save as manual annotation' writes for corrected fields: here the fields'
    generated myotubes, saved by the plugin's own function into the file the organizer reads."""
    from mask2former.napari.core import layers_from_masks, save_manual_annotation

    folder = ws["clone"] / os.path.dirname(manual_json)
    images = sorted(glob.glob(str(ws["raw"] / "*")))[:MANUAL_FIELDS]
    for i, image in enumerate(images):
        top, under = layers_from_masks(generate_field(SIZE, seed=i, pixel_scale=PIXEL_SCALE).masks)
        written = save_manual_annotation(str(folder), image, top, under)
    assert os.path.realpath(written) == os.path.realpath(ws["clone"] / manual_json), (
        f"napari saves {written}, the README's organizer reads {manual_json}"
    )
    ws["manual_fields"] = len(images)


def run_path(lines: list[str], ws: dict, extra_opts: dict[str, list[str]] | None = None) -> dict:
    """Each command in turn, as written (``extra_opts``: --opts appended to a script's command),
    and what it promises; returns the runs by command line."""
    runs = {}
    for line in lines:
        if argv(line)[0] == "napari":
            organize = next(x for x in lines if script(x) == "organize_unified_dataset.py")
            save_as_manual_annotation(ws, option(organize, "--manual_dataset"))
        if not is_run(line):
            print(f"not run  {line}  ({NOT_RUN[argv(line)[0]]})")
            continue
        written = line
        if extra_opts and script(line) in extra_opts:
            written = f"{line.split(' #', 1)[0]} --opts {shlex.join(extra_opts[script(line)])}"
        runs[line] = run_line(written, ws)
        check_promises(line, runs[line], ws)
    return runs


# ----------------------------------------------------------------------------- tests


def test_the_first_screen_commands_dry_run_in_the_clone(ws):
    first = "\n".join(read(README).splitlines()[:FIRST_SCREEN])
    lines = [" ".join(argv(x)) for x in command_lines(first)]
    assert lines and sorted(lines) == sorted(FIRST_SCREEN_NOT_RUN), (
        f"the first screen's commands {lines}: run the cheap ones here, say why the others are not"
    )
    for line in lines:
        done = run_line(line.replace("make ", "make -n ", 1), ws)
        if line == "make test":
            # CI runs `make test`: its pytest must not leave out the slow tests (this one is slow).
            # (make may print the directory it enters, which under pytest's tmp_path says "pytest" too)
            [pytest_line] = [x for x in done.stdout.splitlines() if " -m pytest" in x]
            assert "not slow" not in pytest_line, pytest_line
        if line == "make demo":
            assert "mask2former.demo" in done.stdout, done.stdout


@pytest.fixture(scope="module")
def path_1(ws) -> dict:
    return run_path(path_lines(1), ws)


def test_path_1_segment_your_images_now(ws, path_1):
    assert sorted(script(x) for x in path_1) == [
        "batch_myotube_processing.py",
        "predict.py",
        "predict.py",
    ]
    # The base model writes "the same files and columns" as the annotator.
    first, *others = (ws["clone"] / option(x, "--output") for x in path_1 if script(x) == "predict.py")
    for out in others:
        for n in ws["names"]:
            assert header(out / f"{n}_measurements.csv") == header(first / f"{n}_measurements.csv"), out


def test_path_2_correct_in_napari_and_fine_tune(ws, path_1):
    lines = path_lines(2)
    for line in lines:
        if script(line) == "train_two_stage.py":
            check_cpu_preset(line, ws["clone"])
    runs = run_path(lines, ws)
    assert [script(x) for x in runs] == [
        "organize_unified_dataset.py",
        "setup_two_stage.py",
        "train_two_stage.py",
        "predict.py",
    ]
    trained = option(list(runs)[-1], "--weights")
    assert (ws["clone"] / trained).is_file(), f"predict.py reads {trained}, which training did not write"


def test_path_3_the_full_configuration_on_a_gpu(ws, tmp_path):
    lines = path_lines(3)
    elsewhere = {script(x) for n in (1, 2) for x in path_lines(n)}
    for name in sorted({script(x) for x in lines if is_run(x)} - elsewhere):
        where = argv(next(x for x in lines if script(x) == name))[1]
        assert "usage:" in run_line(f"python {shlex.quote(where)} --help", ws).stdout
    import torch

    if not torch.cuda.is_available():
        pytest.skip(
            "path 3 trains Swin-B at 1500 px and needs a CUDA GPU: torch.cuda.is_available() is False"
        )
    from mask2former.config import load_config
    from mask2former.modeling.weights import hub_cached

    weights = load_config(str(ws["clone"] / "configs" / "stage1_config.yaml")).MODEL.WEIGHTS
    if not hub_cached(weights):
        pytest.skip(f"{weights} is not in the local Hugging Face cache and the tests run offline")
    clone = fresh_clone(tmp_path / "clone")
    gpu = {"clone": clone, "env": {**ws["env"], "PYTHONPATH": str(clone)}}
    check_the_clone_runs(gpu)
    gpu["raw"], gpu["names"] = write_raw_fields(clone, lines)
    organize = next(x for x in lines if script(x) == "organize_unified_dataset.py")
    write_cvat(str(clone), scene())  # the manual fields: a CVAT export beside its images/
    os.rename(clone / "annotations.xml", clone / option(organize, "--manual_dataset"))
    gpu["manual_fields"] = len(scene())
    opts = GPU_SHORTEN
    if torch.cuda.get_device_properties(0).total_memory < 40 * 2**30:  # the README's advice for 24 GB cards
        opts = [*opts, "MODEL.SWIN.USE_CHECKPOINT", "True"]
    runs = run_path(lines, gpu, extra_opts={"train_two_stage.py": opts})
    assert [script(x) for x in runs][-1] == "predict.py"
