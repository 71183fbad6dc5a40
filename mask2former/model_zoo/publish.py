"""Put a trained model into the package's model zoo under a name, with its checksum.

Keeps the weights, iteration, config, class names and pixel scale of CHECKPOINT (a model_final.pth
or a periodic checkpoint; no optimizer state), writes them to mask2former/model_zoo/NAME.pth and
records the file's SHA-256 and size in models.json. Afterwards MODEL.WEIGHTS NAME and
``predict.py --weights NAME`` load it.

Example:
  python -m mask2former.model_zoo.publish output_base/model_final.pth --name myotube-base
"""

from __future__ import annotations

import sys

from mask2former.cli import ArgumentParser, user_errors_exit


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m mask2former.model_zoo.publish", description=__doc__)
    p.add_argument(
        "checkpoint", metavar="CHECKPOINT", help="project checkpoint that holds its config (model_final.pth)"
    )
    p.add_argument("--name", required=True, help="the model's name, e.g. myotube-base")
    p.add_argument(
        "--description", default=None, help="one line for models.json (default: the entry's current one)"
    )
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY VALUE",
        dest="settings",
        help="config settings written into the model, e.g. MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD 0.7",
    )
    return p


@user_errors_exit
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mask2former.modeling.zoo import publish

    model = publish(args.checkpoint, args.name, args.description, args.settings)
    print(f"{model.name}: {model.path} ({model.size_bytes} bytes, sha256 {model.sha256})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
