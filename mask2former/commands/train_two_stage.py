"""Two-stage Mask2Former training for myotubes.

Stage 1 learns from the classical annotator's labels (stage1_config.yaml), Stage 2 fine-tunes the
Stage 1 model on the manual annotations (stage2_config.yaml). Without --stage both run, Stage 2
starting from Stage 1's model_final.pth.

Examples (installed, the same command is myotube-train-two-stage):
  python train_two_stage.py                                  # both stages, ./myotube_dataset
  python train_two_stage.py --stage 1 --opts SOLVER.MAX_ITER 2000
  python train_two_stage.py --config-dir configs/cpu_tiny    # tiny CPU preset
  python train_two_stage.py --resume                         # continue after an interruption
  python train_two_stage.py --num-gpus 4                     # one node, 4 GPUs (DDP via torchrun)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mask2former.cli import (
    ArgumentParser,
    add_config_dir_argument,
    add_dataset_argument,
    add_launch_arguments,
    add_opts_argument,
    config_dir,
    launch,
    user_errors_exit,
)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--stage", type=int, choices=(1, 2), help="run only this stage (default: 1 then 2)")
    add_dataset_argument(parser)
    add_config_dir_argument(parser)
    parser.add_argument(
        "--resume", action="store_true", help="continue from the last checkpoint in each stage's OUTPUT_DIR"
    )
    add_launch_arguments(parser)
    add_opts_argument(parser)
    return parser


@user_errors_exit
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return launch(args, lambda: run(args))


def run(args) -> int:
    from mask2former.engine.two_stage import run_two_stage

    stages = [args.stage] if args.stage else [1, 2]
    finals = run_two_stage(config_dir(args.config_dir), args.dataset, stages, args.opts, args.resume)
    for stage, path in finals.items():
        print(f"Stage {stage} model: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
