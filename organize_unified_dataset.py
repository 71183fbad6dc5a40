#!/usr/bin/env python
"""Build the unified two-stage dataset from the annotator's output and your manual annotations.

The command lives in mask2former/commands/organize.py; installed, the same command is
``myotube-organize``. This file keeps ``python organize_unified_dataset.py`` working in a
checkout, with the same options and --help.
"""

import sys

from mask2former.commands.organize import main

if __name__ == "__main__":
    sys.exit(main())
