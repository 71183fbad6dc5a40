#!/usr/bin/env python
"""Two-stage Mask2Former training for myotubes: Stage 1, then Stage 2.

The command lives in mask2former/commands/train_two_stage.py; installed, the same command is
``myotube-train-two-stage``. This file keeps ``python train_two_stage.py`` working in a
checkout, with the same options and --help.
"""

import sys

from mask2former.commands.train_two_stage import main

if __name__ == "__main__":
    sys.exit(main())
