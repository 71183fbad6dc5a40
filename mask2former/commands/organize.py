"""Build the unified two-stage dataset from the annotator's output and your manual annotations.

The manual annotations may be a COCO JSON (e.g. CVAT "COCO 1.0"), a CVAT "for images 1.1" XML,
a folder of LabelMe JSON files, a VIA 2 JSON, or a folder of instance label images; the format is
detected (see docs/organize.md). Inputs are only read. An existing output folder is replaced only
with --force, and only once the new dataset is complete and valid.

Example (installed, the same command is myotube-organize):
  python organize_unified_dataset.py --algorithmic_dataset annotator_out \\
      --manual_dataset cvat_export/annotations.xml --output_dataset myotube_dataset --manual_test_fraction 0.2
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from mask2former.cli import ArgumentParser, setup_logging, user_errors_exit
from mask2former.data.catalog import DEFAULT_DATASET_ROOT
from mask2former.data.importers import FORMATS
from mask2former.data.organize import format_summary, organize_unified_dataset


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__)
    add_dataset_arguments(parser)
    add_build_arguments(parser)
    add_manual_label_arguments(parser)
    return parser


def add_dataset_arguments(parser: ArgumentParser) -> None:
    """The two sources (the annotator's output, the manual annotations and their format) and the
    dataset folder to create."""
    parser.add_argument(
        "--algorithmic_dataset",
        required=True,
        metavar="DIR",
        help="annotator output: images/ and annotations/{train,test}_annotations.json",
    )
    parser.add_argument(
        "--manual_dataset",
        metavar="PATH",
        help="manual annotations: COCO/LabelMe/VIA JSON, CVAT XML, or a folder "
        "(LabelMe files, label images, COCO export)",
    )
    parser.add_argument(
        "--output_dataset",
        default=DEFAULT_DATASET_ROOT,
        metavar="DIR",
        help="unified dataset folder to create (default: %(default)s)",
    )
    parser.add_argument(
        "--manual_format",
        default="auto",
        choices=("auto", *FORMATS),
        help="format of --manual_dataset (default: detect it)",
    )
    parser.add_argument(
        "--manual_image_dir", metavar="DIR", help="folder searched first for the manually annotated images"
    )


def add_build_arguments(parser: ArgumentParser) -> None:
    """How the dataset is made: the manual test split, linked or copied images, replacing one."""
    parser.add_argument(
        "--manual_test_fraction",
        type=float,
        default=0.0,
        metavar="F",
        help="hold out this fraction of manual images as manual_test "
        "(ignored when the source has a test split)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the manual train/test draw (default %(default)s)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--link",
        action="store_true",
        help="hard-link images instead of copying them (copies where links are impossible)",
    )
    mode.add_argument("--copy", dest="link", action="store_false", help="copy images (default)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace an existing output dataset (swapped in only when complete)",
    )


def add_manual_label_arguments(parser: ArgumentParser) -> None:
    """Which manual labels count: categories mapped to myotube or left out, and empty images."""
    parser.add_argument(
        "--category-map",
        dest="category_map",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME=TARGET",
        help="map a category name to myotube (NAME=myotube) or leave it out (NAME=ignore); repeatable",
    )
    parser.add_argument(
        "--keep-empty-manual-images",
        action="store_true",
        help="keep manual images without any myotube as background examples (default: leave them out)",
    )


@user_errors_exit
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    print(format_summary(organize_dataset(args)))
    return 0


def organize_dataset(args: argparse.Namespace) -> dict[str, Any]:
    """Build the unified dataset the command line asks for; returns its summary
    (organize_unified_dataset's)."""
    return organize_unified_dataset(
        args.algorithmic_dataset,
        args.manual_dataset,
        args.output_dataset,
        manual_test_fraction=args.manual_test_fraction,
        seed=args.seed,
        link=args.link,
        force=args.force,
        manual_format=args.manual_format,
        category_map=args.category_map,
        manual_image_dir=args.manual_image_dir,
        keep_empty_manual_images=args.keep_empty_manual_images,
        progress=False if args.no_progress else None,
    )


if __name__ == "__main__":
    sys.exit(main())
