"""Is everything ready for two-stage training? Dataset counts, validation, environment, weights.

Exit code 0 when ready to train, 1 otherwise. ``--json`` prints one machine-readable object.
Installed, the same command is myotube-setup.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from mask2former.cli import (
    ArgumentParser,
    add_config_dir_argument,
    add_dataset_argument,
    add_opts_argument,
    config_dir,
    escape_unencodable_output,
    setup_logging,
    user_errors_exit,
)
from mask2former.diagnostics import collect_report, format_report


@user_errors_exit
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__)
    add_dataset_argument(parser)
    add_config_dir_argument(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    add_opts_argument(parser)  # the overrides training will get, e.g. INPUT.CHANNEL 1 for multi-channel TIFFs
    args = parser.parse_args(argv)
    escape_unencodable_output()
    setup_logging()
    report = collect_report(args.dataset, config_dir(args.config_dir), args.opts)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if report["ready"] else 1


if __name__ == "__main__":
    sys.exit(main())
