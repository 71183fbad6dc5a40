"""Register the four myotube splits (and list them) from a unified dataset folder.

Training scripts call the same function themselves; run this to check what gets registered.
In your own code: ``from mask2former.data.catalog import register_two_stage_datasets``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mask2former.cli import (
    ArgumentParser,
    add_dataset_argument,
    escape_unencodable_output,
    setup_logging,
    user_errors_exit,
)
from mask2former.data.catalog import ANNOTATION_FILES, get_dataset, register_two_stage_datasets


@user_errors_exit
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__)
    add_dataset_argument(parser)
    parser.add_argument("--load", action="store_true", help="also load and validate each split")
    args = parser.parse_args(argv)
    escape_unencodable_output()
    setup_logging()
    names = register_two_stage_datasets(args.dataset)
    for name in ANNOTATION_FILES:
        if name in names:
            entry = get_dataset(name)
            extra = f"  {len(entry.load())} images" if args.load else ""
            print(f"registered {name:<28} {entry.json_file}{extra}")
        else:
            print(f"missing    {name:<28} (no annotations/{ANNOTATION_FILES[name]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
