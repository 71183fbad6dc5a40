#!/usr/bin/env python
"""Label myotubes in a folder of raw microscopy images with the classical annotator.

The command lives in mask2former/commands/annotate.py; installed, the same command is
``myotube-annotate``. This file keeps ``python utils/batch_myotube_processing.py`` working in a
checkout, with the same options and --help.
"""

import os
import sys

# Run as a file (python utils/batch_myotube_processing.py): the package lives one folder up.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mask2former.commands.annotate import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
