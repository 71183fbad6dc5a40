"""A trained model on the demo's held-out generated fields, predicted with several settings.

    python -m mask2former.demo --output demo_output
    python -m bench.synthetic_settings --demo demo_output \
        --setting split INFERENCE.SPLIT_DISCONNECTED True \
        --setting snap_split INFERENCE.SNAP_REACH 64 INFERENCE.SPLIT_DISCONNECTED True

The generated fields carry exact instance labels, crossings included, which the real fields'
human masks do not (touching tubes share one region there). A post-processing setting chosen on
real fields is checked here for what it does to crossing and touching tubes: COCO AP, F1@0.5 of
what predict.py keeps, and where the tubes go (the demo's error breakdown), each setting against
the model's own. Results go to ``bench/results/synthetic_settings.json``.
"""

from __future__ import annotations

import argparse
import os

from bench.common import REPO_ROOT, add_settings_argument, write_results
from mask2former.utils.run_files import FINAL

OWN = "model's own"
KEYS = ("AP", "f1@0.5", "precision@0.5", "recall@0.5", "semantic_iou")


def run(args) -> dict:
    from mask2former.data.coco_records import load_coco_instances
    from mask2former.evaluation.evaluator import evaluate_predictor
    from mask2former.inference.predictor import MyotubePredictor
    from mask2former.modeling.weights import checkpoint_config

    heldout = os.path.join(args.demo, "raw", "heldout")
    records = load_coco_instances(os.path.join(heldout, "annotations.json"), os.path.join(heldout, "images"))
    weights = os.path.join(args.demo, args.model, FINAL)
    rows = {}
    for name, *opts in [(OWN,), *args.setting]:
        cfg = checkpoint_config(weights)
        cfg.MODEL.DEVICE = "cpu"
        cfg.merge_from_list(opts)
        cfg.freeze()
        scores = evaluate_predictor(
            MyotubePredictor(cfg, weights=weights, device="cpu"), records, cfg, desc=name
        )
        rows[name] = {"settings": list(opts), **{k: scores[k] for k in KEYS}, "errors": scores["errors"]}
        print(f"{name}: AP {scores['AP']:.1f}, F1@0.5 {scores['f1@0.5']:.3f}", flush=True)
    result = {"demo": os.path.abspath(args.demo), "model": args.model, "fields": len(records), "rows": rows}
    write_results(args.out, result)
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--demo", default="demo_output", help="a demo's output folder (default: %(default)s)")
    parser.add_argument(
        "--model", default="output_stage2_manual", help="its training folder to score (default: %(default)s)"
    )
    add_settings_argument(parser)
    parser.add_argument(
        "--out",
        default=os.path.join(REPO_ROOT, "bench", "results", "synthetic_settings.json"),
        help="results JSON (default: %(default)s)",
    )
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
