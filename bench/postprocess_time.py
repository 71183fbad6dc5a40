"""Seconds per whole real field under several post-processing settings, measured in one run.

    python -m bench.postprocess_time --model output_bench/real_two_stage/stage2 \
        --setting split INFERENCE.SPLIT_DISCONNECTED True \
        --setting snap_split INFERENCE.SNAP_REACH 64 INFERENCE.SPLIT_DISCONNECTED True

Each held-out field of ``bench/real_two_stage.py`` is read at its own size (2048 px) and predicted
as predict.py predicts it (the model's recorded scale, tiles, stitching) once, without
post-processing; then every setting post-processes that same result, the shipped one first. A
field's time under a setting is the wall-clock time of its reading, model and stitching plus that
setting's post-processing, so the settings differ only in the step that differs, and machine speed cancels
out of their ratio. Results go to ``bench/results/postprocess_time.json``.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

import numpy as np

from bench.common import REPO_ROOT, add_settings_argument, write_results
from bench.real_two_stage import DEFAULT_DATA, PRESETS, list_fields, split_fields
from mask2former.utils.run_files import FINAL

SHIPPED = "shipped"


def run(args) -> dict:
    from mask2former.inference.command import build_predictor
    from mask2former.inference.filters import PostprocessParams, postprocess
    from mask2former.inference.image_pipeline import StageTimer, predict_at_model_scale, read_input_image
    from mask2former.modeling.weights import checkpoint_config

    fields = list_fields(args.data)
    if not fields:
        print(f"no real fields under {args.data}: skipped")
        return {}
    # The held-out half does not depend on how many tuning fields Stage 2 takes: ask for none.
    fields = split_fields(fields, replace(PRESETS["cpu"], manual_fields=0))["heldout"]
    fields = fields[: args.fields] if args.fields else fields
    weights = os.path.join(args.model, FINAL) if os.path.isdir(args.model) else args.model
    cfg = checkpoint_config(weights)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = weights
    predictor, options = build_predictor(cfg, progress=False)
    settings = {SHIPPED: options.post}
    for name, *opts in args.setting:
        changed = cfg.clone()
        changed.merge_from_list(opts)
        settings[name] = PostprocessParams.from_cfg(changed)
    unprocessed = replace(options, post=None)

    before = {"read": [], "model": [], "tiling_merge": [], "wall": []}
    post: dict[str, list[float]] = {name: [] for name in settings}
    instances: dict[str, list[int]] = {name: [] for name in settings}
    for k, path in enumerate(fields):
        timer = StageTimer()
        start = time.perf_counter()
        image, meta = read_input_image(path, unprocessed, timer)
        raw = predict_at_model_scale(path, "", image, meta, predictor, unprocessed, timer).instances
        timer.seconds["wall"] = time.perf_counter() - start
        for stage in before:
            before[stage].append(timer.seconds.get(stage, 0.0))
        for name, params in settings.items():
            start = time.perf_counter()
            kept = postprocess(raw, params, image)
            post[name].append(time.perf_counter() - start)
            instances[name].append(len(kept))
        print(f"  {k + 1}/{len(fields)} {os.path.basename(path)}", flush=True)

    shared = float(np.mean(before["wall"]))
    rows = {}
    for name in settings:
        seconds = shared + float(np.mean(post[name]))
        rows[name] = {
            "postprocess_seconds_per_field": round(float(np.mean(post[name])), 6),
            "seconds_per_field": round(seconds, 4),
            "instances_per_field": round(float(np.mean(instances[name])), 2),
        }
    for row in rows.values():
        row["ratio_to_shipped"] = round(row["seconds_per_field"] / rows[SHIPPED]["seconds_per_field"], 3)
    result = {
        "model": os.path.abspath(args.model),
        "fields": len(fields),
        "field_size": list(image.shape[:2]),
        "settings": {name: list(opts) for name, *opts in args.setting},
        "read_model_stitch_seconds_per_field": {s: round(float(np.mean(v)), 4) for s, v in before.items()},
        "rows": rows,
    }
    for name, row in rows.items():
        print(
            f"{name}: {row['seconds_per_field']:.3f} s per field "
            f"(post-processing {row['postprocess_seconds_per_field']:.3f} s), {row['ratio_to_shipped']:.3f}x"
        )
    write_results(args.out, result)
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="a training's folder (model_final.pth) or weights")
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder of *_myosin.png + *_myotube_mask.png")
    parser.add_argument("--fields", type=int, default=0, help="held-out fields to use (0: all)")
    add_settings_argument(parser)
    parser.add_argument(
        "--out",
        default=os.path.join(REPO_ROOT, "bench", "results", "postprocess_time.json"),
        help="results JSON (default: %(default)s)",
    )
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
