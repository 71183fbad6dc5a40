"""What the tests share, in one module: constants, tiny models, generated data and helpers.

Test modules import what they share from here (``from tests.helpers import ...``) and never from
one another: a test module is never loaded for the sake of a helper of it. A helper that only one
test module uses stays in that module; pytest fixtures and the environment defaults stay in
``tests/conftest.py``.

Sections: configs and tiny models; generated images and datasets (with the manual-annotation scene
and the files each annotation tool writes for it); CLI runs; files and outputs; docs figures.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment

from mask2former.config import load_config
from mask2former.data.coco import read_coco_json, write_coco_json
from mask2former.data.coco_masks import bbox_of_mask, mask_to_rle, segmentation_to_mask
from mask2former.data.synthetic import generate_field
from mask2former.evaluation.metrics import mask_iou_matrix

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------- configs and tiny models


# The tiny CPU configs: the folder (--config-dir) and its two stage configs.
TINY = os.path.join(REPO_ROOT, "configs", "cpu_tiny")
TINY_STAGE1 = os.path.join(TINY, "stage1_config.yaml")
TINY_STAGE2 = os.path.join(TINY, "stage2_config.yaml")

# The presets start Stage 1 from the shipped base model with its 64 queries and predict with the
# four flips fused; unit tests build a random 16-query model that predicts each tile once unless
# they say otherwise.
UNIT_DEFAULTS = ("MODEL.WEIGHTS", "", "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 16, "TEST.AUG.ENABLED", False)
# The tiny architecture's backbone is a ResNet; tests of Swin-only paths (the detectron2 bridge)
# ask for the Swin.
SWIN_TINY = ("MODEL.BACKBONE.NAME", "swin")


def tiny_cfg(*opts, stage: int = 1, freeze: bool = True):
    return load_config(
        TINY_STAGE1 if stage == 1 else TINY_STAGE2, [str(o) for o in (*UNIT_DEFAULTS, *opts)], freeze=freeze
    )


def save_tiny_checkpoint(path, seed: int = 0, opts: tuple = (), input_scale: dict | None = None) -> str:
    """A tiny Stage 2 model (16 queries) with random weights drawn from ``seed``, saved with its
    config (``opts`` applied) and class names like a model_final.pth, and with ``input_scale``
    recorded as training records it: two seeds, two different models."""
    import torch

    from mask2former.modeling.build import build_model

    cfg = load_config(TINY_STAGE2, [str(o) for o in (*UNIT_DEFAULTS, *opts)])
    torch.manual_seed(seed)
    state = {
        "model": build_model(cfg, ["myotube"]).state_dict(),
        "class_names": ["myotube"],
        "cfg": cfg.dump(),
    }
    if input_scale is not None:
        state["input_scale"] = input_scale
    torch.save(state, path)
    return str(path)


def save_tiny_model(path: Path, queries: int = 16, with_config: bool = True) -> Path:
    import torch

    from mask2former.modeling.build import build_model

    cfg = load_config(
        TINY_STAGE2, ["MODEL.WEIGHTS", "", "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", str(queries)]
    )
    torch.manual_seed(0)
    state = {"model": build_model(cfg, ["myotube"]).state_dict(), "class_names": ["myotube"]}
    if with_config:
        state["cfg"] = cfg.dump()
    torch.save(state, path)
    return path


# --------------------------------------------------------------------------- generated images and datasets


# Tiny generated COCO datasets: thick curved lines as "myotubes", overlaps included.
def draw_tube_masks(rng: np.random.Generator, size: int, n: int) -> list[np.ndarray]:
    masks = []
    for _ in range(n):
        for _attempt in range(20):
            m = np.zeros((size, size), np.uint8)
            p0 = rng.uniform(0.1, 0.9, 2) * size
            angle = rng.uniform(0, np.pi)
            length = rng.uniform(0.4, 0.8) * size
            p1 = p0 + length * np.array([np.cos(angle), np.sin(angle)])
            p1 = np.clip(p1, 2, size - 3)
            width = int(rng.integers(max(3, size // 40), max(5, size // 16)))
            cv2.line(m, tuple(int(v) for v in p0), tuple(int(v) for v in p1), 1, thickness=width)
            if m.sum() > size:
                masks.append(m.astype(bool))
                break
    return masks


def polyline_mask(height: int, width: int, points, thickness: int) -> np.ndarray:
    """A tube of ``thickness`` pixels along the polyline ``points`` ((x, y) pairs)."""
    m = np.zeros((height, width), np.uint8)
    pts = np.round(np.asarray(points)).astype(np.int32)
    cv2.polylines(m, [pts], False, 1, thickness=thickness)
    return m.astype(bool)


def render_image(rng: np.random.Generator, masks: list[np.ndarray], size: int, dtype=np.uint8) -> np.ndarray:
    img = rng.normal(20, 4, (size, size))
    for m in masks:
        img += m * rng.uniform(80, 140)
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    top = 255 if dtype == np.uint8 else 4095
    scale = 1 if dtype == np.uint8 else 16
    return np.clip(img * scale, 0, top).astype(dtype)


def make_coco_dataset(
    root: str,
    split_files: dict[str, int],
    size: int = 96,
    seed: int = 0,
    tubes: tuple[int, int] = (2, 4),
    use_polygons: bool = False,
    empty_images: int = 0,
) -> dict[str, list[list[np.ndarray]]]:
    """Write ``root/images`` and ``root/annotations/<name>`` for each {json name: image count}.

    Returns the ground-truth masks per file per image. RLE by default; ``use_polygons`` writes
    contours as polygons instead. ``empty_images`` of each split get no instance at all.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    truth: dict[str, list[list[np.ndarray]]] = {}
    for json_name, count in split_files.items():
        stem = os.path.splitext(json_name)[0].replace("_annotations", "")
        images, annotations, per_image = [], [], []
        for i in range(count):
            n = 0 if i < empty_images else int(rng.integers(tubes[0], tubes[1] + 1))
            masks = draw_tube_masks(rng, size, n)
            img = render_image(rng, masks, size)
            fname = f"{stem}_{i:03d}.png"
            cv2.imwrite(os.path.join(root, "images", fname), img)
            images.append({"id": i + 1, "file_name": fname, "height": size, "width": size})
            for m in masks:
                if use_polygons:
                    contours, _ = cv2.findContours(
                        m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
                    )
                    segm = [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]
                else:
                    segm = mask_to_rle(m)
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": i + 1,
                        "category_id": 1,
                        "segmentation": segm,
                        "bbox": bbox_of_mask(m),
                        "area": float(m.sum()),
                        "iscrowd": 0,
                    }
                )
            per_image.append(masks)
        write_coco_json(os.path.join(root, "annotations", json_name), images, annotations)
        truth[json_name] = per_image
    return truth


def make_unified_dataset(
    root: str, size: int = 96, n_train: int = 4, n_test: int = 2, n_manual: int = 2, seed: int = 0
) -> str:
    make_coco_dataset(
        root,
        {
            "algorithmic_train_annotations.json": n_train,
            "algorithmic_test_annotations.json": n_test,
            "manual_train_annotations.json": n_manual,
            "manual_test_annotations.json": n_test,
        },
        size=size,
        seed=seed,
    )
    return root


def write_fields(
    folder, n: int, size: int = 96, seed: int = 0, suffix: str = ".png", pixel_scale: float = 0.5
) -> list[str]:
    """``n`` generated fields (8-bit, the synthetic generator's myotubes; ``suffix`` picks the format,
    e.g. ``.tif``), ``f00.png`` ... in sorted order; field ``i`` is ``generate_field(size, seed=seed + i,
    pixel_scale=pixel_scale)``."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(n):
        path = os.path.join(folder, f"f{i:02d}{suffix}")
        cv2.imwrite(path, generate_field(size, seed=seed + i, pixel_scale=pixel_scale).image)
        paths.append(path)
    return paths


def field_image(size: int = 96, seed: int = 3) -> np.ndarray:
    return generate_field(size, seed=seed, pixel_scale=0.5).image


def draw_field(height, width, tubes, nuclei=(), nucleus_radius=7, seed=0):
    """Two-channel 16-bit field: channel 0 nuclei, channel 1 myotubes (thick polylines)."""
    rng = np.random.default_rng(seed)
    tube_ch = np.zeros((height, width), np.uint16)
    for pts, thickness in tubes:
        cv2.polylines(tube_ch, [np.asarray(pts, np.int32)], False, 3000, thickness=thickness)
    nuc_ch = np.zeros((height, width), np.uint16)
    for x, y in nuclei:
        cv2.circle(nuc_ch, (x, y), nucleus_radius, 2500, -1)
    noise = rng.normal(200, 20, (2, height, width))
    return np.clip(np.stack([nuc_ch, tube_ch]) + noise, 0, 65535).astype(np.uint16)


# The manual-annotation scene, and the files each annotation tool writes for it (CVAT's row-major
# mask RLE, LabelMe's base64 PNG mask boxes, VIA's all_points_x/y, CVAT's COCO export with iscrowd=1
# RLE masks), written independently of the importers; polygons are rasterised as the tool's COCO
# export would (through pycocotools).

H, W = 48, 64  # not square: a transposed mask would not fit


def band(x0: float, y0: float, x1: float, y1: float, half_width: float) -> list[float]:
    """A thick straight 'myotube' as a 4-point polygon."""
    d = np.array([x1 - x0, y1 - y0], float)
    n = np.array([-d[1], d[0]]) / np.linalg.norm(d) * half_width
    pts = [(x0 + n[0], y0 + n[1]), (x1 + n[0], y1 + n[1]), (x1 - n[0], y1 - n[1]), (x0 - n[0], y0 - n[1])]
    return [float(round(v, 2)) for p in pts for v in p]


POLY_A = band(4, 8, 58, 30, 3.2)
POLY_B = band(8, 40, 60, 6, 2.7)  # crosses POLY_A: an overlapping pair


def ring_mask() -> np.ndarray:
    """A mask with a hole: polygons cannot say this, masks must keep it."""
    m = np.zeros((H, W), bool)
    m[20:40, 30:56] = True
    m[26:34, 36:48] = False
    return m


def rasterise(polygon: list[float]) -> np.ndarray:
    return mask_utils.decode(mask_utils.frPyObjects([polygon], H, W))[..., 0].astype(bool)


def write_image(path: str, seed: int = 0, dtype=np.uint8) -> None:
    rng = np.random.default_rng(seed)
    top = 255 if dtype == np.uint8 else 4095
    img = rng.integers(0, top, (H, W)).astype(dtype)
    if path.endswith((".tif", ".tiff")):
        tifffile.imwrite(path, img)
    else:
        cv2.imwrite(path, img)


# Image 1: the overlapping pair of polygons. Image 2: a ring mask plus one polygon.
def scene(with_masks: bool = True) -> dict[str, list]:
    second: list = [("polygon", POLY_B)]
    if with_masks:
        second.insert(0, ("mask", ring_mask()))
    return {"field_a.png": [("polygon", POLY_A), ("polygon", POLY_B)], "field_b.png": second}


def label_scene() -> tuple[np.ndarray, list[np.ndarray]]:
    """Ring with a hole (id 7), two touching instances (ids 2 and 1000), as a 16-bit label image."""
    labels = np.zeros((H, W), np.uint16)
    ring = ring_mask()
    labels[ring] = 7
    labels[2:12, 4:20] = 2
    labels[2:12, 20:34] = 1000  # touches id 2 along a whole edge
    return labels, [labels == v for v in (2, 7, 1000)]


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def cvat_rle(mask: np.ndarray) -> str:
    """CVAT: runs over the box, row-major, starting with a background run."""
    x0, y0, x1, y1 = mask_box(mask)
    flat = mask[y0 : y1 + 1, x0 : x1 + 1].reshape(-1).astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat[0] == 1:
        runs = [0] + runs
    return ", ".join(str(r) for r in runs)


def coco_uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE: column-major runs starting with background (as CVAT's COCO export)."""
    flat = mask.reshape(-1, order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat[0] == 1:
        runs = [0] + runs
    return {"size": [mask.shape[0], mask.shape[1]], "counts": runs}


def write_cvat(folder: str, scene_: dict, subsets: dict[str, str] | None = None) -> str:
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    for i, (name, shapes) in enumerate(scene_.items()):
        write_image(os.path.join(folder, "images", name), seed=i)
        attrs = {"id": str(i), "name": name, "width": str(W), "height": str(H)}
        if subsets:
            attrs["subset"] = subsets[name]
        img = ET.SubElement(root, "image", attrs)
        ET.SubElement(
            img, "box", {"label": "myotube", "xtl": "1", "ytl": "1", "xbr": "9", "ybr": "9", "z_order": "0"}
        )
        for kind, shape in shapes:
            if kind == "polygon":
                points = ";".join(f"{shape[k]:.2f},{shape[k + 1]:.2f}" for k in range(0, len(shape), 2))
                ET.SubElement(
                    img,
                    "polygon",
                    {
                        "label": "myotube",
                        "source": "manual",
                        "occluded": "0",
                        "points": points,
                        "z_order": "0",
                    },
                )
            else:
                x0, y0, x1, y1 = mask_box(shape)
                ET.SubElement(
                    img,
                    "mask",
                    {
                        "label": "myotube",
                        "source": "manual",
                        "occluded": "0",
                        "rle": cvat_rle(shape),
                        "left": str(x0),
                        "top": str(y0),
                        "width": str(x1 - x0 + 1),
                        "height": str(y1 - y0 + 1),
                        "z_order": "0",
                    },
                )
    path = os.path.join(folder, "annotations.xml")
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path


def labelme_mask_shape(mask: np.ndarray, label: str = "myotube") -> dict:
    x0, y0, x1, y1 = mask_box(mask)
    ok, png = cv2.imencode(".png", mask[y0 : y1 + 1, x0 : x1 + 1].astype(np.uint8) * 255)
    assert ok
    return {
        "label": label,
        "points": [[x0, y0], [x1, y1]],
        "group_id": None,
        "shape_type": "mask",
        "flags": {},
        "mask": base64.b64encode(png.tobytes()).decode("ascii"),
    }


def write_labelme(folder: str, scene_: dict, embed_images: bool = False) -> str:
    os.makedirs(folder, exist_ok=True)
    for i, (name, shapes) in enumerate(scene_.items()):
        image_path = os.path.join(folder, name)
        write_image(image_path, seed=i)
        entries = []
        for kind, shape in shapes:
            if kind == "polygon":
                points = [[shape[k], shape[k + 1]] for k in range(0, len(shape), 2)]
                entries.append(
                    {
                        "label": "myotube",
                        "points": points,
                        "group_id": None,
                        "shape_type": "polygon",
                        "flags": {},
                    }
                )
            else:
                entries.append(labelme_mask_shape(shape))
        entries.append(
            {
                "label": "myotube",
                "points": [[1, 1], [6, 6]],
                "group_id": None,
                "shape_type": "rectangle",
                "flags": {},
            }
        )
        image_data = None
        if embed_images:
            with open(image_path, "rb") as f:
                image_data = base64.b64encode(f.read()).decode("ascii")
            os.remove(image_path)
        doc = {
            "version": "5.4.1",
            "flags": {},
            "shapes": entries,
            "imagePath": name,
            "imageData": image_data,
            "imageHeight": H,
            "imageWidth": W,
        }
        with open(os.path.join(folder, os.path.splitext(name)[0] + ".json"), "w") as f:
            json.dump(doc, f)
    return folder


def write_via(folder: str, scene_: dict, project: bool = True, attribute: str | None = "label") -> str:
    os.makedirs(folder, exist_ok=True)
    metadata = {}
    for i, (name, shapes) in enumerate(scene_.items()):
        write_image(os.path.join(folder, name), seed=i)
        regions = []
        for kind, shape in shapes:
            assert kind == "polygon", "VIA has no masks"
            regions.append(
                {
                    "shape_attributes": {
                        "name": "polygon",
                        "all_points_x": shape[0::2],
                        "all_points_y": shape[1::2],
                    },
                    "region_attributes": {attribute: "myotube"} if attribute else {},
                }
            )
        regions.append(
            {
                "shape_attributes": {"name": "rect", "x": 1, "y": 1, "width": 5, "height": 5},
                "region_attributes": {},
            }
        )
        size = os.path.getsize(os.path.join(folder, name))
        metadata[f"{name}{size}"] = {
            "filename": name,
            "size": size,
            "regions": regions,
            "file_attributes": {},
        }
    doc = (
        {
            "_via_settings": {"core": {"default_filepath": ""}},
            "_via_img_metadata": metadata,
            "_via_attributes": {},
        }
        if project
        else metadata
    )
    path = os.path.join(folder, "via_project.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def write_cvat_coco(
    folder: str, scene_: dict, json_name: str = "instances_default.json", seed: int = 0
) -> str:
    """CVAT's "COCO 1.0" export: annotations/instances_<subset>.json + images/, masks as iscrowd=1 RLE."""
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    os.makedirs(os.path.join(folder, "annotations"), exist_ok=True)
    images, annotations = [], []
    for i, (name, shapes) in enumerate(scene_.items(), start=1):
        write_image(os.path.join(folder, "images", name), seed=seed + i)
        images.append({"id": i, "width": W, "height": H, "file_name": name, "license": 0})
        for kind, shape in shapes:
            mask = rasterise(shape) if kind == "polygon" else shape
            segm = [shape] if kind == "polygon" else coco_uncompressed_rle(shape)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": 1,
                    "segmentation": segm,
                    "area": float(mask.sum()),
                    "bbox": [0, 0, 1, 1],
                    "iscrowd": 0 if kind == "polygon" else 1,
                    "attributes": {},
                }
            )
        annotations.append(
            {
                "id": len(annotations) + 1,
                "image_id": i,
                "category_id": 1,
                "segmentation": [],
                "area": 25.0,
                "bbox": [1, 1, 5, 5],
                "iscrowd": 0,
            }
        )
    doc = {
        "licenses": [],
        "info": {},
        "categories": [{"id": 1, "name": "myotube", "supercategory": ""}],
        "images": images,
        "annotations": annotations,
    }
    path = os.path.join(folder, "annotations", json_name)
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


# --------------------------------------------------------------------------- CLI runs


# The environment of a script run in a subprocess: offline, one thread, unbuffered output, matplotlib on Agg.
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "PYTHONUNBUFFERED": "1",
    "MPLBACKEND": "Agg",
}


# The root scripts as modules, for tests that call their ``main(argv)`` in process.
def load_script(relative_path: str):
    path = os.path.join(REPO_ROOT, relative_path)
    name = "script_" + os.path.splitext(relative_path)[0].replace("/", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def text(stream: bytes) -> str:
    return stream.decode("utf-8", errors="backslashreplace")


def run(
    script: str, *args: str, cwd: Path, env: dict | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, script), *args],
        cwd=cwd,
        env=env or ENV,
        capture_output=True,
        timeout=timeout,
    )


def one_line_error(out: subprocess.CompletedProcess, *fragments: str) -> str:
    err = text(out.stderr)
    assert out.returncode == 1, (out.returncode, err[-2000:])
    assert "Traceback" not in err + text(out.stdout)
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def predict_args(weights, inputs, output, *extra: str) -> list[str]:
    """predict.py's arguments for the tiny model on the CPU, every candidate kept."""
    return [
        "--config-file",
        TINY_STAGE2,
        "--weights",
        str(weights),
        "--input",
        str(inputs),
        "--output",
        str(output),
        "--device",
        "cpu",
        "--no-progress",
        "--score-threshold",
        "0",
        *extra,
    ]


def predict(weights, inputs, output, *extra, cwd):
    return run("predict.py", *predict_args(weights, inputs, output, *extra), cwd=cwd)


# --------------------------------------------------------------------------- files and outputs


def snapshot(root: Path) -> dict[bytes, str]:
    """Every file (bytes path, so non-UTF-8 names count too) → content hash."""
    hashes = {}
    for dirpath, _dirs, files in os.walk(os.fsencode(root)):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                hashes[os.path.relpath(path, os.fsencode(root))] = hashlib.sha256(f.read()).hexdigest()
    return hashes


def tree_digest(root) -> dict[str, str]:
    """Relative path → sha256 of every file under root (folders included as entries)."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(folder, d), root) + "/"] = "dir"
        for f in files:
            path = os.path.join(folder, f)
            out[os.path.relpath(path, root)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


def without_column(path: Path, column: str = "seconds") -> list[list[str]]:
    """A CSV's rows without one column (the timing, which no two runs share)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    k = rows[0].index(column)
    return [row[:k] + row[k + 1 :] for row in rows]


def assert_same_predictions(out: Path, reference: Path) -> None:
    names = sorted(p.name for p in reference.glob("*_labels.tif"))
    assert names and names == sorted(p.name for p in out.glob("*_labels.tif"))
    for name in names:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    coco = (reference / "predictions_coco.json").read_bytes()
    assert json.loads(coco)["annotations"], "a comparison of empty predictions would prove nothing"
    assert (out / "predictions_coco.json").read_bytes() == coco
    assert without_column(out / "summary.csv") == without_column(reference / "summary.csv")


def output_masks(json_file: str) -> dict[str, np.ndarray]:
    """original_file_name → (N, H, W) masks as the training loader would decode them."""
    data = read_coco_json(json_file)
    out = {}
    for img in data["images"]:
        anns = [a for a in data["annotations"] if a["image_id"] == img["id"]]
        for a in anns:
            assert a["category_id"] == 1 and a["iscrowd"] == 0
            assert {"id", "image_id", "segmentation", "bbox", "area"} <= set(a)
            mask = segmentation_to_mask(a["segmentation"], img["height"], img["width"])
            assert a["area"] == pytest.approx(mask.sum())
        masks = [segmentation_to_mask(a["segmentation"], img["height"], img["width"]) for a in anns]
        out[img["original_file_name"]] = (
            np.stack(masks) if masks else np.zeros((0, img["height"], img["width"]), bool)
        )
    return out


def assert_same_instances(truth: np.ndarray, got: np.ndarray, min_iou: float = 0.99) -> None:
    assert len(got) == len(truth), f"{len(got)} instances, expected {len(truth)}"
    iou = mask_iou_matrix(truth, got)
    rows, cols = linear_sum_assignment(-iou)
    worst = iou[rows, cols].min()
    assert worst >= min_iou, f"an instance has IoU {worst:.3f} with its source"
    for r, c in zip(rows, cols):
        assert abs(int(truth[r].sum()) - int(got[c].sum())) <= 0.01 * truth[r].sum()


# --------------------------------------------------------------------------- docs figures


# "10 000" (a thin-spaced thousand) is one number; a leading minus sign belongs to it, and so does an
# exponent ("2e-4"). A number inside a word or a name ("10th", "AP50", "F1@0.5", "SHA-256") is not one.
NUMBER = re.compile(
    r"(?<![\w.@])(?<![A-Za-z]-)[-−]?"
    r"(?:\d{1,3}(?: \d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?:e[-−]?\d+)?)"
    r"(?![\w@]|\.\d)"
)


def json_numbers(paths: list[str]) -> list[float]:
    out: list[float] = []

    def walk(value):
        if isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            if math.isfinite(value):
                out.append(float(value))
        elif isinstance(value, str):  # e.g. a config override stored as text ("128")
            try:
                walk(float(value))
            except ValueError:
                pass
        elif isinstance(value, dict):
            for k, v in value.items():
                if k != "per_field":  # rows per field back almost any figure; the pages quote summaries
                    walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for path in paths:
        with open(path, encoding="utf-8") as f:
            walk(json.load(f))
    return out


def quoted(token: str) -> tuple[float, int]:
    """The value a figure states and its decimals ("2e-4" has four); a unit after it is ignored."""
    text = NUMBER.match(token).group(0).replace(" ", "").replace("−", "-")
    mantissa, _, exponent = text.lower().partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return float(text), decimals - int(exponent or 0)


def backed(value: float, decimals: int, numbers: list[float]) -> bool:
    tolerance = 0.5 * 10**-decimals + 1e-9
    return any(abs(n - value) <= tolerance for n in numbers)
