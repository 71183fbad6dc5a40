"""The dock widget: predict the current image layer (a trained model or the classical annotator),
show the instances as label layers and the measurements as a table, save corrections as Stage 2
data. Everything but the Qt wiring lives in :mod:`.core` and the package's prediction code."""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..config import config_path
from ..errors import MyotubeError
from ..measure.morphology import unit_suffix
from ..structures import CroppedInstances
from .core import (
    TOP,
    TRAINED_MODEL,
    UNDER,
    layers_from_masks,
    model_choices,
    predict_instances,
    save_manual_annotation,
)

MODEL, ANNOTATOR = "trained model", "classical annotator"
# The flips choice → predict_instances(tta=...): None keeps the model's TEST.AUG.ENABLED.
FLIP_CHOICES = {
    "as the model's config": None,
    "four flips fused (--tta): more accurate, slower": True,
    "one pass (--no-tta): faster": False,
}
# Columns of the measurement table (mask2former.measure.table) shown in the widget, in the unit of
# a measurement without a pixel size, as the widget measures.
TABLE_COLUMNS = tuple(
    c.format(u=unit_suffix(None))
    for c in ("id", "score", "area_{u}2", "length_{u}", "width_mean_{u}", "branch_points")
)


def _cell_text(value) -> str:
    """Four significant digits, but whole numbers from 1000 up (areas in px², not 3.072e+04)."""
    if not isinstance(value, float):
        return str(value)
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"


class MyotubeWidget(QWidget):
    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.source = QComboBox()
        self.source.addItems([MODEL, ANNOTATOR])
        # The weights: a named model shipped with the package (the default when installed) or a file;
        # the list offers the choices, the line takes any path.
        self.weights_choice = QComboBox()
        self.weights_choice.setEditable(True)
        self.weights_choice.addItems(model_choices())
        self.weights = self.weights_choice.lineEdit()
        browse = QPushButton("…")
        browse.clicked.connect(self._browse_weights)
        # Named models and model_final.pth carry their config: an empty field uses it. Otherwise the
        # shipped Stage 2 config, found through the package (no source checkout needed).
        default_config = "" if self.weights.text() != TRAINED_MODEL else config_path("stage2_config.yaml")
        self.config = QLineEdit(default_config)
        self.config.setPlaceholderText("the config stored with the model")
        self.channel = QLineEdit("")
        self.channel.setPlaceholderText("index or name, for multi-channel images")
        # Test-time augmentation as predict.py has it: the model's config, --tta or --no-tta.
        self.flips = QComboBox()
        self.flips.addItems(list(FLIP_CHOICES))
        self.predict_button = QPushButton("Predict")
        self.predict_button.clicked.connect(lambda: self.predict())
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.table = QTableWidget(0, len(TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels(TABLE_COLUMNS)
        self.save_folder = QLineEdit("manual_annotations")
        self.overwrite = QCheckBox("replace an earlier save of this image")
        self.save_button = QPushButton("Save as manual annotation")
        self.save_button.clicked.connect(lambda: self.save())

        weights_row = QHBoxLayout()
        weights_row.addWidget(self.weights_choice, 1)
        weights_row.addWidget(browse)
        form = QFormLayout()
        form.addRow("labels from", self.source)
        form.addRow("weights", weights_row)
        form.addRow("config", self.config)
        form.addRow("channel", self.channel)
        form.addRow("flips", self.flips)
        form.addRow("save to", self.save_folder)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.predict_button)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.table)
        layout.addWidget(self.overwrite)
        layout.addWidget(self.save_button)

    # ----------------------------------------------------------------------- predict

    def _browse_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Model weights", "", "Checkpoints (*.pth *.pkl);;All files (*)"
        )
        if path:
            self.weights.setText(path)

    def _image_layer(self):
        from napari.layers import Image

        layer = self.viewer.layers.selection.active
        if isinstance(layer, Image):
            return layer
        images = [lay for lay in self.viewer.layers if isinstance(lay, Image)]
        if not images:
            raise MyotubeError("open an image first: there is no image layer")
        return images[-1]

    def _image(self, layer) -> np.ndarray:
        data = np.asarray(layer.data)
        text = self.channel.text().strip()
        if data.ndim == 3 and not layer.rgb:  # napari shows channels as the first axis
            if not text:
                raise MyotubeError(f"{layer.name} has {data.shape[0]} channels: give the myotube channel")
            data = data[int(text)]
        elif data.ndim == 3 and text:
            data = data[..., int(text)]
        return data

    def predict(self) -> CroppedInstances | None:
        """Predict the image layer; adds/replaces the two myotube label layers and fills the table."""
        try:
            layer = self._image_layer()
            image = self._image(layer)
            self.progress.setRange(0, 3)
            self.progress.setValue(1)
            self.status.setText("predicting…")
            path = layer.metadata.get("image_path") or getattr(layer.source, "path", None)
            instances = (
                self._annotate(image)
                if self.source.currentText() == ANNOTATOR
                else self._run_model(image, path)
            )
            self.progress.setValue(2)
            self._show(instances, layer)
            self.progress.setValue(3)
            self.status.setText(f"{len(instances)} myotubes")
            return instances
        except (MyotubeError, OSError, ValueError) as err:
            self.status.setText(f"error: {err}")
            self.progress.setValue(0)
            return None

    # The package's heavy parts load on first use (torch, transformers, numba: seconds), so the
    # widget opens at once.
    def _annotate(self, image: np.ndarray) -> CroppedInstances:
        from ..annotate import annotate_instances

        found = annotate_instances(image)
        return CroppedInstances.from_instances(found, 0, 0, *image.shape[:2])

    def _run_model(self, image: np.ndarray, image_path: str | None = None) -> CroppedInstances:
        return predict_instances(
            image,
            image_path,
            self.config.text().strip() or None,
            self.weights.text().strip(),
            tta=FLIP_CHOICES[self.flips.currentText()],
        )

    def _show(self, instances: CroppedInstances, image_layer) -> None:
        from ..measure.table import measure_instances

        full = instances.to_instances()
        top, under = (
            layers_from_masks(full.masks, full.scores)
            if len(full)
            else (np.zeros(full.image_size, np.uint16),) * 2
        )
        meta = {
            "image_path": image_layer.metadata.get("image_path") or getattr(image_layer.source, "path", None)
        }
        for name, data, opacity in ((UNDER, under, 0.5), (TOP, top, 0.6)):
            if name in self.viewer.layers:
                self.viewer.layers[name].data = data
                self.viewer.layers[name].metadata.update(meta)
            else:
                self.viewer.add_labels(
                    data, name=name, opacity=opacity, scale=image_layer.scale[-2:], metadata=meta
                )
        rows = measure_instances(instances).rows
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, key in enumerate(TABLE_COLUMNS):
                self.table.setItem(r, c, QTableWidgetItem(_cell_text(row[key])))

    # ----------------------------------------------------------------------- save

    def save(self, confirm: bool = True) -> str | None:
        """Write the label layers as the manual annotation of their image (asks before replacing)."""
        if TOP not in self.viewer.layers:
            self.status.setText("error: no myotube labels to save (predict or open a prediction first)")
            return None
        top_layer = self.viewer.layers[TOP]
        under = self.viewer.layers[UNDER].data if UNDER in self.viewer.layers else None
        image_path = top_layer.metadata.get("image_path")
        if not image_path:
            self.status.setText("error: the labels do not say which image file they belong to")
            return None
        overwrite = self.overwrite.isChecked()
        try:
            try:
                path = save_manual_annotation(
                    self.save_folder.text(),
                    image_path,
                    np.asarray(top_layer.data),
                    under,
                    overwrite=overwrite,
                )
            except MyotubeError as err:
                if overwrite or not confirm or "already holds" not in str(err):
                    raise
                answer = QMessageBox.question(self, "Replace?", f"{err}\n\nReplace the earlier save?")
                if answer != QMessageBox.StandardButton.Yes:
                    self.status.setText("not saved")
                    return None
                path = save_manual_annotation(
                    self.save_folder.text(), image_path, np.asarray(top_layer.data), under, overwrite=True
                )
        except MyotubeError as err:
            self.status.setText(f"error: {err}")
            return None
        self.status.setText(f"saved to {path}")
        return path
