"""Segment myotubes in microscopy images with a trained model or the classical annotator; export
masks and measurements.

--method model (default): each image is resized to the pixel scale the model was trained at
(recorded in the weights; --scale or --pixel-size decide otherwise); images larger than the model
input are then predicted in overlapping tiles and stitched, and the masks come back at the image's
own resolution. --method annotator: the classical annotator segments each image whole, at its own
pixels (no config or weights; no tiles; nothing after it).
Per image: NAME_overlay.png, NAME_labels.tif (uint16), NAME_coco.json, NAME_rois.zip (Fiji),
NAME_measurements.csv; over all images: summary.csv, predictions_coco.json, config.yaml
(annotator.yaml with the annotator) and batch.json, manifests/ for --resume and --merge.
Exit code 1 if any image failed (the others are still done). See docs/predict.md.

Long batches: SIGTERM or Ctrl-C stops after the image in hand and prints the command that
continues (the same with --resume; exit code 143 or 130). --shard K/N does every N-th input from
the K-th, for a scheduler's array jobs; --merge joins the shard folders into one.

Examples (installed, the same command is myotube-predict):
  python predict.py --weights myotube-base --input images/ --output predictions/
  python predict.py --method annotator --input images/ --output annotator_predictions/
  python predict.py --config-file stage2_config.yaml --weights output_stage2_manual/model_final.pth \\
      --input images/ --output predictions/
  python predict.py --config-file stage2_config.yaml --input "plate1/*_myosin.tif" --output out/ \\
      --channel 1 --nuclei-channel 0 --pixel-size 0.325 --opts INFERENCE.MIN_AREA 300
  python predict.py --weights myotube-base --input images/ --output pred/shard_3 --shard 3/8
  python predict.py --merge pred/shard_1 pred/shard_2 ... pred/shard_8 --output pred/all
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mask2former.cli import ArgumentParser, BatchFlags, batch_command_line, setup_logging, user_errors_exit
from mask2former.errors import InputError
from mask2former.utils.processes import default_workers
from mask2former.utils.resumable import continue_command

METHODS = ("model", "annotator")
# Flags that set up a model: refused with --method annotator rather than silently ignored.
MODEL_FLAGS = {
    "config_file": "--config-file",
    "weights": "--weights",
    "scale": "--scale",
    "tile_size": "--tile-size",
    "tile_overlap": "--tile-overlap",
    "score_threshold": "--score-threshold",
    "tta": "--tta/--no-tta",
    "device": "--device",
    "opts": "--opts",
}
ANNOTATOR_FLAGS = {"annotator_scale": "--annotator-scale", "reference_pixel_size": "--reference-pixel-size"}
# The flags of long batches, as the annotator command has them too (cli.BatchFlags), in this command's words.
BATCH_FLAGS = BatchFlags(
    title="long batches (docs/predict.md, 'Thousands of fields')",
    force="replace the results of an earlier run in --output (they are removed first)",
    resume="continue the interrupted run in --output: images whose files are complete are kept, the others "
    "done; refused when the method, config, weights, annotator settings or inputs differ",
    shard="do every N-th input from the K-th (1-based; inputs in their listed order), "
    "into its own --output; image ids stay those of the whole batch (default: all inputs)",
    merge="merge the complete shard folders of one batch into --output, which then holds what one run "
    "writes (takes only --output and --force)",
    merge_description="Merge the shard folders of one batch (predict.py --shard K/N).",
    merge_force="replace the results of an earlier run in --output",
)


def add_output_argument(p: ArgumentParser) -> None:
    p.add_argument("--output", required=True, metavar="DIR", help="folder for the results (created)")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(description=__doc__)
    groups = (
        _method_group,
        _image_group,
        _nuclei_group,
        _speed_group,
        _model_group,
        _annotator_group,
        _batch_group,
    )
    for add_group in groups:
        add_group(p)
    return p


def _method_group(p: ArgumentParser) -> None:
    """What segments the images."""
    method = p.add_argument_group("method")
    method.add_argument(
        "--method",
        choices=METHODS,
        default=None,
        help="what segments the images: a trained model (model), or the classical annotator "
        "(annotator: image processing, no training, no config or weights). Default: the annotator, "
        "the best-scored method on real fields so far (docs/benchmarks.md), unless a model's flag "
        "(--weights, --config-file, --scale, ...) is given",
    )


def _image_group(p: ArgumentParser) -> None:
    """The images, how to read them, and where the results go."""
    g = p.add_argument_group("images and output")
    g.add_argument(
        "--input",
        required=True,
        nargs="+",
        metavar="PATH",
        help="image file(s), folder(s) or glob pattern(s)",
    )
    add_output_argument(g)
    g.add_argument(
        "--channel",
        default=None,
        metavar="N|NAME",
        help="myotube channel of multi-channel images, by index (INPUT.CHANNEL) "
        "or by the name the file gives it (e.g. MyHC)",
    )
    g.add_argument(
        "--scene",
        default=None,
        metavar="N|NAME",
        help="series (TIFF) or scene (CZI, ND2, LIF) to read; default the first",
    )
    g.add_argument(
        "--z-project",
        action="store_true",
        help="an unnamed TIFF axis holds Z planes: max-project it (INPUT.Z_PROJECT)",
    )


def _nuclei_group(p: ArgumentParser) -> None:
    """Nuclei, pixel size and the measurements that use them."""
    g = p.add_argument_group("nuclei and measurements")
    nuclei = g.add_mutually_exclusive_group()
    nuclei.add_argument(
        "--nuclei-channel",
        default=None,
        metavar="N|NAME",
        help="nuclear stain channel of the same image, by index or name (e.g. DAPI; segmented here)",
    )
    nuclei.add_argument(
        "--nuclei",
        default=None,
        metavar="DIR",
        help="folder of nuclei masks (binary or label images) named after the images",
    )
    nuclei.add_argument(
        "--nuclei-images",
        default=None,
        metavar="DIR",
        help="folder of nuclear stain images (e.g. X_dapi.png for X_myosin.png), segmented here",
    )
    g.add_argument(
        "--pixel-size",
        type=float,
        default=None,
        metavar="MICRONS",
        help="microns per pixel of the input images "
        "(default: what the file says: OME, ImageJ, CZI, ND2, LIF): measurements in microns "
        "instead of pixels, and the resize factor when the model records its own pixel size",
    )
    g.add_argument(
        "--fusion-min-nuclei",
        type=int,
        default=2,
        metavar="N",
        help="a myotube with at least N nuclei counts as fused in the fusion index (default %(default)s)",
    )
    g.add_argument(
        "--nuclei-radius-um",
        type=float,
        default=None,
        metavar="UM",
        help="about a nucleus radius in microns (needs the pixel size)",
    )
    g.add_argument(
        "--nuclei-min-area-um2",
        type=float,
        default=None,
        metavar="UM2",
        help="smallest nucleus in square microns (needs the pixel size)",
    )


def _speed_group(p: ArgumentParser) -> None:
    """Measuring while the model predicts."""
    g = p.add_argument_group("speed")
    g.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="processes that measure and export while the model predicts the next image "
        f"(default: with a GPU every core but one, at most 8, here {default_workers()}; "
        "on the CPU 0, as the model's threads use every core; 0: everything in turn)",
    )


def _model_group(p: ArgumentParser) -> None:
    """Settings of the model method."""
    model = p.add_argument_group("model (--method model)")
    model.add_argument(
        "--config-file",
        default=None,
        metavar="FILE",
        help="config YAML the model was trained with; default: the config stored with --weights "
        "(named models and model_final.pth carry theirs)",
    )
    model.add_argument(
        "--weights",
        default=None,
        metavar="PATH|NAME",
        help="model_final.pth, a model shipped with the package by name (e.g. myotube-base), "
        "or an HF folder; default: OUTPUT_DIR/model_final.pth of the config if present, else MODEL.WEIGHTS; "
        "'' = random weights (tests only)",
    )
    _prediction_flags(model)
    model.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None, help="MODEL.DEVICE")
    model.add_argument(
        "--opts",
        nargs="*",
        default=[],
        metavar="KEY VALUE",
        help="config overrides, applied last, e.g. --opts INFERENCE.MIN_AREA 300",
    )


def _prediction_flags(model) -> None:
    """How the model predicts: scale, tiles, score threshold, test-time augmentation."""
    model.add_argument(
        "--scale",
        type=float,
        default=None,
        metavar="F",
        help="resize images by F before tiling (INFERENCE.INPUT_SCALE); "
        "default: the training scale recorded in the weights, "
        "or, with --pixel-size and a model that knows its pixel size, the ratio of the two",
    )
    model.add_argument(
        "--tile-size",
        type=int,
        default=None,
        metavar="PX",
        help="tile side in model pixels, after resizing (INFERENCE.TILE_SIZE; 0 = INPUT.IMAGE_SIZE)",
    )
    model.add_argument(
        "--tile-overlap",
        type=float,
        default=None,
        metavar="F",
        help="overlap of neighbouring tiles, fraction (INFERENCE.TILE_OVERLAP)",
    )
    model.add_argument(
        "--score-threshold",
        type=float,
        default=None,
        metavar="S",
        help="minimum instance score (MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD; "
        "TEST.AUG.OBJECT_MASK_THRESHOLD with the four flips fused)",
    )
    model.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="test-time augmentation: predict the four flips of every image and fuse them; more "
        "accurate, slower; --no-tta predicts each tile once (TEST.AUG.ENABLED; default: the "
        "model's config, on in the CPU presets configs/cpu_tiny; docs/predict.md)",
    )


def _annotator_group(p: ArgumentParser) -> None:
    """Settings of the annotator method."""
    annotator = p.add_argument_group("classical annotator (--method annotator; docs/annotator.md)")
    annotator.add_argument(
        "--annotator-scale",
        type=float,
        default=None,
        metavar="F",
        help="pixels of the images per pixel of a whole 1500 px field, which the annotator's lengths are "
        "given for (default: each image is a whole field, longest side / 1500; 1.0 for crops imaged "
        "like a 1500 px field)",
    )
    annotator.add_argument(
        "--reference-pixel-size",
        type=float,
        default=None,
        metavar="UM",
        help="the scale as a physical size: microns per pixel of the 1500 px reference field; each "
        "image's scale then follows from its pixel size (instead of --annotator-scale)",
    )


def _batch_group(p: ArgumentParser) -> None:
    """Long batches: replace, resume, shard, merge."""
    BATCH_FLAGS.add_arguments(p)


def default_method(parser: ArgumentParser, args) -> str:
    """Without --method: the annotator, the best-scored method on real fields, unless a flag of the
    model's is given (existing model commands keep running the model)."""
    model_flags = [dest for dest in MODEL_FLAGS if getattr(args, dest) != parser.get_default(dest)]
    return "model" if model_flags else "annotator"


def refuse_other_methods_flags(parser: ArgumentParser, args) -> None:
    """A flag of the other method is an error: a --weights given with --method annotator would
    otherwise look used."""
    other = MODEL_FLAGS if args.method == "annotator" else ANNOTATOR_FLAGS
    given = [flag for dest, flag in other.items() if getattr(args, dest) != parser.get_default(dest)]
    if given:
        raise InputError(
            None, f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} not for --method {args.method}"
        )


@user_errors_exit
def main(argv: Sequence[str] | None = None) -> int:
    program, argv = batch_command_line(argv, __name__)
    merge = BATCH_FLAGS.parse_merge(argv, add_output_argument)
    if merge is not None:
        from mask2former.inference.command import merge_command

        return merge_command(merge.merge, merge.output, force=merge.force)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.method = args.method or default_method(parser, args)
    refuse_other_methods_flags(parser, args)
    setup_logging()
    from mask2former.inference.command import BatchRequest

    request = BatchRequest(
        inputs=args.input,
        output=args.output,
        channel=args.channel,
        z_project=args.z_project,
        scene=args.scene,
        nuclei_channel=args.nuclei_channel,
        nuclei=args.nuclei,
        nuclei_images=args.nuclei_images,
        pixel_size=args.pixel_size,
        fusion_min_nuclei=args.fusion_min_nuclei,
        nuclei_radius_um=args.nuclei_radius_um,
        nuclei_min_area_um2=args.nuclei_min_area_um2,
        progress=not args.no_progress,
        workers=args.workers,
        force=args.force,
        resume=args.resume,
        shard=args.shard,
        continue_with=continue_command(program, argv),
    )
    if args.method == "annotator":
        from mask2former.annotate import AnnotatorParams
        from mask2former.inference.command import annotator_command

        return annotator_command(
            request,
            AnnotatorParams(scale=args.annotator_scale, reference_pixel_size_um=args.reference_pixel_size),
        )
    from mask2former.inference.command import predict_command

    return predict_command(
        request,
        config_file=args.config_file,
        weights=args.weights,
        scale=args.scale,
        tile_size=args.tile_size,
        tile_overlap=args.tile_overlap,
        score_threshold=args.score_threshold,
        tta=args.tta,
        device=args.device,
        opts=args.opts,
    )


if __name__ == "__main__":
    sys.exit(main())
