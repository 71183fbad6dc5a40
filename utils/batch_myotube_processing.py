#!/usr/bin/env python
"""Label myotubes in a folder of raw microscopy images with the classical annotator.

Writes OUT/images/<stem>.png (longest side = --resolution), OUT/annotations/train_annotations.json
and test_annotations.json (COCO, RLE, one instance per myotube) and OUT/annotation_summary.json.
Unreadable files are listed and skipped; the exit code is 1 if any failed. See docs/annotator.md.

Example:
  python utils/batch_myotube_processing.py --input_dir raw_fields --output_dir annotator_out \\
      --resolution 1500 --test_fraction 0.2 --seed 0 --workers 4
"""

import os
import sys

# Run as a file (python utils/batch_myotube_processing.py): the package lives one folder up.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mask2former.annotate.batch import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
