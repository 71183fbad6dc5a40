"""The napari plugin in a real window (run by `make test-gui`, under Xvfb): open an image, predict
with the tiny test model, edit a label, save, and check the COCO file."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tifffile

napari = pytest.importorskip("napari", reason="the napari extra is not installed (make test-gui installs it)")
if not os.environ.get("DISPLAY"):
    pytest.skip("no display: run under xvfb-run (make test-gui)", allow_module_level=True)

from mask2former.napari._reader import napari_get_reader  # noqa: E402
from mask2former.napari._widget import ANNOTATOR, FLIP_CHOICES, MyotubeWidget  # noqa: E402
from mask2former.napari.core import TOP, UNDER  # noqa: E402
from tests.helpers import TINY_STAGE2, field_image, predict, save_tiny_model  # noqa: E402


def test_predict_edit_and_save_in_a_real_window(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer(show=True)
    tifffile.imwrite(tmp_path / "field.tif", field_image(128, seed=5))
    viewer.open(str(tmp_path / "field.tif"))
    widget = MyotubeWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.weights.setText(str(save_tiny_model(tmp_path / "model.pth")))
    widget.config.setText(TINY_STAGE2)
    # The flips follow the model's config (on in the CPU presets) until the user picks otherwise.
    assert FLIP_CHOICES[widget.flips.currentText()] is None
    found = widget.predict()
    assert found is not None, widget.status.text()
    assert TOP in viewer.layers and UNDER in viewer.layers
    assert widget.table.rowCount() == len(found)
    assert all(
        widget.table.item(r, c).text()
        for r in range(widget.table.rowCount())
        for c in range(widget.table.columnCount())
    ), "every measurement shown"
    # A correction made the way napari's paint brush makes it: a new id painted over the field.
    top = viewer.layers[TOP]
    new_id = int(top.data.max()) + 1
    top.data[100:108, 10:110] = new_id
    top.refresh()
    widget.save_folder.setText(str(tmp_path / "manual"))
    saved = widget.save(confirm=False)
    assert saved and widget.status.text().startswith("saved to")
    data = json.loads(open(saved).read())
    assert (
        data["images"][0]["file_name"] == "field.tif"
        and len(data["annotations"]) == len(np.unique(top.data)) - 1
    )
    assert (
        widget.save(confirm=False) is None and "already holds" in widget.status.text()
    )  # never replaced silently
    # The classical annotator as the starting point works the same way.
    widget.source.setCurrentText(ANNOTATOR)
    assert widget.predict() is not None


def test_the_reader_opens_a_prediction_with_its_image(make_napari_viewer, tmp_path):
    tifffile.imwrite(tmp_path / "field.tif", field_image(128, seed=6))
    out = predict(
        save_tiny_model(tmp_path / "model.pth"),
        tmp_path / "field.tif",
        tmp_path / "pred",
        "--pixel-size",
        "0.65",
        cwd=tmp_path,
    )
    assert out.returncode == 0
    reader = napari_get_reader(str(tmp_path / "pred" / "field_coco.json"))
    assert reader is not None and napari_get_reader(str(tmp_path / "field.tif")) is None
    viewer = make_napari_viewer(show=True)
    for data, kwargs, kind in reader(str(tmp_path / "pred" / "field_coco.json")):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    assert [layer.name for layer in viewer.layers] == ["field.tif", UNDER, TOP]
    assert tuple(viewer.layers[TOP].scale) == pytest.approx((0.65, 0.65))
