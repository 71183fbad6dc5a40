#!/usr/bin/env python
"""Is everything ready for two-stage training? Dataset counts, validation, environment, weights.

The command lives in mask2former/commands/setup_two_stage.py; installed, the same command is
``myotube-setup``. This file keeps ``python setup_two_stage.py`` working in a checkout, with the
same options and --help.
"""

import sys

from mask2former.commands.setup_two_stage import main

if __name__ == "__main__":
    sys.exit(main())
