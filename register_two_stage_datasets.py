#!/usr/bin/env python
"""Register the four myotube splits (and list them) from a unified dataset folder.

The command lives in mask2former/commands/register_datasets.py; anywhere, it is ``python -m
mask2former.commands.register_datasets``. This file keeps ``python
register_two_stage_datasets.py`` working in a checkout, with the same options and --help.
"""

import sys

from mask2former.commands.register_datasets import main

if __name__ == "__main__":
    sys.exit(main())
