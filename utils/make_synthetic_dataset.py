#!/usr/bin/env python
"""Write synthetic myotube fields with exact instance masks (COCO RLE).

The command lives in mask2former/commands/make_synthetic.py; anywhere, it is ``python -m
mask2former.commands.make_synthetic``. This file keeps ``python
utils/make_synthetic_dataset.py`` working in a checkout, with the same options and --help.
"""

import os
import sys

# Run as a file (python utils/make_synthetic_dataset.py): the package lives one folder up.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mask2former.commands.make_synthetic import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
