"""A trained model on real full-size fields, predicted as predict.py does, at the training scale
and at the image's own pixels (what predict.py did before models recorded their scale).

    python -m bench.real_two_stage --output models/               # trains and keeps the models
    python -m bench.real_model --model models/stage1              # this benchmark

Fields: the held-out half (or, with ``--part pool``, the Stage 1 pool) of ``bench/real_two_stage.py``
(``../shared/data/qa-skmcs-train``, raw 2048 px), read as they come from the microscope. Each is
predicted through ``predict.py``'s path
(:func:`mask2former.inference.command.build_predictor`): resized by the scale recorded in the
model, then tiled, masks back at 2048 px. The same model is also run with ``--scale 1``: tiles
cut from the raw pixels, tubes 1 / scale times wider than in training. Scored against the human
masks at 2048 px: semantic IoU of the union of instances, and the isolated-tube proxy of
``bench/real_two_stage.py``. Skips cleanly without the data.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from bench.common import REPO_ROOT, write_results
from bench.real_two_stage import (
    DEFAULT_DATA,
    PRESETS,
    human_path,
    list_fields,
    split_fields,
)
from bench.seams import instance_proxy, isolated_tubes
from mask2former.utils.run_files import FINAL


def score_model(model_dir: str, fields: list[str], scale: float, device: str) -> dict:
    """Predict ``fields`` at ``scale`` (0: the recorded training scale) and score them."""
    from mask2former.config import load_config
    from mask2former.data.io import read_image
    from mask2former.evaluation.metrics import semantic_iou_dice_binary
    from mask2former.inference.command import build_predictor, resolve_input_scale
    from mask2former.inference.image_pipeline import predict_file

    cfg = load_config(
        os.path.join(model_dir, "config.yaml"),
        [
            "MODEL.DEVICE",
            device,
            "MODEL.WEIGHTS",
            os.path.join(model_dir, FINAL),
            "INFERENCE.INPUT_SCALE",
            str(scale),
        ],
    )
    used, why = resolve_input_scale(cfg)
    predictor, options = build_predictor(cfg, progress=False)
    rows, t0 = [], time.perf_counter()
    for path in fields:
        human = read_image(human_path(path))
        human = (human.max(axis=2) if human.ndim == 3 else human) > 0
        masks = predict_file(path, predictor, options).to_instances().masks
        union = masks.any(axis=0) if len(masks) else np.zeros_like(human)
        # Isolated tubes at the full field's scale: the minimum area of real_two_stage, scaled up.
        proxy = instance_proxy(isolated_tubes(human, round(300 * (max(human.shape) / 1500) ** 2)), masks)
        rows.append(
            {
                "field": os.path.basename(path),
                "iou": semantic_iou_dice_binary(human, union)["iou"],
                "instances": int(len(masks)),
                **proxy,
            }
        )
        print(f"  {rows[-1]['field']}: IoU {rows[-1]['iou']:.3f}, {len(masks)} instances", flush=True)
    tubes = sum(r["tubes"] for r in rows)
    return {
        "scale": used,
        "why": why,
        "fields": len(rows),
        "mean_iou": float(np.mean([r["iou"] for r in rows])),
        "isolated_match_rate": sum(r["matched"] for r in rows) / tubes if tubes else None,
        "pieces_per_isolated_tube": sum(r["pieces"] for r in rows) / tubes if tubes else None,
        "instances_per_field": float(np.mean([r["instances"] for r in rows])),
        "seconds": round(time.perf_counter() - t0, 1),
        "per_field": rows,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        required=True,
        help="folder with model_final.pth and config.yaml (bench/real_two_stage.py --output)",
    )
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--fields", type=int, default=0, help="first N held-out fields (0: all)")
    parser.add_argument(
        "--part",
        choices=("heldout", "pool"),
        default="heldout",
        help="which fields: the held-out half, or the Stage 1 pool of the tuning half "
        "(to choose settings on)",
    )
    parser.add_argument(
        "--scales",
        type=float,
        nargs="+",
        default=[0.0, 1.0],
        help="resize factors to compare; 0 = the training scale recorded in the model (default %(default)s)",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="cpu",
        help="the split of bench/real_two_stage.py's preset (default %(default)s)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "bench", "results", "real_model.json"))
    args = parser.parse_args(argv)
    fields = list_fields(args.data)
    if not fields:
        print(f"no real fields under {args.data}: skipped")
        return
    chosen = split_fields(fields, PRESETS[args.preset])[args.part]
    chosen = chosen[: args.fields] if args.fields else chosen
    results = {}
    for scale in args.scales:
        name = "training_scale" if scale == 0 else "native_pixels" if scale == 1 else f"scale_{scale:g}"
        print(f"{name}:", flush=True)
        results[name] = score_model(args.model, chosen, scale, args.device)
        print({k: v for k, v in results[name].items() if k != "per_field"}, flush=True)
    write_results(
        args.out,
        {
            "model": os.path.abspath(args.model),
            "data": os.path.abspath(args.data),
            "part": args.part,
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
