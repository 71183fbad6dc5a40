"""Recipe experiments: train the demo's model one way, score it on held-out synthetic fields.

    python -m bench.recipe --name backbone_lr --labels exact --seeds 0 1 --opts SOLVER.BACKBONE_MULTIPLIER 1.0

Data are the demo's (``mask2former.demo.DemoPlan``): a Stage 1 pool, a few "manual" fields and
held-out fields, generated once into ``--work`` and reused by every experiment. ``--labels``
chooses what Stage 1 learns from: the classical annotator's output (the product) or the exact
ground truth (the ceiling of the recipe). ``--stage2-iters`` > 0 fine-tunes on the manual fields
afterwards, as Stage 2 does. Each run is scored on the held-out fields and on its own training
fields (does it fit them?), with COCO AP, F1@0.5 at the configured score threshold and at the best
threshold, semantic IoU and the error breakdown (merged, split, missed, false positives).
Results: ``bench/results/recipe/<name>.json``; ``--table`` prints every stored result.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
from dataclasses import replace

import numpy as np

from bench.common import REPO_ROOT, exit_on_sigterm, train_once, write_results
from mask2former.utils.run_files import FINAL

RESULTS = os.path.join(REPO_ROOT, "bench", "results", "recipe")
TINY = os.path.join(REPO_ROOT, "configs", "cpu_tiny")
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def build_data(work: str, plan, pool: int, pool_density: str = "") -> dict[str, str]:
    """Unified dataset roots (annotator and exact Stage 1 labels) plus held-out and train-field COCO files.

    ``pool_density``: density of the Stage 1 pool when it differs from the plan's (the held-out
    and manual fields keep the plan's).
    """
    from mask2former.annotate import AnnotatorParams, annotate_instances
    from mask2former.data.catalog import ANNOTATION_FILES
    from mask2former.data.coco import write_coco_json
    from mask2former.data.coco_masks import mask_annotations
    from mask2former.data.coco_records import load_coco_instances, record_masks
    from mask2former.data.io import read_image
    from mask2former.synthetic_datasets import write_synthetic_dataset

    key = (
        f"s{plan.size}_p{plan.pixel_scale}_n{pool}_m{plan.manual_images}"
        f"_h{plan.heldout_images}_{plan.density}"
    )
    if pool_density and pool_density != plan.density:
        key += f"_pool{pool_density}"
    root = os.path.join(work, key)
    done = os.path.join(root, "done")
    paths = {
        "annotator": os.path.join(root, "labels_annotator"),
        "exact": os.path.join(root, "labels_exact"),
        "heldout": os.path.join(root, "heldout", "annotations.json"),
        "pool": os.path.join(root, "pool", "annotations.json"),
    }
    if os.path.isfile(done):
        return paths
    shutil.rmtree(root, ignore_errors=True)
    common = {"size": plan.size, "pixel_scale": plan.pixel_scale, "density": plan.density, "progress": False}
    write_synthetic_dataset(
        os.path.join(root, "pool"), pool, seed=1, **{**common, "density": pool_density or plan.density}
    )
    write_synthetic_dataset(os.path.join(root, "manual"), plan.manual_images, seed=2, **common)
    write_synthetic_dataset(os.path.join(root, "heldout"), plan.heldout_images, seed=3, **common)
    params = AnnotatorParams(scale=plan.pixel_scale)
    for labels in ("annotator", "exact"):
        images = os.path.join(paths[labels], "images")
        os.makedirs(images)
        split_files = {}
        for split, folder in (
            ("myotube_algorithmic_train", "pool"),
            ("myotube_manual_train", "manual"),
            ("myotube_manual_test", "heldout"),
        ):
            entries, anns = [], []
            for record in load_coco_instances(
                os.path.join(root, folder, "annotations.json"), os.path.join(root, folder, "images")
            ):
                name = f"{folder}_{os.path.basename(record['file_name'])}"
                if not os.path.exists(os.path.join(images, name)):
                    os.link(record["file_name"], os.path.join(images, name))
                image_id = len(entries) + 1
                entries.append(
                    {"id": image_id, "file_name": name, "height": record["height"], "width": record["width"]}
                )
                if split == "myotube_algorithmic_train" and labels == "annotator":
                    masks = annotate_instances(read_image(record["file_name"]), params).masks
                else:
                    masks = record_masks(record)
                anns += mask_annotations(masks, image_id, len(anns) + 1)
            split_files[split] = os.path.join(paths[labels], "annotations", ANNOTATION_FILES[split])
            write_coco_json(split_files[split], entries, anns)
        # Stage 1's own test split: the first held-out fields, so periodic evaluation has something to read.
        shutil.copy(
            split_files["myotube_manual_test"],
            os.path.join(paths[labels], "annotations", ANNOTATION_FILES["myotube_algorithmic_test"]),
        )
    open(done, "w").close()
    return paths


def score(out_dir: str, records: list[dict], device: str = "cpu") -> dict:
    """Metrics of one trained model on ``records``: at the configured threshold, and the best F1 over
    THRESHOLDS."""
    from mask2former.config import load_config
    from mask2former.data.coco_records import record_masks
    from mask2former.data.io import read_image
    from mask2former.evaluation.metrics import InstanceEvaluator
    from mask2former.inference.filters import PostprocessParams
    from mask2former.inference.predictor import MyotubePredictor

    cfg = load_config(os.path.join(out_dir, "config.yaml"), ["MODEL.DEVICE", device])
    predictor = MyotubePredictor(cfg, weights=os.path.join(out_dir, FINAL))
    evaluators = {t: InstanceEvaluator(score_threshold=t) for t in THRESHOLDS}
    configured_post = PostprocessParams.from_cfg(cfg)
    for record in records:
        gt = record_masks(record)
        image = read_image(record["file_name"])
        pred = predictor.predict_all(image)
        # What predict.py keeps at each threshold, scored as evaluate_predictor scores it.
        for t, ev in evaluators.items():
            ev.add(gt, pred, kept=predictor.kept(pred, replace(configured_post, score_threshold=t), image))
    summaries = {t: ev.summarize() for t, ev in evaluators.items()}
    configured = cfg.MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD
    main = summaries.get(configured) or InstanceEvaluator(configured).summarize()
    best_t = max(summaries, key=lambda t: summaries[t]["f1@0.5"])
    return {**_brief(main), "best_f1": summaries[best_t]["f1@0.5"], "best_f1_threshold": best_t}


def _brief(summary: dict) -> dict:
    keys = ("AP", "AP50", "AP75", "f1@0.5", "precision@0.5", "recall@0.5", "semantic_iou", "errors")
    return {k: summary[k] for k in keys}


def annotator_scores(records: list[dict], pixel_scale: float) -> dict:
    from mask2former.annotate import AnnotatorParams, annotate_instances
    from mask2former.data.coco_records import record_masks
    from mask2former.data.io import read_image
    from mask2former.evaluation.metrics import InstanceEvaluator

    ev = InstanceEvaluator(score_threshold=0.0)
    for record in records:
        ev.add(
            record_masks(record),
            annotate_instances(read_image(record["file_name"]), AnnotatorParams(scale=pixel_scale)),
        )
    return _brief(ev.summarize())


def posthoc(out_dir: str, records: list[dict], pixel_scale: float) -> dict:
    """One trained model, scored with different inference settings (no retraining).

    - ``mask_threshold_*``: the per-pixel probability that makes a mask pixel;
    - ``duplicates_iou_0.5``: a prediction whose IoU with a higher-scoring one is 0.5 or more is dropped;
    - ``skeleton_split``: each prediction is split with the annotator's skeleton graph;
    - ``predict_*``: predict.py's post-processing steps (contained removal, fragment merging) on
      and off, at score thresholds 0.5 and 0.8.
    """
    from dataclasses import replace

    from mask2former.annotate import AnnotatorParams, split_instances
    from mask2former.config import load_config
    from mask2former.data.coco_records import record_masks
    from mask2former.data.io import read_image
    from mask2former.evaluation.metrics import InstanceEvaluator, mask_iou_matrix
    from mask2former.inference.filters import PostprocessParams, postprocess
    from mask2former.inference.predictor import MyotubePredictor
    from mask2former.modeling.outputs import instances_from_outputs
    from mask2former.structures import CroppedInstances, Instances

    cfg = load_config(os.path.join(out_dir, "config.yaml"), ["MODEL.DEVICE", "cpu"])
    predictor = MyotubePredictor(cfg, weights=os.path.join(out_dir, FINAL))
    params = AnnotatorParams(scale=pixel_scale)
    min_area = cfg.MODEL.MASK_FORMER.TEST.MIN_MASK_AREA

    def without_duplicates(pred: Instances, iou_limit: float) -> Instances:
        keep: list[int] = []
        for k in np.argsort(-pred.scores, kind="stable"):
            if not keep or mask_iou_matrix(pred.masks[k][None], pred.masks[keep]).max() < iou_limit:
                keep.append(int(k))
        return pred.subset(np.asarray(keep, int))

    def skeleton_split(pred: Instances) -> Instances:
        masks, scores = [], []
        for m, score in zip(pred.masks, pred.scores):
            pieces = split_instances(m, params, pixel_scale) if score >= 0.05 else m[None]
            masks += list(pieces if len(pieces) else m[None])
            scores += [float(score)] * max(1, len(pieces))
        shape = pred.masks.shape[1:]
        return Instances(np.asarray(masks, bool).reshape((-1,) + shape), np.asarray(scores, np.float32))

    posts = {
        "none": PostprocessParams(remove_contained=False, merge_fragments=False, min_area=min_area),
        "contained": PostprocessParams(remove_contained=True, merge_fragments=False, min_area=min_area),
        "merge": PostprocessParams(remove_contained=False, merge_fragments=True, min_area=min_area),
        "contained_and_merge": PostprocessParams(
            remove_contained=True, merge_fragments=True, min_area=min_area
        ),
    }
    evaluators: dict[str, dict[float, InstanceEvaluator]] = {}

    def add(name: str, gt: np.ndarray, pred: Instances, thresholds=(0.5, 0.8)) -> None:
        for t in thresholds:
            evaluators.setdefault(name, {}).setdefault(t, InstanceEvaluator(score_threshold=t)).add(gt, pred)

    for record in records:
        gt = record_masks(record)
        cls, logits, info = predictor.raw_outputs(read_image(record["file_name"]))
        for mask_threshold in (0.4, 0.5, 0.6):
            pred = instances_from_outputs(cls, logits, info, mask_threshold=mask_threshold, min_area=min_area)
            add(f"mask_threshold_{mask_threshold}", gt, pred)
            if mask_threshold == 0.5:
                add("duplicates_iou_0.5", gt, without_duplicates(pred, 0.5))
                pieces = skeleton_split(pred)
                add("skeleton_split", gt, pieces)
                # The split pieces of duplicate predictions are duplicates too; tiny pieces are spurs.
                big = pieces.subset(
                    np.flatnonzero(pieces.masks.reshape(len(pieces), -1).sum(1) >= 100 * pixel_scale**2 * 4)
                )
                add("skeleton_split_then_duplicates_iou_0.5", gt, without_duplicates(big, 0.5))
                h, w = pred.image_size
                for name, post in posts.items():
                    for t in (0.5, 0.8):
                        kept = postprocess(
                            CroppedInstances.from_instances(pred, 0, 0, h, w),
                            replace(post, score_threshold=t),
                        ).to_instances()
                        add(f"predict_{name}_score_{t}", gt, kept, thresholds=(0.0,))
    out = {}
    for name, by_threshold in evaluators.items():
        out[name] = {}
        for t, ev in by_threshold.items():
            summary = ev.summarize()
            out[name][str(t)] = {
                k: summary[k]
                for k in (
                    "AP",
                    "AP50",
                    "AP75",
                    "f1@0.5",
                    "precision@0.5",
                    "recall@0.5",
                    "semantic_iou",
                    "errors",
                )
            }
    return out


def resolution_ceiling(records: list[dict], strides=(2, 4, 8)) -> dict:
    """AP of the ground truth itself after a round trip through a mask grid of each stride.

    A perfect mask head predicting each cell's coverage, upsampled bilinearly like the model's
    logits (stride 4 is Mask2Former's): what the grid alone costs at strict IoU.
    """
    import torch
    import torch.nn.functional as F

    from mask2former.data.coco_records import record_masks
    from mask2former.evaluation.metrics import InstanceEvaluator
    from mask2former.structures import Instances

    out = {}
    for stride in strides:
        ev = InstanceEvaluator(score_threshold=0.5)
        ious = []
        for record in records:
            gt = record_masks(record)
            if not len(gt):
                continue
            cover = F.avg_pool2d(torch.from_numpy(gt).float()[None], stride, ceil_mode=True)
            logits = torch.logit(cover.clamp(1e-4, 1 - 1e-4))
            back = (
                F.interpolate(logits, scale_factor=stride, mode="bilinear", align_corners=False)[
                    0, :, : gt.shape[1], : gt.shape[2]
                ]
                > 0
            ).numpy()
            ev.add(gt, Instances(back, np.ones(len(gt))))
            ious += list((gt & back).reshape(len(gt), -1).sum(1) / (gt | back).reshape(len(gt), -1).sum(1))
        summary = ev.summarize()
        out[f"stride_{stride}"] = {
            "AP": summary["AP"],
            "AP50": summary["AP50"],
            "AP75": summary["AP75"],
            "mean_instance_iou": float(np.mean(ious)),
            "p10_instance_iou": float(np.percentile(ious, 10)),
        }
    return out


def training_opts(plan, out: str, iters: int, lr: float, batch: int, seed: int) -> list[str]:
    from mask2former.demo import training_opts as demo_training_opts

    opts = demo_training_opts(plan, out, iters, lr, batch)
    opts[opts.index("SEED") + 1] = str(seed)
    return opts + ["TEST.EVAL_PERIOD", "0", "DATASETS.TEST", "()"]


def run(args) -> dict:
    from mask2former.data.coco_records import load_coco_instances
    from mask2former.demo import DemoPlan
    from mask2former.utils.settings import with_settings

    try:
        plan = with_settings(DemoPlan(), args.set)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    pool = args.pool or plan.stage1_images
    data = build_data(args.work, plan, pool, args.pool_density)
    heldout = load_coco_instances(data["heldout"], os.path.join(os.path.dirname(data["heldout"]), "images"))
    train_fields = load_coco_instances(data["pool"], os.path.join(os.path.dirname(data["pool"]), "images"))[
        : args.train_fields
    ]
    run_dir = os.path.join(args.work, "runs", args.name)
    os.makedirs(run_dir, exist_ok=True)
    log = os.path.join(run_dir, "train_log.txt")
    s1_iters = args.stage1_iters
    runs = []
    for seed in args.seeds:
        s1 = os.path.join(run_dir, f"seed{seed}", "stage1")
        opts = training_opts(plan, s1, s1_iters, args.stage1_lr, 2, seed) + list(args.opts)
        seconds = train_once(os.path.join(TINY, "stage1_config.yaml"), data[args.labels], opts, s1, log)
        entry = {
            "seed": seed,
            "stage1": {"heldout": score(s1, heldout), "train_fields": score(s1, train_fields)},
            "train_seconds": seconds,
        }
        if args.stage2_iters:
            s2 = os.path.join(run_dir, f"seed{seed}", "stage2")
            opts2 = (
                training_opts(plan, s2, args.stage2_iters, plan.stage2_lr, 1, seed)
                + list(args.opts)
                + list(args.opts2)
            )
            seconds2 = train_once(
                os.path.join(TINY, "stage2_config.yaml"),
                data[args.labels],
                opts2 + ["MODEL.WEIGHTS", os.path.join(s1, FINAL)],
                s2,
                log,
            )
            entry["stage2"] = {"heldout": score(s2, heldout)}
            entry["stage2_train_seconds"] = seconds2
        runs.append(entry)
        print(json.dumps({k: v for k, v in entry["stage1"]["heldout"].items() if k != "errors"}), flush=True)
    settings = {
        "name": args.name,
        "labels": args.labels,
        "plan": plan.__dict__,
        "pool": pool,
        "stage1_iters": s1_iters,
        "stage1_lr": args.stage1_lr,
        "stage2_iters": args.stage2_iters,
        "opts": list(args.opts),
        "opts2": list(args.opts2),
    }
    if args.pool_density:
        settings["pool_density"] = args.pool_density
    runs = _stored_runs(os.path.join(RESULTS, f"{args.name}.json"), settings, exclude=args.seeds) + runs
    runs.sort(key=lambda r: r["seed"])
    result = {**settings, "seeds": [r["seed"] for r in runs], "runs": runs, "mean": _mean_over_seeds(runs)}
    if args.annotator:
        result["annotator"] = {
            "heldout": annotator_scores(heldout, plan.pixel_scale),
            "train_fields": annotator_scores(train_fields, plan.pixel_scale),
        }
    write_results(os.path.join(RESULTS, f"{args.name}.json"), result)
    return result


def _data_and_model(plan: dict) -> dict:
    """The demo plan's fields a recipe run uses; its training length, LR and seed come from the command
    line."""
    unused = ("seed", "stage1_iters", "stage2_iters", "stage1_lr", "stage2_lr", "predict_images", "ceiling")
    return {k: v for k, v in plan.items() if k not in unused}


def _same_plan(stored: dict, current: dict) -> bool:
    # Fields added to the plan after a run was stored had their current default then.
    a, b = _data_and_model(stored), _data_and_model(current)
    return all(a[k] == b[k] for k in a.keys() & b.keys())


def _stored_runs(path: str, settings: dict, exclude: list[int]) -> list[dict]:
    """Runs of other seeds already stored under the same name and settings: ``--seeds 1`` adds seed 1 to
    them."""
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        stored = json.load(f)
    same = all(stored.get(k) == v for k, v in settings.items() if k != "plan") and _same_plan(
        stored.get("plan", {}), settings["plan"]
    )
    if not same:
        print(f"{path}: stored with other settings; replaced by this run", flush=True)
        return []
    return [r for r in stored.get("runs", []) if r["seed"] not in exclude]


def _mean_over_seeds(runs: list[dict]) -> dict:
    out: dict = {}
    for stage in ("stage1", "stage2"):
        for part in ("heldout", "train_fields"):
            rows = [r[stage][part] for r in runs if stage in r and part in r[stage]]
            if rows:
                out[f"{stage}/{part}"] = {
                    k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "errors"
                }
                out[f"{stage}/{part}"]["errors"] = {
                    k: int(sum(r["errors"][k] for r in rows)) for k in rows[0]["errors"]
                }
    return out


def _per_seed(result: dict, key: str, metric: str) -> str:
    stage, part = key.split("/")
    return " / ".join(
        f"{r[stage][part][metric]:.1f}" for r in result["runs"] if stage in r and part in r[stage]
    )


def print_table(pattern: str = "*", part: str = "") -> None:
    """One markdown row per stored result and scored part (e.g. ``stage1/heldout``)."""
    rows = []
    results = []
    for path in glob.glob(os.path.join(RESULTS, f"{pattern}.json")):
        with open(path) as f:
            results.append(json.load(f))
    for res in sorted(results, key=lambda r: (r.get("stage1_iters", 0), r.get("pool", 0), r.get("name", ""))):
        for key, m in res.get("mean", {}).items():
            if part and key != part:
                continue
            n = max(1, len(res["seeds"]))
            e = {k: f"{v / n:.0f}" if n == 1 else f"{v / n:.1f}" for k, v in m["errors"].items()}
            change = " ".join(res["opts"]) or "-"
            duplicate_or_fragment = (m["errors"]["pred_duplicate"] + m["errors"]["pred_fragment"]) / n
            rows.append(
                f"| {res['name']} | {key} | {res['labels']} | {res['pool']} | {res['stage1_iters']} "
                f"| {res.get('stage1_lr', '')} | {change} "
                f"| {len(res['seeds'])} | {m['AP']:.1f} ({_per_seed(res, key, 'AP')}) | {m['AP50']:.1f} "
                f"| {m['f1@0.5']:.3f} | {m['best_f1']:.3f} "
                f"| {m['semantic_iou']:.3f} | {e['gt_merged']} | {e['gt_split']} | {e['gt_missed']} "
                f"| {e['gt_poor_mask']} "
                f"| {e['pred_background']} "
                f"| {duplicate_or_fragment:.{0 if n == 1 else 1}f} |"
            )
    print(
        "| run | model / fields | labels | fields | iterations | LR | other change | seeds | AP (per seed) "
        "| AP50 | F1@0.5 | best F1 | sem. IoU "
        "| merged | split | missed | outline off | false: background | false: duplicate or fragment "
        "|  (errors: tubes or predictions per seed)"
    )
    print("|" + "---|" * 19)
    print("\n".join(rows))


def doc_table(part: str = "stage1/heldout") -> str:
    """The recipe table of docs/model_vs_annotator.md: one row per stored run, mean over its seeds."""
    rows = []
    for path in sorted(glob.glob(os.path.join(RESULTS, "*.json"))):
        with open(path) as f:
            res = json.load(f)
        m = res.get("mean", {}).get(part)
        if "runs" not in res or not m:
            continue
        n = len(res["runs"])
        changes = [" ".join(res["opts"])] if res["opts"] else []
        if res.get("pool_density"):
            changes.append(f"pool density {res['pool_density']}")
        if res["labels"] != "exact":
            changes.append(f"{res['labels']} labels")
        stage, split = part.split("/")
        per_seed = " / ".join(f"{r[stage][split]['AP']:.1f}" for r in res["runs"])
        rows.append(
            (
                res["stage1_iters"],
                res["name"],
                f"| `{res['name']}` | {', '.join(changes) or '-'} | {res['stage1_iters']} | {res['pool']} "
                f"| {res['stage1_lr']:g} | {n} | {m['AP']:.1f} | {per_seed} | {m['f1@0.5']:.3f} "
                f"| {m['best_f1']:.3f} "
                f"| {m['semantic_iou']:.3f} "
                f"| {' / '.join(str(r[stage][split]['errors']['gt_merged']) for r in res['runs'])} |",
            )
        )
    header = (
        "| run | change | iterations | fields | LR | seeds | AP (mean) | AP per seed | F1@0.5 | best F1 "
        "| sem. IoU | tubes merged, of 116 (per seed) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([header] + [r[2] for r in sorted(rows)])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--name", help="result name (bench/results/recipe/NAME.json)")
    parser.add_argument("--work", default=os.path.join("/tmp", "myotube_recipe"), help="data and model cache")
    parser.add_argument("--labels", choices=("annotator", "exact"), default="exact")
    parser.add_argument("--pool", type=int, default=0, help="Stage 1 fields (default: the demo's)")
    parser.add_argument(
        "--pool-density",
        default="",
        help="density of the Stage 1 pool (default: the plan's; held-out fields keep it)",
    )
    parser.add_argument("--stage1-iters", type=int, default=3000)
    parser.add_argument("--stage1-lr", type=float, default=1e-3)
    parser.add_argument("--stage2-iters", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--train-fields", type=int, default=20, help="training fields scored for the fit")
    parser.add_argument("--annotator", action="store_true", help="score the annotator on the same fields")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="demo plan fields")
    parser.add_argument("--opts", nargs="*", default=[], help="config overrides for both stages")
    parser.add_argument("--opts2", nargs="*", default=[], help="config overrides for Stage 2 only")
    parser.add_argument(
        "--table", nargs="?", const="*", help="print the stored results (glob on names) and exit"
    )
    parser.add_argument("--part", default="", help="with --table: only this part, e.g. stage1/heldout")
    parser.add_argument(
        "--doc-table", action="store_true", help="print the table of docs/model_vs_annotator.md and exit"
    )
    parser.add_argument(
        "--posthoc",
        metavar="RUN",
        help="score the stored run RUN (seed 0, Stage 1) with other inference settings, and exit",
    )
    parser.add_argument(
        "--resolution-ceiling",
        action="store_true",
        help="score the held-out ground truth after a round trip through mask grids of stride 2, 4, 8, "
        "and exit",
    )
    args = parser.parse_args(argv)
    if args.table:
        print_table(args.table, args.part)
        return
    if args.doc_table:
        print(doc_table())
        return
    if args.posthoc:
        from mask2former.data.coco_records import load_coco_instances
        from mask2former.demo import DemoPlan

        plan = DemoPlan()
        data = build_data(args.work, plan, plan.stage1_images)
        heldout = load_coco_instances(
            data["heldout"], os.path.join(os.path.dirname(data["heldout"]), "images")
        )
        out_dir = os.path.join(args.work, "runs", args.posthoc, "seed0", "stage1")
        write_results(
            os.path.join(RESULTS, f"posthoc_{args.posthoc}.json"),
            {
                "run": args.posthoc,
                "fields": len(heldout),
                "variants": posthoc(out_dir, heldout, plan.pixel_scale),
            },
        )
        return
    if args.resolution_ceiling:
        from mask2former.data.coco_records import load_coco_instances
        from mask2former.demo import DemoPlan

        plan = DemoPlan()
        data = build_data(args.work, plan, args.pool or plan.stage1_images)
        heldout = load_coco_instances(
            data["heldout"], os.path.join(os.path.dirname(data["heldout"]), "images")
        )
        write_results(
            os.path.join(RESULTS, "resolution_ceiling.json"),
            {"fields": len(heldout), "plan": plan.__dict__, "ceiling": resolution_ceiling(heldout)},
        )
        return
    if not args.name:
        parser.error("--name is required")
    exit_on_sigterm()
    run(args)


if __name__ == "__main__":
    main()
