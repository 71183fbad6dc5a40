"""Tiny generated COCO datasets for tests: thick curved lines as 'myotubes', overlaps included."""

from __future__ import annotations

import os

import cv2
import numpy as np

from mask2former.data.coco import bbox_of_mask, mask_to_rle, write_coco_json


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
                    contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                    segm = [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]
                else:
                    segm = mask_to_rle(m)
                annotations.append(
                    {"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1, "segmentation": segm,
                     "bbox": bbox_of_mask(m), "area": float(m.sum()), "iscrowd": 0}
                )
            per_image.append(masks)
        write_coco_json(os.path.join(root, "annotations", json_name), images, annotations)
        truth[json_name] = per_image
    return truth


def make_unified_dataset(root: str, size: int = 96, n_train: int = 4, n_test: int = 2, n_manual: int = 2, seed: int = 0) -> str:
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
