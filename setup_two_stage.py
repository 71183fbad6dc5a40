#!/usr/bin/env python
"""Is everything ready for two-stage training? Dataset counts, validation, environment, weights.

Exit code 0 when ready to train, 1 otherwise. ``--json`` prints one machine-readable object.
"""

import json
import sys

from mask2former.cli import (
    ArgumentParser,
    add_dataset_argument,
    add_opts_argument,
    setup_logging,
    user_errors_exit,
)
from mask2former.diagnostics import collect_report, format_report
from mask2former.utils import REPO_ROOT


@user_errors_exit
def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__)
    add_dataset_argument(parser)
    parser.add_argument("--config-dir", default=REPO_ROOT, help="folder with stage1_config.yaml and stage2_config.yaml")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    add_opts_argument(parser)  # the overrides training will get, e.g. INPUT.CHANNEL 1 for multi-channel TIFFs
    args = parser.parse_args(argv)
    setup_logging()
    report = collect_report(args.dataset, args.config_dir, args.opts)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if report["ready"] else 1


if __name__ == "__main__":
    # File names that are not valid UTF-8 reach us as surrogate escapes; print them escaped
    # instead of failing with UnicodeEncodeError on a strict UTF-8 terminal.
    sys.stdout.reconfigure(errors="backslashreplace")
    sys.exit(main())
