"""Does Stage 2 learn the human outline from more hand-drawn fields?

The two-stage recipe of ``bench/real_two_stage.py`` gives Stage 2 5 manual fields. Its snapped
outlines come from the annotator's threshold, which caps their mean IoU (``bench/foreground_ceiling.py``);
its own outlines are worse than the threshold's. If that is for want of examples, a Stage 2 that sees
the human masks of the whole tuning half (8 times as many fields) should draw outlines of its own
closer to the human ones, and ahead of the threshold.

From one Stage 1 (a ``bench.real_two_stage`` run's ``WORK/stage1``), Stage 2 models train with the
same iterations and settings, on human masks alone (one instance per connected component): the 5
manual fields of the recipe, every field of the tuning half, and ``--counts`` sizes between. Each
is scored on the held-out half as shipped (outlines snapped to the field's foreground) and with its
own outlines (``INFERENCE.SNAP_REACH 0``), next to the annotator and the threshold.

    python -m bench.real_two_stage --work W          # once, for W/stage1
    python -m bench.human_fields --stage1 W/stage1   # bench/results/human_fields.json
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict

import numpy as np

from bench.common import REPO_ROOT, exit_on_sigterm, train_once, write_results
from bench.real_two_stage import (
    DEFAULT_DATA,
    PRESETS,
    RealPlan,
    build_dataset,
    dataset_folder_name,
    list_fields,
    score_fields,
    split_fields,
    summarize,
    training_opts,
)
from mask2former.demo import mix_opts
from mask2former.utils.run_files import FINAL
from mask2former.utils.settings import with_settings

SETTINGS = {"as_shipped": (), "own_outlines": ("INFERENCE.SNAP_REACH", "0")}


def train_stage2(work: str, stage1: str, manual: list[str], plan: RealPlan, iters: int, seed: int):
    """Stage 2 from ``stage1`` on the human masks of ``manual`` alone; (folder, seconds or None).
    Its dataset has no Stage 1 fields: it never trains on them, so the annotator need not label them."""
    splits = {"pool": [], "manual": manual}
    dataset = os.path.join(work, dataset_folder_name(splits, plan))
    if not os.path.isfile(os.path.join(dataset, "done")):
        build_dataset(dataset, splits, plan)
        open(os.path.join(dataset, "done"), "w").close()
    out = os.path.join(work, f"stage2_{len(manual)}_fields")
    opts = training_opts(plan, out, iters, plan.stage2_lr, seed) + ["MODEL.WEIGHTS", stage1, *mix_opts(0.0)]
    config = os.path.join(plan.config_dir, "stage2_config.yaml")
    return out, train_once(config, dataset, opts, out, os.path.join(work, "train_log.txt"))


def hand_drawn(splits: dict[str, list[str]], n: int) -> list[str]:
    """``n`` fields of the tuning half: the manual fields, then evenly spaced Stage 1 pool fields
    (sorted by name, so that every condition is among them)."""
    pool = sorted(splits["pool"])
    extra = n - len(splits["manual"])
    picks = np.unique(np.linspace(0, len(pool) - 1, extra).round().astype(int))
    return sorted(splits["manual"] + [pool[i] for i in picks])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stage1", required=True, help="a Stage 1 training folder (its model_final.pth)")
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder of *_myosin.png + *_myotube_mask.png")
    parser.add_argument(
        "--iters",
        type=int,
        default=2400,
        help="Stage 2 iterations of every model (the recipe: 300 on 5 fields)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--counts",
        nargs="*",
        type=int,
        default=[],
        metavar="N",
        help="also train on N hand-drawn fields: the manual fields and evenly spaced fields of the rest",
    )
    parser.add_argument(
        "--quick", action="store_true", help="the quick preset's fields and scale (a smoke run)"
    )
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="change the preset, as in bench.real_two_stage",
    )
    parser.add_argument(
        "--predict-opts", nargs="*", default=[], metavar="KEY VALUE", help="config changes for every scoring"
    )
    parser.add_argument(
        "--work",
        default=os.path.join(REPO_ROOT, "output_bench", "human_fields"),
        help="datasets and trainings",
    )
    parser.add_argument(
        "--out", default=os.path.join(REPO_ROOT, "bench", "results", "human_fields.json"), help="result file"
    )
    args = parser.parse_args(argv)
    stage1 = os.path.abspath(os.path.join(args.stage1, FINAL) if os.path.isdir(args.stage1) else args.stage1)
    if not os.path.isfile(stage1):
        raise SystemExit(f"{stage1}: no Stage 1 weights (train them with python -m bench.real_two_stage)")
    fields = list_fields(args.data)
    if not fields:
        print(f"no real fields under {args.data}: skipped")
        return
    exit_on_sigterm()
    try:
        plan = with_settings(PRESETS["quick" if args.quick else "cpu"], args.set)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    splits = split_fields(fields, plan)
    start = time.perf_counter()
    tuning = sorted(splits["pool"] + splits["manual"])
    runs = {"manual_fields": splits["manual"]}
    for n in sorted(set(args.counts)):
        if len(splits["manual"]) < n < len(tuning):
            runs[f"{n}_fields"] = hand_drawn(splits, n)
    runs["tuning_half"] = tuning
    models, seconds = {}, {}
    for name, manual in runs.items():
        models[name], seconds[name] = train_stage2(args.work, stage1, manual, plan, args.iters, args.seed)
    heldout = {}
    for setting, opts in SETTINGS.items():
        opts = (*args.predict_opts, *opts)
        heldout[setting] = summarize(score_fields(sorted(splits["heldout"]), plan, models, None, opts))
        print(setting, {m: round(v["mean_iou"], 3) for m, v in heldout[setting].items()}, flush=True)
    result = {
        "stage1": stage1,
        "iters": args.iters,
        "seed": args.seed,
        "preset": "quick" if args.quick else "cpu",
        "plan": asdict(plan),
        "predict_opts": list(args.predict_opts),
        "fields": {name: len(manual) for name, manual in runs.items()},
        "train_seconds": seconds,
        "heldout": heldout,
        "wall_seconds_this_call": round(time.perf_counter() - start, 1),
    }
    write_results(args.out, result)


if __name__ == "__main__":
    main()
