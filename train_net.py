#!/usr/bin/env python
"""Train one config, or evaluate a checkpoint with --eval-only.

The command lives in mask2former/commands/train.py; installed, the same command is
``myotube-train``. This file keeps ``python train_net.py`` working in a checkout, with the same
options and --help.
"""

import sys

from mask2former.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
