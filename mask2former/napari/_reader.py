"""npe2 reader: ``NAME_coco.json`` of predict.py (or its folder) → image, myotube and nuclei layers."""

from __future__ import annotations

from .core import NUCLEI, TOP, UNDER, is_prediction, read_prediction


def napari_get_reader(path):
    if isinstance(path, list):
        path = path[0] if len(path) == 1 else None
    if not isinstance(path, str) or not is_prediction(path):
        return None
    return read_layers


def read_layers(path):
    path = path[0] if isinstance(path, list) else path
    found = read_prediction(path)
    scale = (found["scale"], found["scale"]) if found["scale"] else (1.0, 1.0)
    meta = {"source": found["source"], "image_path": found["entry"].get("original_path")}
    layers = []
    if found["image"] is not None:
        layers.append(
            (found["image"], {"name": found["entry"]["file_name"], "scale": scale, "metadata": meta}, "image")
        )
    layers.append(
        (
            found["under"],
            {
                "name": UNDER,
                "scale": scale,
                "opacity": 0.5,
                "visible": bool(found["under"].any()),
                "metadata": meta,
            },
            "labels",
        )
    )
    layers.append((found["top"], {"name": TOP, "scale": scale, "opacity": 0.6, "metadata": meta}, "labels"))
    if found["nuclei"] is not None:
        layers.append(
            (found["nuclei"], {"name": NUCLEI, "scale": scale, "opacity": 0.5, "metadata": meta}, "labels")
        )
    return layers
