"""Train one config, or evaluate a checkpoint with --eval-only (detectron2's train_net.py habits).

Installed, this is myotube-train: the 'train' command of detectron2 users trains one config;
both stages in a row are myotube-train-two-stage (train_two_stage.py). A config file that is not
in the working folder but is shipped with the package (stage1_config.yaml, configs/cpu_tiny/...)
is the shipped one.

Examples (installed, the same command is myotube-train):
  python train_net.py --config-file stage1_config.yaml
  python train_net.py --config-file stage2_config.yaml --eval-only \\
      MODEL.WEIGHTS output_stage2_manual/model_final.pth
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mask2former.cli import (
    ArgumentParser,
    add_dataset_argument,
    add_launch_arguments,
    add_opts_argument,
    launch,
    user_errors_exit,
)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument(
        "--config-file",
        required=True,
        metavar="FILE",
        help="path to a config YAML, or a shipped one by its path in mask2former/configs "
        "(e.g. cpu_tiny/stage1_config.yaml)",
    )
    add_dataset_argument(parser)
    parser.add_argument(
        "--eval-only", action="store_true", help="evaluate MODEL.WEIGHTS on DATASETS.TEST, no training"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the last checkpoint in OUTPUT_DIR"
    )
    add_launch_arguments(parser)
    add_opts_argument(
        parser, dest="extra_opts"
    )  # the trailing KEY VALUE pairs below work too, as in detectron2
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        metavar="KEY VALUE",
        help="config overrides, e.g. MODEL.WEIGHTS path SOLVER.BASE_LR 1e-4",
    )
    return parser


@user_errors_exit
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return launch(args, lambda: run(args))


def run(args) -> int:
    from mask2former.engine.two_stage import run_train_net

    run_train_net(
        args.config_file, args.dataset, list(args.opts) + list(args.extra_opts), args.eval_only, args.resume
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
