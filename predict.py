#!/usr/bin/env python
"""Segment myotubes with a trained model or the classical annotator; export masks and measurements.

The command lives in mask2former/commands/predict.py; installed, the same command is
``myotube-predict``. This file keeps ``python predict.py`` working in a checkout, with the same
options and --help.
"""

import sys

from mask2former.commands.predict import main

if __name__ == "__main__":
    sys.exit(main())
