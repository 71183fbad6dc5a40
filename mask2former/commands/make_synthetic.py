"""Write synthetic myotube fields with exact instance masks (COCO RLE).

Plain mode: OUT/images/ + OUT/annotations.json. With --unified, the four splits of the unified
dataset layout, the algorithmic ones labelled by the classical annotator (or --algorithmic truth).

Example:
  python utils/make_synthetic_dataset.py --out synth --num-images 50 --size 1500 --seed 0 \\
      --density sparse dense
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from mask2former.cli import ArgumentParser, setup_logging, user_errors_exit
from mask2former.data.synthetic import density_value
from mask2former.errors import InputError
from mask2former.synthetic_datasets import write_synthetic_dataset

logger = logging.getLogger("mask2former.synthetic")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output folder (images/ and annotations are written into it)",
    )
    parser.add_argument("--num-images", type=int, default=10, help="number of fields (default %(default)s)")
    parser.add_argument("--size", type=int, default=512, help="field side in pixels (default %(default)s)")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed; the same seed writes the same dataset (default %(default)s)",
    )
    parser.add_argument(
        "--density",
        nargs="+",
        default=["sparse", "medium", "dense"],
        help="covered fraction or level (sparse, medium, dense); several values cycle over the images "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--bit-depth",
        type=int,
        choices=(8, 16),
        default=8,
        help="8-bit PNG, or 16-bit PNG holding 12-bit data",
    )
    parser.add_argument(
        "--pixel-scale",
        type=float,
        default=1.0,
        help="length scale relative to a real field at 1500 px (default %(default)s)",
    )
    parser.add_argument("--unified", action="store_true", help="write the four-split unified dataset layout")
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="share of images in the test splits (unified; default %(default)s)",
    )
    parser.add_argument(
        "--manual-fraction",
        type=float,
        default=0.5,
        help="share of training images with manual (true) masks (unified; default %(default)s)",
    )
    parser.add_argument(
        "--algorithmic",
        choices=("annotator", "truth"),
        default="annotator",
        help="algorithmic splits from the classical annotator or the ground truth "
        "(unified; default %(default)s)",
    )
    parser.add_argument(
        "--dapi", action="store_true", help="also write dapi/<name>_dapi.png and nuclei/<name>_nuclei.png"
    )
    return parser


def parse_density(values: list[str]) -> list:
    out = []
    for v in values:
        try:
            out.append(float(v))
        except ValueError:
            out.append(v)
    for v in out:
        density_value(v)
    return out


@user_errors_exit
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        densities = parse_density(args.density)
        if args.num_images < 1 or args.size < 16:
            raise ValueError("--num-images must be >= 1 and --size >= 16")
        if not 0.0 <= args.test_fraction < 1.0 or not 0.0 < args.manual_fraction <= 1.0:
            raise ValueError("--test-fraction must be in [0, 1) and --manual-fraction in (0, 1]")
    except ValueError as err:
        raise InputError(None, str(err)) from None
    path = write_synthetic_dataset(
        args.out,
        args.num_images,
        size=args.size,
        seed=args.seed,
        density=densities,
        bit_depth=args.bit_depth,
        pixel_scale=args.pixel_scale,
        unified=args.unified,
        test_fraction=args.test_fraction,
        manual_fraction=args.manual_fraction,
        algorithmic=args.algorithmic,
        write_dapi=args.dapi,
        progress=not args.no_progress,
    )
    logger.info("Wrote %d synthetic fields to %s (%s)", args.num_images, args.out, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
