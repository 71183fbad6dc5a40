"""Tile stitching and post-processing choices, measured on real held-out fields with a trained model.

    python -m bench.real_inference_variants --model /tmp/myotube_real_two_stage/stage1

Uses the fields and split of ``bench/real_two_stage.py`` (run it first; ``--model`` is one of the
model folders it trains). Each held-out field is predicted tile by tile once; the tiles'
instances are then stitched and post-processed in several ways and scored like the benchmark
(semantic IoU, isolated human tubes matched at IoU > 0.5, pieces per isolated tube):

- stitching ``current``: fragments of two tiles matched one-to-one by IoU inside the shared
  region, no instance holding two fragments of one tile (``inference/tiling.py``);
- stitching ``overlap_of_smaller``: the earlier rule, any two fragments of neighbouring tiles
  overlapping by half of the smaller inside the shared region are joined, with no other limit;
- post-processing with contained removal and fragment merging on or off.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace

import numpy as np
from scipy.cluster.hierarchy import DisjointSet

from bench.common import REPO_ROOT, write_results
from bench.real_two_stage import (
    DEFAULT_DATA,
    PRESETS,
    REFERENCE_SIZE,
    list_fields,
    load_field,
    split_fields,
)
from bench.seams import instance_proxy, isolated_tubes
from mask2former.utils.run_files import FINAL


def stitch_overlap_of_smaller(tile_predictions, match_overlap: float = 0.5):
    """The earlier stitching rule, kept here only to measure it against the current one."""
    from mask2former.structures import intersect_windows, intersection_area, union_of

    items, owner = [], []
    for t, (_, masks) in enumerate(tile_predictions):
        items += masks
        owner += [t] * len(masks)
    uf = DisjointSet(range(len(items)))
    for a in range(len(items)):
        for b in range(a + 1, len(items)):
            if owner[a] == owner[b]:
                continue
            shared = intersect_windows(
                tile_predictions[owner[a]][0].window, tile_predictions[owner[b]][0].window
            )
            if shared is None:
                continue
            common = intersection_area(items[a], items[b], within=shared)
            if common and common >= match_overlap * min(items[a].area_in(shared), items[b].area_in(shared)):
                uf.merge(a, b)
    groups = [sorted(g) for g in uf.subsets()]
    return [
        items[g[0]] if len(g) == 1 else union_of([items[k] for k in g], max(items[k].score for k in g))
        for g in groups
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="folder with model_final.pth and config.yaml")
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--fields", type=int, default=0, help="held-out fields to use (0: all)")
    parser.add_argument(
        "--out", default=os.path.join(REPO_ROOT, "bench", "results", "real_inference_variants.json")
    )
    args = parser.parse_args(argv)

    from mask2former.config import load_config
    from mask2former.evaluation.metrics import semantic_iou_dice_binary
    from mask2former.inference.filters import postprocess
    from mask2former.inference.options import PredictOptions
    from mask2former.inference.predictor import MyotubePredictor
    from mask2former.inference.tiling import Tile, stitch_tiles, tile_grid
    from mask2former.structures import CroppedInstances

    plan = PRESETS["cpu"]
    fields = list_fields(args.data)
    if not fields:
        print(f"no real fields under {args.data}: skipped")
        return
    heldout = split_fields(fields, plan)["heldout"]
    heldout = heldout[: args.fields] if args.fields else heldout
    cfg = load_config(os.path.join(args.model, "config.yaml"), ["MODEL.DEVICE", "cpu"])
    predictor = MyotubePredictor(cfg, weights=os.path.join(args.model, FINAL))
    options = PredictOptions.from_cfg(cfg, progress=False)
    side = round(REFERENCE_SIZE * plan.pixel_scale)
    min_area = max(8, round(300 * plan.pixel_scale**2))
    posts = {
        "none": replace(options.post, remove_contained=False, merge_fragments=False),
        "contained": replace(options.post, remove_contained=True, merge_fragments=False),
        "merge": replace(options.post, remove_contained=False, merge_fragments=True),
        "contained_and_merge": replace(options.post, remove_contained=True, merge_fragments=True),
    }
    totals: dict[str, dict] = {}
    for path in heldout:
        image, human = load_field(path, side)
        singles = isolated_tubes(human, min_area)
        tiles: list[tuple[Tile, list]] = []
        with predictor.fixed_intensity_range(image):
            for tile in tile_grid(*image.shape[:2], options.tile_size, options.tile_overlap):
                found = predictor(image[tile.y0 : tile.y1, tile.x0 : tile.x1])
                tiles.append(
                    (tile, CroppedInstances.from_instances(found, tile.y0, tile.x0, *image.shape[:2]).items)
                )
        stitched = {
            "current": stitch_tiles(tiles, options.tile_match_overlap),
            "overlap_of_smaller": stitch_overlap_of_smaller(tiles, options.tile_match_overlap),
        }
        for rule, items in stitched.items():
            joined = CroppedInstances(image.shape[0], image.shape[1], items)
            for name, post in posts.items():
                masks = postprocess(joined, post, image).to_instances().masks
                union = masks.any(axis=0) if len(masks) else np.zeros_like(human)
                proxy = instance_proxy(singles, masks)
                t = totals.setdefault(
                    f"stitching_{rule}/post_{name}",
                    {"tubes": 0, "matched": 0, "pieces": 0, "iou": [], "instances": 0},
                )
                t["tubes"] += proxy["tubes"]
                t["matched"] += proxy["matched"]
                t["pieces"] += proxy["pieces"]
                t["instances"] += len(masks)
                t["iou"].append(semantic_iou_dice_binary(human, union)["iou"])
        print(f"  {os.path.basename(path)} done", flush=True)
    summary = {
        k: {
            "isolated_match_rate": t["matched"] / t["tubes"] if t["tubes"] else None,
            "pieces_per_isolated_tube": t["pieces"] / t["tubes"] if t["tubes"] else None,
            "mean_iou": float(np.mean(t["iou"])),
            "instances_per_field": t["instances"] / len(heldout),
            "isolated_tubes": t["tubes"],
        }
        for k, t in totals.items()
    }
    for k, v in summary.items():
        print(
            f"{k:45s} matched {v['isolated_match_rate']:.3f} pieces {v['pieces_per_isolated_tube']:.2f} "
            f"IoU {v['mean_iou']:.3f} instances/field {v['instances_per_field']:.1f}"
        )
    write_results(
        args.out,
        {
            "model": os.path.abspath(args.model),
            "fields": len(heldout),
            "score_threshold": options.post.score_threshold,
            "variants": summary,
        },
    )


if __name__ == "__main__":
    main()
