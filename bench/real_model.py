"""A trained model and the classical annotator on real fields, against the human myotube masks.

    python -m bench.real_model --config demo_output/output_stage2_manual/config.yaml \
        --weights demo_output/output_stage2_manual/model_final.pth --scale 0.35

The fields of ../shared/data/qa-skmcs-train are resized by ``--scale`` relative to 1500 px (the
scale the model was trained at: the demo's synthetic fields are 0.35) and predicted in tiles of
the model's input size, exactly as predict.py does. Reported: semantic IoU/Dice of the union of
instances (the human masks are semantic: touching myotubes share one region), per field and
pooled, for the model and for the annotator on the same fields. Skips cleanly without the data.
"""

from __future__ import annotations

import argparse
import glob
import os

import cv2
import numpy as np

from bench.common import write_results

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(REPO_ROOT, "..", "shared", "data", "qa-skmcs-train")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="config.yaml the model was trained with")
    parser.add_argument("--weights", required=True, help="model_final.pth")
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--scale", type=float, default=1.0, help="field size relative to 1500 px")
    parser.add_argument("--fields", type=int, default=20)
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "bench", "results", "real_model.json"))
    args = parser.parse_args(argv)
    myosin = sorted(glob.glob(os.path.join(args.data, "*_myosin.png")))[: args.fields]
    if not myosin:
        print(f"no real fields under {args.data}: skipped")
        return

    from mask2former.annotate.instances import annotate_instances
    from mask2former.config import load_config
    from mask2former.data.io import read_image
    from mask2former.evaluation.metrics import semantic_iou_dice_binary
    from mask2former.inference.predictor import MyotubePredictor
    from mask2former.inference.run import PredictOptions, predict_image

    cfg = load_config(args.config, ["MODEL.DEVICE", "cpu"])
    predictor = MyotubePredictor(cfg, weights=args.weights)
    options = PredictOptions.from_cfg(cfg)
    side = int(round(1500 * args.scale))
    rows, pooled = [], {"model": [0.0, 0.0], "annotator": [0.0, 0.0]}
    for path in myosin:
        human_path = path.replace("_myosin.png", "_myotube_mask.png")
        human = read_image(human_path) > 0
        if not human.any():
            continue  # an empty human mask says nothing about segmentation quality
        image = read_image(path)
        small = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
        truth = cv2.resize(human.astype(np.uint8), (side, side), interpolation=cv2.INTER_NEAREST) > 0
        model_union = predict_image(small, predictor, options).to_instances().masks.any(axis=0) if side else None
        annot = annotate_instances(cv2.resize(image, (1500, 1500), interpolation=cv2.INTER_AREA)).masks.any(axis=0)
        annot = cv2.resize(annot.astype(np.uint8), (side, side), interpolation=cv2.INTER_NEAREST) > 0
        row = {"field": os.path.basename(path)}
        for name, pred in (("model", model_union), ("annotator", annot)):
            sem = semantic_iou_dice_binary(truth, pred)
            row[f"{name}_iou"] = sem["iou"]
            pooled[name][0] += sem["intersection"]
            pooled[name][1] += sem["union"]
        rows.append(row)
        print(f"{row['field']}: model IoU {row['model_iou']:.3f}, annotator IoU {row['annotator_iou']:.3f}", flush=True)
    summary = {
        name: {"mean_iou": float(np.mean([r[f"{name}_iou"] for r in rows])), "pooled_iou": inter / union if union else 1.0}
        for name, (inter, union) in pooled.items()
    }
    print(summary)
    write_results(args.out, {"weights": args.weights, "scale": args.scale, "fields": len(rows), "summary": summary, "per_field": rows})


if __name__ == "__main__":
    main()
