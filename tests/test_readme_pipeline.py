"""The README's pipeline, command by command as written there, on tiny generated data.

The commands are read from README.md, so the test follows the README: only the model size and
training length are shrunk (the tiny CPU configs, a few iterations, small images).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tifffile

from mask2former.data.coco import read_coco_json
from mask2former.data.synthetic import generate_field
from tests.helpers import ENV, REPO_ROOT, TINY, scene, write_cvat

SIZES = ["INPUT.IMAGE_SIZE", "64"]


def readme_pipeline() -> list[list[str]]:
    """The commands of the README's "The pipeline" block."""
    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    block = text.split("### The pipeline", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.strip().splitlines():
        line = line.split(" #", 1)[0].strip()
        if line:
            commands.append(shlex.split(line))
    return commands


def shrink(cmd: list[str], extra_opts: list[str] = ()) -> list[str]:
    """Same command, tiny model: configs from configs/cpu_tiny, 4 iterations, 64 px model input."""
    assert cmd[0] == "python", cmd
    script, args = (
        cmd[1],
        [os.path.join(TINY, a) if a in ("stage1_config.yaml", "stage2_config.yaml") else a for a in cmd[2:]],
    )
    name = os.path.basename(script)
    if name == "batch_myotube_processing.py":
        args[args.index("--resolution") + 1] = "128"
    if name in ("setup_two_stage.py", "train_two_stage.py"):
        args += ["--config-dir", TINY]
    opts = list(extra_opts)
    if name == "train_two_stage.py":
        opts += ["SOLVER.MAX_ITER", "4", *SIZES]
    if name in ("setup_two_stage.py", "train_two_stage.py", "predict.py") and opts:
        args += ["--opts", *opts]
    if name == "train_net.py":
        args += [*SIZES, *extra_opts]  # detectron2's trailing KEY VALUE pairs
    if name == "predict.py":
        args += ["--no-progress"]
    return [sys.executable, os.path.join(REPO_ROOT, script), *args]


def run_pipeline(work, commands: list[list[str]]) -> dict[str, subprocess.CompletedProcess]:
    done = {}
    for cmd in commands:
        proc = subprocess.run(cmd, cwd=work, env=ENV, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        done[os.path.basename(cmd[1])] = proc
    return done


def test_the_readme_pipeline_runs_as_written(tmp_path):
    commands = readme_pipeline()
    scripts = [os.path.basename(c[1]) for c in commands]
    assert scripts == [
        "batch_myotube_processing.py",
        "organize_unified_dataset.py",
        "setup_two_stage.py",
        "train_two_stage.py",
        "train_net.py",
        "predict.py",
    ]
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(4):
        tifffile.imwrite(raw / f"field{i}.tif", generate_field(160, seed=40 + i, pixel_scale=0.5).image)
    write_cvat(str(tmp_path), scene())  # the manual annotations: a CVAT XML export beside its images/
    os.rename(tmp_path / "annotations.xml", tmp_path / "cvat.xml")

    done = run_pipeline(tmp_path, [shrink(c) for c in commands])
    assert (tmp_path / "myotube_dataset" / "annotations" / "manual_test_annotations.json").is_file()
    assert "READY" in done["setup_two_stage.py"].stdout
    # --eval-only with a Stage 2 config evaluates Stage 2's own model, not the Stage 1 model it started from.
    evaluated = done["train_net.py"].stdout
    assert (
        "Evaluating output_stage2_manual/model_final.pth" in evaluated and "myotube_manual_test" in evaluated
    )
    labels = tifffile.imread(tmp_path / "predictions" / "field0_labels.tif")
    assert labels.shape == (160, 160)


def test_eval_only_uses_the_weights_given_on_the_command_line(tmp_path):
    """After the pipeline's training, MODEL.WEIGHTS on the command line still chooses the model."""
    commands = readme_pipeline()
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(3):
        tifffile.imwrite(raw / f"field{i}.tif", generate_field(160, seed=50 + i, pixel_scale=0.5).image)
    write_cvat(str(tmp_path), scene())
    os.rename(tmp_path / "annotations.xml", tmp_path / "cvat.xml")
    steps = {os.path.basename(c[1]): c for c in commands}
    run_pipeline(
        tmp_path, [shrink(steps[s]) for s in ("batch_myotube_processing.py", "organize_unified_dataset.py")]
    )
    run_pipeline(tmp_path, [shrink(steps["train_two_stage.py"])])
    stage1 = "output_stage1_algorithmic/model_final.pth"
    cmd = shrink(
        ["python", "train_net.py", "--config-file", "stage2_config.yaml", "--eval-only"],
        ["MODEL.WEIGHTS", stage1],
    )
    out = run_pipeline(tmp_path, [cmd])["train_net.py"].stdout
    assert f"Evaluating {stage1} (MODEL.WEIGHTS given on the command line)" in out


def two_channel_field(seed: int, size: int = 160) -> np.ndarray:
    """Channel 0 DAPI, channel 1 myosin, as a microscope would write them (CYX)."""
    field = generate_field(size, seed=seed, pixel_scale=0.5)
    return np.stack([field.nuclei_image, field.image])


@pytest.mark.slow
def test_the_two_channel_workflow_runs_end_to_end(tmp_path):
    """Myosin in channel 1 of two-channel TIFFs: the guide's `--channel 1` and `--opts INPUT.CHANNEL 1`
    mean the same thing for the annotator, both stages and predict.py."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(4):
        tifffile.imwrite(
            raw / f"field{i}.tif",
            two_channel_field(60 + i),
            photometric="minisblack",
            metadata={"axes": "CYX"},
        )
    # Manual annotations on two-channel images too: a COCO file with the exact tubes of two fields.
    from mask2former.data.coco import write_coco_json
    from mask2former.data.coco_masks import bbox_of_mask, mask_to_rle

    manual = tmp_path / "manual"
    (manual / "images").mkdir(parents=True)
    images, anns = [], []
    for i in range(2):
        field = generate_field(160, seed=70 + i, pixel_scale=0.5)
        tifffile.imwrite(
            manual / "images" / f"manual{i}.tif",
            np.stack([field.nuclei_image, field.image]),
            photometric="minisblack",
            metadata={"axes": "CYX"},
        )
        images.append({"id": i + 1, "file_name": f"manual{i}.tif", "height": 160, "width": 160})
        anns += [
            {
                "id": len(anns) + 1,
                "image_id": i + 1,
                "category_id": 1,
                "segmentation": mask_to_rle(m),
                "area": float(m.sum()),
                "bbox": bbox_of_mask(m),
                "iscrowd": 0,
            }
            for m in field.masks
        ]
    write_coco_json(str(manual / "annotations.json"), images, anns)

    channel = ["INPUT.CHANNEL", "1"]
    py = sys.executable
    commands = [
        [
            py,
            os.path.join(REPO_ROOT, "utils", "batch_myotube_processing.py"),
            "--input_dir",
            "raw",
            "--output_dir",
            "annotator_out",
            "--resolution",
            "128",
            "--channel",
            "1",
            "--no-progress",
        ],
        [
            py,
            os.path.join(REPO_ROOT, "organize_unified_dataset.py"),
            "--algorithmic_dataset",
            "annotator_out",
            "--manual_dataset",
            "manual/annotations.json",
            "--output_dataset",
            "myotube_dataset",
            "--no-progress",
        ],
        shrink(["python", "setup_two_stage.py", "--dataset", "myotube_dataset"], channel),
        shrink(["python", "train_two_stage.py", "--dataset", "myotube_dataset"], channel),
        shrink(
            [
                "python",
                "predict.py",
                "--config-file",
                "stage2_config.yaml",
                "--weights",
                "output_stage2_manual/model_final.pth",
                "--input",
                "raw/field0.tif",
                "--output",
                "predictions",
                "--channel",
                "1",
            ],
            [],
        ),
    ]
    run_pipeline(tmp_path, commands)
    written = tifffile.imread(tmp_path / "annotator_out" / "images" / "field0.tif")
    assert written.shape == (2, 128, 128)  # the annotator keeps both channels
    entry = read_coco_json(
        str(tmp_path / "myotube_dataset" / "annotations" / "algorithmic_train_annotations.json")
    )["images"][0]
    assert (entry["original_height"], entry["original_width"]) == (160, 160)
    assert (tmp_path / "output_stage2_manual" / "model_final.pth").is_file()
    assert tifffile.imread(tmp_path / "predictions" / "field0_labels.tif").shape == (160, 160)
    # The annotator found its tubes in channel 1 (myosin), not in the nuclei of channel 0.
    myosin_union = (
        cv2.resize(
            generate_field(160, seed=60, pixel_scale=0.5).masks.any(axis=0).astype(np.uint8), (128, 128)
        )
        > 0
    )
    from mask2former.data.coco_records import load_coco_instances, record_masks

    records = [
        r
        for split in ("train", "test")
        for r in load_coco_instances(
            tmp_path / "annotator_out" / "annotations" / f"{split}_annotations.json",
            tmp_path / "annotator_out" / "images",
            channel=1,
        )
    ]
    record = next(r for r in records if r["file_name"].endswith("field0.tif"))
    found = record_masks(record).any(axis=0)
    assert (found & myosin_union).sum() / max(1, found.sum()) > 0.7
