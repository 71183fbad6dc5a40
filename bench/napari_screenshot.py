"""The picture of docs/napari.md: the plugin's widget on a real QA-skMCs field, in a real window.

    # a model of bench/real_two_stage.py --output
    xvfb-run -a python -m bench.napari_screenshot --model models/stage1

Opens a field of ../shared/data/qa-skmcs-train, predicts it with the widget (the model at its
recorded scale) and writes docs/images/napari_widget.png. Needs the extras napari and gui-test.
"""

from __future__ import annotations

import argparse
import os

from bench.common import REPO_ROOT
from bench.real_two_stage import DEFAULT_DATA, list_fields
from mask2former.utils.run_files import FINAL


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="folder with model_final.pth and config.yaml")
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--field", type=int, default=1, help="which field with a human mask (sorted by name)")
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "docs", "images", "napari_widget.png"))
    args = parser.parse_args(argv)
    fields = list_fields(args.data)
    if not fields:
        print(f"no real fields under {args.data}: skipped")
        return
    import napari
    from qtpy.QtWidgets import QApplication
    from skimage.io import imsave

    from mask2former.napari._widget import MyotubeWidget

    viewer = napari.Viewer(show=True)
    viewer.open(fields[args.field])
    widget = MyotubeWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Myotubes", area="right")
    viewer.window._qt_window.resize(1800, 1000)  # room for the dock beside the canvas
    widget.weights.setText(os.path.join(args.model, FINAL))
    widget.config.setText(os.path.join(args.model, "config.yaml"))
    found = widget.predict()
    print(widget.status.text(), "" if found is None else f"({len(found)} instances)")
    for _ in range(20):
        QApplication.processEvents()
    imsave(args.out, viewer.screenshot(canvas_only=False, flash=False))
    viewer.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
