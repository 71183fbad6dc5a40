"""Label myotubes in a folder of raw microscopy images with the classical annotator.

Writes OUT/images/<stem>.png (longest side = --resolution; with --channel, <stem>.tif with every
channel), OUT/annotations/train_annotations.json and test_annotations.json (COCO, RLE, one
instance per myotube) and OUT/annotation_summary.json. Unreadable files are listed and skipped;
the exit code is 1 if any failed. See docs/annotator.md.

Long batches: SIGTERM or Ctrl-C stops after the images in hand and prints the command that
continues (the same with --resume; exit code 143 or 130). --shard K/N annotates every N-th input
from the K-th; --merge joins the shard folders and splits train/test over the whole batch.

Example (installed, the same command is myotube-annotate):
  python utils/batch_myotube_processing.py --input_dir raw_fields --output_dir annotator_out \\
      --resolution 1500 --test_fraction 0.2 --seed 0 --workers 4
  python utils/batch_myotube_processing.py --input_dir raw_fields --output_dir ann/shard_2 --shard 2/4
  python utils/batch_myotube_processing.py --merge ann/shard_1 ann/shard_2 ann/shard_3 ann/shard_4 \\
      --output_dir ann/all
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from mask2former.annotate import AnnotatorParams
from mask2former.annotate.batch import annotate_folder, merge_annotations
from mask2former.cli import ArgumentParser, BatchFlags, batch_command_line, setup_logging, user_errors_exit
from mask2former.errors import InputError
from mask2former.utils.resumable import StopRequests, continue_command, stopped


def add_output_argument(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--output_dir",
        required=True,
        help="output folder: images/, annotations/{train,test}_annotations.json",
    )


# The flags of long batches, as predict.py has them too (cli.BatchFlags), in this command's words.
BATCH_FLAGS = BatchFlags(
    title="long batches (docs/annotator.md, 'Long batches')",
    force="replace an earlier run's output folder (it is removed first)",
    resume="continue the interrupted run in --output_dir: images already complete are kept; refused when "
    "the settings or inputs differ",
    shard="annotate every N-th input of the sorted list from the K-th (1-based) "
    "into its own --output_dir; no train/test files until --merge (default: all inputs)",
    merge="merge the complete shard folders of one batch into --output_dir, splitting train/test over the "
    "whole batch (takes only --output_dir and --force)",
    merge_description="Merge the shard folders of one annotator batch.",
    merge_force="replace an earlier run's output folder",
)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__)
    add_image_arguments(parser)
    add_scale_arguments(parser)
    BATCH_FLAGS.add_arguments(parser)
    return parser


def add_image_arguments(parser: ArgumentParser) -> None:
    """The images: where they are and go, their size, split, channel, and the worker processes."""
    parser.add_argument(
        "--input_dir",
        required=True,
        help="folder of raw images (.tif/.tiff/.png/.jpg; 8/16-bit, channels, Z-stacks)",
    )
    add_output_argument(parser)
    parser.add_argument(
        "--resolution",
        type=int,
        default=1500,
        help="longest side of the written images in pixels (default %(default)s)",
    )
    parser.add_argument(
        "--test_fraction",
        type=float,
        default=0.2,
        help="share of images in the test split (default %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the train/test shuffle (default %(default)s)"
    )
    parser.add_argument(
        "--channel",
        type=int,
        default=-1,
        help="channel of multi-channel images holding myosin; every channel is written "
        "(default: grayscale/RGB as is)",
    )
    parser.add_argument(
        "--z-project", action="store_true", help="an unnamed TIFF axis holds Z planes: max-project it"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=max(1, (os.cpu_count() or 2) - 1),
        help="parallel processes (default: cores - 1, here %(default)s)",
    )


def add_scale_arguments(parser: ArgumentParser) -> None:
    """The annotator's scale: relative (--scale) or physical (--reference-pixel-size), and the
    input's pixel size."""
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        help="pixels of the written images per pixel of a whole 1500 px field "
        "(default: resolution / 1500, i.e. each input is a whole field); "
        "use 1.0 for crops imaged like a 1500 px field",
    )
    parser.add_argument(
        "--reference-pixel-size",
        type=float,
        default=None,
        metavar="UM",
        help="the scale as a physical size: microns per pixel of the 1500 px reference field the annotator's "
        "lengths are given in; each image's scale then follows from its pixel size (instead of --scale)",
    )
    parser.add_argument(
        "--pixel-size",
        type=float,
        default=None,
        metavar="UM",
        help="microns per pixel of the input images "
        "(default: what the file says: OME, ImageJ, CZI, ND2, LIF); "
        "recorded in the annotations so models know their scale in microns",
    )


@user_errors_exit
def main(argv: Sequence[str] | None = None) -> int:
    program, argv = batch_command_line(argv, __name__)
    merge = BATCH_FLAGS.parse_merge(argv, add_output_argument)
    if merge is not None:
        return report(merge_annotations(merge.merge, merge.output_dir, force=merge.force))
    args = build_parser().parse_args(argv)
    setup_logging()
    if args.workers < 1:
        raise InputError(None, f"--workers must be at least 1, got {args.workers}")
    if args.scale is not None and args.scale <= 0:
        raise InputError(None, f"--scale must be positive, got {args.scale}")
    with StopRequests() as stop:
        summary = annotate_folder(
            args.input_dir,
            args.output_dir,
            resolution=args.resolution,
            test_fraction=args.test_fraction,
            seed=args.seed,
            channel=args.channel,
            workers=args.workers,
            params=AnnotatorParams(scale=args.scale, reference_pixel_size_um=args.reference_pixel_size),
            progress=not args.no_progress,
            force=args.force,
            z_project=args.z_project,
            pixel_size=args.pixel_size,
            resume=args.resume,
            shard=args.shard,
            stop=stop,
        )
    if summary.stopped:
        raise stopped(
            summary.stopped,
            summary.annotated,
            summary.images,
            args.output_dir,
            continue_command(program, argv),
        )
    return report(summary)


def report(summary) -> int:
    for line in summary.lines():
        print(line)
    if not summary.annotated:
        print("error: no image could be annotated", file=sys.stderr)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
