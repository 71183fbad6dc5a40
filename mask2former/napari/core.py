"""What the napari plugin does, without napari or Qt: predictions ↔ label layers ↔ manual COCO.

Myotubes overlap where they cross, and a napari Labels layer holds one id per pixel. The plugin
therefore shows two Labels layers:

- ``myotubes``: every pixel's top instance (the higher-scoring one where two overlap), as in
  ``NAME_labels.tif``;
- ``myotubes under others``: only where instances overlap, the id of the one underneath.

Painting, erasing or filling ``myotubes`` changes the visible instances; a new id is a new
myotube (split a tube by painting part of it with a new id). An instance's mask is its pixels in
both layers, so crossings survive a round trip (:func:`instances_from_layers`). Three or more
instances on one pixel keep the top two.

Saving writes a COCO file in the layout ``organize_unified_dataset.py --manual_dataset`` imports:
``FOLDER/annotations.json`` with the images copied to ``FOLDER/images/``. Several images go into
the same file; saving an image that is already in it is refused unless ``overwrite``.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

from ..data.coco import CATEGORIES, read_coco_json, write_coco_json
from ..data.coco_masks import mask_annotations, segmentation_to_mask
from ..data.io import ImageMetadata, read_image, read_metadata
from ..errors import InputError, MyotubeError
from ..modeling.zoo import available_models
from ..structures import CroppedInstances

TOP, UNDER, NUCLEI = "myotubes", "myotubes under others", "nuclei"
# Stage 2's model, where train_two_stage.py writes it (relative to the working directory).
TRAINED_MODEL = os.path.join("output_stage2_manual", "model_final.pth")


def model_choices() -> list[str]:
    """The weights the widget offers, the default first: the models shipped with the package (by
    name, ready without training), then Stage 2's model_final.pth."""
    try:
        named = available_models()
    except MyotubeError:  # a broken manifest is reported when a model is loaded, not when napari opens
        named = []
    return named + [TRAINED_MODEL]


def predict_instances(
    image: np.ndarray, image_path: str | None, config: str | None, weights: str, tta: bool | None = None
) -> CroppedInstances:
    """A model's instances in a layer's image, as ``predict.py`` finds them in its file: the same
    config (``config``, or the one ``weights`` carries), the same predictor builder, the same scale
    rule (the file's pixel size against the model's, when both are known) and tiling; ``tta`` as
    ``predict.py --tta`` (True) or ``--no-tta`` (False), None as the config has it."""
    from ..inference.command import build_predictor, config_overrides, prediction_config
    from ..inference.image_pipeline import StageTimer, predict_at_model_scale

    overrides = config_overrides({"tta": tta}, ["MODEL.WEIGHTS", weights, "MODEL.DEVICE", "auto"])
    cfg = prediction_config(config or None, weights, overrides)
    cfg.freeze()
    predictor, options = build_predictor(cfg, progress=False)
    meta = read_metadata(image_path) if image_path and os.path.isfile(image_path) else ImageMetadata()
    return predict_at_model_scale(
        image_path or "", "", image, meta, predictor, options, StageTimer()
    ).instances


def layers_from_masks(masks: np.ndarray, scores: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(top, under) uint16 label arrays from an (N, H, W) stack; ids are 1 + the stack index."""
    n = len(masks)
    shape = masks.shape[1:] if n else (0, 0)
    top = np.zeros(shape, np.uint16)
    under = np.zeros(shape, np.uint16)
    order = np.argsort(-np.asarray(scores if scores is not None else np.zeros(n)), kind="stable")
    for k in order[::-1]:  # lowest score first: the best ends on top, the one it covers goes under
        m = masks[k]
        under[m & (top > 0)] = top[m & (top > 0)]
        top[m] = k + 1
    return top, under


def instances_from_layers(top: np.ndarray, under: np.ndarray | None = None) -> dict[int, np.ndarray]:
    """{id: mask} of every id in either layer: its pixels on top plus its pixels underneath."""
    under = np.zeros_like(top) if under is None else under
    ids = (set(np.unique(top).tolist()) | set(np.unique(under).tolist())) - {0}
    return {int(i): (top == i) | (under == i) for i in sorted(ids)}


def read_prediction(path: str) -> dict:
    """A prediction of ``predict.py`` as layers: ``path`` is ``NAME_coco.json`` or a prediction
    folder holding one. Returns {"image": array or None, "top", "under", "nuclei" (or None),
    "scale" (µm per pixel or None), "entry": the COCO image entry, "source": the JSON}."""
    json_file = _prediction_json(path)
    data = read_coco_json(json_file)
    if len(data["images"]) != 1:
        raise InputError(json_file, f"holds {len(data['images'])} images; open one image's NAME_coco.json")
    entry = data["images"][0]
    h, w = entry["height"], entry["width"]
    anns = [a for a in data["annotations"] if a.get("image_id") == entry["id"]]
    masks = (
        np.stack([segmentation_to_mask(a["segmentation"], h, w) for a in anns])
        if anns
        else np.zeros((0, h, w), bool)
    )
    top, under = layers_from_masks(masks, np.asarray([a.get("score", 1.0) for a in anns]))
    if not anns:
        top = under = np.zeros((h, w), np.uint16)
    image = None
    original = entry.get("original_path")
    if original and os.path.isfile(original):
        channel = entry.get("channel")
        image = read_image(original, channel=-1 if channel is None else channel, scene=entry.get("scene"))
    base = json_file[: -len("_coco.json")]
    nuclei = None
    if os.path.isfile(base + "_nuclei_labels.tif"):
        import tifffile

        nuclei = tifffile.imread(base + "_nuclei_labels.tif")
    scale = entry.get("pixel_size_um")
    if not scale and os.path.isfile(base + "_labels.tif"):
        scale = read_metadata(base + "_labels.tif").pixel_size_um
    return {
        "image": image,
        "top": top,
        "under": under,
        "nuclei": nuclei,
        "scale": scale,
        "entry": entry,
        "source": json_file,
    }


def _prediction_json(path: str) -> str:
    if os.path.isdir(path):
        # (predictions_coco.json is the run's file of every image.)
        found = sorted(
            f for f in os.listdir(path) if f.endswith("_coco.json") and f != "predictions_coco.json"
        )
        if len(found) != 1:
            raise InputError(path, f"holds {len(found)} NAME_coco.json files; open one of them")
        return os.path.join(path, found[0])
    if not path.endswith("_coco.json") or not os.path.isfile(path):
        raise InputError(path, "not a prediction (NAME_coco.json written by predict.py, or its folder)")
    return path


def is_prediction(path: str) -> bool:
    try:
        _prediction_json(path)
    except InputError:
        return False
    return True


def save_manual_annotation(
    folder: str, image_path: str, top: np.ndarray, under: np.ndarray | None = None, overwrite: bool = False
) -> str:
    """Add the instances of the layers as the manual annotation of ``image_path`` to
    ``folder/annotations.json`` (and the image to ``folder/images/``); returns the JSON path."""
    if not os.path.isfile(image_path):
        raise InputError(image_path, "image not found: the annotation needs its image")
    name = os.path.basename(image_path)
    json_file = os.path.join(folder, "annotations.json")
    images: list[dict] = []
    annotations: list[dict] = []
    if os.path.isfile(json_file):
        data = read_coco_json(json_file)
        images, annotations = list(data["images"]), list(data["annotations"])
    earlier = [e for e in images if e["file_name"] == name]
    if earlier and not overwrite:
        raise InputError(
            json_file, f"already holds a manual annotation of {name}; save with overwrite to replace it"
        )
    for e in earlier:
        images.remove(e)
        annotations = [a for a in annotations if a["image_id"] != e["id"]]
    h, w = top.shape
    image_id = max((e["id"] for e in images), default=0) + 1
    images.append({"id": image_id, "file_name": name, "height": int(h), "width": int(w)})
    next_id = max((a["id"] for a in annotations), default=0) + 1
    masks = [mask for _, mask in sorted(instances_from_layers(top, under).items()) if mask.any()]
    annotations += mask_annotations(masks, image_id, next_id)
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    target = os.path.join(folder, "images", name)
    if os.path.abspath(target) != os.path.abspath(image_path):
        shutil.copy2(image_path, target)
    write_coco_json(json_file, images, annotations, CATEGORIES)
    return json_file


def summary_of(json_file: str) -> str:
    data = read_coco_json(json_file)
    return json.dumps({"images": len(data["images"]), "instances": len(data["annotations"])})
