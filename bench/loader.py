"""Data loader throughput: mapped training images per second at the Stage 1 input size.

    python -m bench.loader --size 1500 --workers 0 2

Compare with what the model consumes: SOLVER.IMS_PER_BATCH / (seconds per step), e.g. Swin-B on
one H100 takes 2 images per 0.52 s (bench/results/train_step_swinb_1500_h100.json).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import tempfile
import time

import cv2
import numpy as np

from bench.common import synthetic_tube_masks, write_results
from mask2former.config import load_config
from mask2former.data.coco import write_coco_json
from mask2former.data.coco_masks import mask_annotations
from mask2former.data.coco_records import load_coco_instances
from mask2former.engine.loader import build_train_loader


def make_dataset(root: str, n: int, size: int, instances: int) -> list[dict]:
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    images, anns = [], []
    for i in range(n):
        masks = synthetic_tube_masks(size, instances, seed=i)
        img = (
            (np.random.default_rng(i).normal(300, 30, (size, size)) + masks.sum(0) * 2000)
            .clip(0, 65535)
            .astype(np.uint16)
        )
        name = f"field_{i:03d}.png"
        cv2.imwrite(os.path.join(root, "images", name), img)
        images.append({"id": i + 1, "file_name": name, "height": size, "width": size})
        anns += mask_annotations(masks, i + 1, len(anns) + 1)
    write_coco_json(os.path.join(root, "train.json"), images, anns)
    return load_coco_instances(os.path.join(root, "train.json"), os.path.join(root, "images"))


def consumption_from_gpu_results() -> dict:
    found = {}
    for path in glob.glob(
        os.path.join(os.path.dirname(__file__), "results", "train_step_swinb_1500*_h100.json")
    ):
        with open(path) as f:
            for run in json.load(f).get("runs", []):
                if "project_s_per_step" in run:
                    key = f"{os.path.basename(path)}:amp={run['amp']}"
                    found[key] = run["batch"] / run["project_s_per_step"]
    return found


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=1500)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--out", default="bench/results/loader.json")
    args = parser.parse_args(argv)
    cfg = load_config("stage1_config.yaml", ["INPUT.IMAGE_SIZE", str(args.size)])
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        records = make_dataset(tmp, args.images, args.size, args.instances)
        for workers in args.workers:
            c = cfg.clone()
            c.defrost()
            c.DATALOADER.NUM_WORKERS = workers
            c.freeze()
            loader = iter(build_train_loader(c, records, c.SOLVER.IMS_PER_BATCH, 0, 0, 1, pin_memory=False))
            next(loader)  # worker start-up is paid once per run, not per step
            t0 = time.perf_counter()
            for _ in range(args.batches):
                next(loader)
            rate = args.batches * c.SOLVER.IMS_PER_BATCH / (time.perf_counter() - t0)
            runs.append({"workers": workers, "images_per_s": rate})
            print(f"workers={workers}: {rate:.2f} images/s at {args.size} px")
            del loader
    write_results(
        args.out,
        {
            "size": args.size,
            "instances_per_image": args.instances,
            "runs": runs,
            "model_consumption_images_per_s": consumption_from_gpu_results(),
        },
    )


if __name__ == "__main__":
    main()
