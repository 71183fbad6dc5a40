#!/usr/bin/env python
"""Label myotubes in a folder of raw microscopy images with the classical annotator.

Writes OUT/images/<stem>.png (longest side = --resolution; with --channel, <stem>.tif with every
channel), OUT/annotations/train_annotations.json and test_annotations.json (COCO, RLE, one
instance per myotube) and OUT/annotation_summary.json. Unreadable files are listed and skipped;
the exit code is 1 if any failed. See docs/annotator.md.

Example:
  python utils/batch_myotube_processing.py --input_dir raw_fields --output_dir annotator_out \\
      --resolution 1500 --test_fraction 0.2 --seed 0 --workers 4
"""

import os
import sys

# Run as a file (python utils/batch_myotube_processing.py): the package lives one folder up.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mask2former.annotate import AnnotatorParams  # noqa: E402
from mask2former.annotate.batch import annotate_folder  # noqa: E402
from mask2former.cli import ArgumentParser, setup_logging, user_errors_exit  # noqa: E402
from mask2former.errors import InputError  # noqa: E402


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--input_dir", required=True, help="folder of raw images (.tif/.tiff/.png/.jpg; 8/16-bit, channels, Z-stacks)")
    parser.add_argument("--output_dir", required=True, help="output folder: images/, annotations/{train,test}_annotations.json")
    parser.add_argument("--resolution", type=int, default=1500, help="longest side of the written images in pixels (default %(default)s)")
    parser.add_argument("--test_fraction", type=float, default=0.2, help="share of images in the test split (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/test shuffle (default %(default)s)")
    parser.add_argument("--channel", type=int, default=-1,
                        help="channel of multi-channel images holding myosin; every channel is written (default: grayscale/RGB as is)")
    parser.add_argument("--z-project", action="store_true", help="an unnamed TIFF axis holds Z planes: max-project it")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="parallel processes (default: cores - 1, here %(default)s)")
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        help="pixels of the written images per pixel of a whole 1500 px field (default: resolution / 1500, i.e. each "
        "input is a whole field); use 1.0 for crops imaged like a 1500 px field",
    )
    parser.add_argument("--reference-pixel-size", type=float, default=None, metavar="UM",
                        help="the scale as a physical size: microns per pixel of the 1500 px reference field the annotator's "
                        "lengths are given in; each image's scale then follows from its pixel size (instead of --scale)")
    parser.add_argument("--pixel-size", type=float, default=None, metavar="UM",
                        help="microns per pixel of the input images (default: what the file says: OME, ImageJ, CZI, ND2, LIF); "
                        "recorded in the annotations so models know their scale in microns")
    parser.add_argument("--force", action="store_true", help="replace an earlier run's output folder (as a whole, once the new one is complete)")
    return parser


@user_errors_exit
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    if args.workers < 1:
        raise InputError(None, f"--workers must be at least 1, got {args.workers}")
    if args.scale is not None and args.scale <= 0:
        raise InputError(None, f"--scale must be positive, got {args.scale}")
    summary = annotate_folder(
        args.input_dir, args.output_dir, resolution=args.resolution, test_fraction=args.test_fraction, seed=args.seed,
        channel=args.channel, workers=args.workers, params=AnnotatorParams(scale=args.scale, reference_pixel_size_um=args.reference_pixel_size),
        progress=not args.no_progress, force=args.force, z_project=args.z_project, pixel_size=args.pixel_size,
    )
    for line in summary.lines():
        print(line)
    if not summary.annotated:
        print("error: no image could be annotated", file=sys.stderr)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
