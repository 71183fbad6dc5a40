"""Manual-annotation importers: every format round-trips to COCO with the right instances and masks.

The fixtures below write each tool's format the way the tool does (CVAT's row-major mask RLE,
LabelMe's base64 PNG mask boxes, VIA's all_points_x/y, CVAT's COCO export with iscrowd=1 RLE masks),
independently of the importers, and the source masks are rasterised as the tool's COCO export would
(polygons through pycocotools).
"""

from __future__ import annotations

import base64
import json
import os
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest
import tifffile
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment

from mask2former.data.coco import read_coco_json, rle_string_counts, segmentation_to_mask
from mask2former.data.importers import FORMATS, decode_cvat_rle, detect_format, load_manual_annotations
from mask2former.data.organize import organize_unified_dataset
from mask2former.errors import DatasetError
from mask2former.evaluation.metrics import mask_iou_matrix
from tests.fixtures import make_coco_dataset

H, W = 48, 64  # not square: a transposed mask would not fit

# --------------------------------------------------------------------------- the scene


def band(x0: float, y0: float, x1: float, y1: float, half_width: float) -> list[float]:
    """A thick straight 'myotube' as a 4-point polygon."""
    d = np.array([x1 - x0, y1 - y0], float)
    n = np.array([-d[1], d[0]]) / np.linalg.norm(d) * half_width
    pts = [(x0 + n[0], y0 + n[1]), (x1 + n[0], y1 + n[1]), (x1 - n[0], y1 - n[1]), (x0 - n[0], y0 - n[1])]
    return [float(round(v, 2)) for p in pts for v in p]


POLY_A = band(4, 8, 58, 30, 3.2)
POLY_B = band(8, 40, 60, 6, 2.7)  # crosses POLY_A: an overlapping pair


def ring_mask() -> np.ndarray:
    """A mask with a hole: polygons cannot say this, masks must keep it."""
    m = np.zeros((H, W), bool)
    m[20:40, 30:56] = True
    m[26:34, 36:48] = False
    return m


def rasterise(polygon: list[float]) -> np.ndarray:
    return mask_utils.decode(mask_utils.frPyObjects([polygon], H, W))[..., 0].astype(bool)


def write_image(path: str, seed: int = 0, dtype=np.uint8) -> None:
    rng = np.random.default_rng(seed)
    top = 255 if dtype == np.uint8 else 4095
    img = rng.integers(0, top, (H, W)).astype(dtype)
    if path.endswith((".tif", ".tiff")):
        tifffile.imwrite(path, img)
    else:
        cv2.imwrite(path, img)


# Image 1: the overlapping pair of polygons. Image 2: a ring mask plus one polygon.
def scene(with_masks: bool = True) -> dict[str, list]:
    second: list = [("polygon", POLY_B)]
    if with_masks:
        second.insert(0, ("mask", ring_mask()))
    return {"field_a.png": [("polygon", POLY_A), ("polygon", POLY_B)], "field_b.png": second}


def truth_masks(shapes: list) -> np.ndarray:
    return np.stack([rasterise(s) if kind == "polygon" else s for kind, s in shapes])


# --------------------------------------------------------------------------- format writers


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def cvat_rle(mask: np.ndarray) -> str:
    """CVAT: runs over the box, row-major, starting with a background run."""
    x0, y0, x1, y1 = mask_box(mask)
    flat = mask[y0 : y1 + 1, x0 : x1 + 1].reshape(-1).astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat[0] == 1:
        runs = [0] + runs
    return ", ".join(str(r) for r in runs)


def coco_uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE: column-major runs starting with background (as CVAT's COCO export)."""
    flat = mask.reshape(-1, order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat[0] == 1:
        runs = [0] + runs
    return {"size": [mask.shape[0], mask.shape[1]], "counts": runs}


def write_cvat(folder: str, scene_: dict, subsets: dict[str, str] | None = None) -> str:
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    for i, (name, shapes) in enumerate(scene_.items()):
        write_image(os.path.join(folder, "images", name), seed=i)
        attrs = {"id": str(i), "name": name, "width": str(W), "height": str(H)}
        if subsets:
            attrs["subset"] = subsets[name]
        img = ET.SubElement(root, "image", attrs)
        ET.SubElement(img, "box", {"label": "myotube", "xtl": "1", "ytl": "1", "xbr": "9", "ybr": "9", "z_order": "0"})
        for kind, shape in shapes:
            if kind == "polygon":
                points = ";".join(f"{shape[k]:.2f},{shape[k + 1]:.2f}" for k in range(0, len(shape), 2))
                ET.SubElement(img, "polygon", {"label": "myotube", "source": "manual", "occluded": "0", "points": points, "z_order": "0"})
            else:
                x0, y0, x1, y1 = mask_box(shape)
                ET.SubElement(
                    img,
                    "mask",
                    {"label": "myotube", "source": "manual", "occluded": "0", "rle": cvat_rle(shape), "left": str(x0), "top": str(y0),
                     "width": str(x1 - x0 + 1), "height": str(y1 - y0 + 1), "z_order": "0"},
                )
    path = os.path.join(folder, "annotations.xml")
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path


def labelme_mask_shape(mask: np.ndarray, label: str = "myotube") -> dict:
    x0, y0, x1, y1 = mask_box(mask)
    ok, png = cv2.imencode(".png", mask[y0 : y1 + 1, x0 : x1 + 1].astype(np.uint8) * 255)
    assert ok
    return {"label": label, "points": [[x0, y0], [x1, y1]], "group_id": None, "shape_type": "mask", "flags": {},
            "mask": base64.b64encode(png.tobytes()).decode("ascii")}


def write_labelme(folder: str, scene_: dict, embed_images: bool = False) -> str:
    os.makedirs(folder, exist_ok=True)
    for i, (name, shapes) in enumerate(scene_.items()):
        image_path = os.path.join(folder, name)
        write_image(image_path, seed=i)
        entries = []
        for kind, shape in shapes:
            if kind == "polygon":
                points = [[shape[k], shape[k + 1]] for k in range(0, len(shape), 2)]
                entries.append({"label": "myotube", "points": points, "group_id": None, "shape_type": "polygon", "flags": {}})
            else:
                entries.append(labelme_mask_shape(shape))
        entries.append({"label": "myotube", "points": [[1, 1], [6, 6]], "group_id": None, "shape_type": "rectangle", "flags": {}})
        image_data = None
        if embed_images:
            with open(image_path, "rb") as f:
                image_data = base64.b64encode(f.read()).decode("ascii")
            os.remove(image_path)
        doc = {"version": "5.4.1", "flags": {}, "shapes": entries, "imagePath": name, "imageData": image_data, "imageHeight": H, "imageWidth": W}
        with open(os.path.join(folder, os.path.splitext(name)[0] + ".json"), "w") as f:
            json.dump(doc, f)
    return folder


def write_via(folder: str, scene_: dict, project: bool = True, attribute: str | None = "label") -> str:
    os.makedirs(folder, exist_ok=True)
    metadata = {}
    for i, (name, shapes) in enumerate(scene_.items()):
        write_image(os.path.join(folder, name), seed=i)
        regions = []
        for kind, shape in shapes:
            assert kind == "polygon", "VIA has no masks"
            regions.append(
                {"shape_attributes": {"name": "polygon", "all_points_x": shape[0::2], "all_points_y": shape[1::2]},
                 "region_attributes": {attribute: "myotube"} if attribute else {}}
            )
        regions.append({"shape_attributes": {"name": "rect", "x": 1, "y": 1, "width": 5, "height": 5}, "region_attributes": {}})
        size = os.path.getsize(os.path.join(folder, name))
        metadata[f"{name}{size}"] = {"filename": name, "size": size, "regions": regions, "file_attributes": {}}
    doc = {"_via_settings": {"core": {"default_filepath": ""}}, "_via_img_metadata": metadata, "_via_attributes": {}} if project else metadata
    path = os.path.join(folder, "via_project.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def write_cvat_coco(folder: str, scene_: dict, json_name: str = "instances_default.json", seed: int = 0) -> str:
    """CVAT's "COCO 1.0" export: annotations/instances_<subset>.json + images/, masks as iscrowd=1 RLE."""
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    os.makedirs(os.path.join(folder, "annotations"), exist_ok=True)
    images, annotations = [], []
    for i, (name, shapes) in enumerate(scene_.items(), start=1):
        write_image(os.path.join(folder, "images", name), seed=seed + i)
        images.append({"id": i, "width": W, "height": H, "file_name": name, "license": 0})
        for kind, shape in shapes:
            mask = rasterise(shape) if kind == "polygon" else shape
            segm = [shape] if kind == "polygon" else coco_uncompressed_rle(shape)
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": 1, "segmentation": segm,
                                "area": float(mask.sum()), "bbox": [0, 0, 1, 1], "iscrowd": 0 if kind == "polygon" else 1, "attributes": {}})
        annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": 1, "segmentation": [], "area": 25.0,
                            "bbox": [1, 1, 5, 5], "iscrowd": 0})
    doc = {"licenses": [], "info": {}, "categories": [{"id": 1, "name": "myotube", "supercategory": ""}], "images": images, "annotations": annotations}
    path = os.path.join(folder, "annotations", json_name)
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def label_scene() -> tuple[np.ndarray, list[np.ndarray]]:
    """Ring with a hole (id 7), two touching instances (ids 2 and 1000), as a 16-bit label image."""
    labels = np.zeros((H, W), np.uint16)
    ring = ring_mask()
    labels[ring] = 7
    labels[2:12, 4:20] = 2
    labels[2:12, 20:34] = 1000  # touches id 2 along a whole edge
    return labels, [labels == v for v in (2, 7, 1000)]


def write_label_images(folder: str, layout: str = "suffix") -> np.ndarray:
    labels, _ = label_scene()
    if layout == "suffix":
        os.makedirs(folder, exist_ok=True)
        write_image(os.path.join(folder, "field_c.png"))
        tifffile.imwrite(os.path.join(folder, "field_c_labels.tif"), labels)
        write_image(os.path.join(folder, "unlabelled_field.png"), seed=5)
    else:
        os.makedirs(os.path.join(folder, "images"), exist_ok=True)
        os.makedirs(os.path.join(folder, "labels"), exist_ok=True)
        write_image(os.path.join(folder, "images", "field_c.tif"), dtype=np.uint16)
        cv2.imwrite(os.path.join(folder, "labels", "field_c.png"), labels)
    return labels


# --------------------------------------------------------------------------- helpers


def organize(tmp_path, manual, **kwargs) -> dict:
    algorithmic = str(tmp_path / "annotator_out")
    if not os.path.isdir(algorithmic):
        make_coco_dataset(algorithmic, {"train_annotations.json": 2, "test_annotations.json": 1}, size=H)
    kwargs.setdefault("progress", False)
    return organize_unified_dataset(algorithmic, manual, str(tmp_path / "out"), **kwargs)


def output_masks(json_file: str) -> dict[str, np.ndarray]:
    """original_file_name → (N, H, W) masks as the training loader would decode them."""
    data = read_coco_json(json_file)
    out = {}
    for img in data["images"]:
        anns = [a for a in data["annotations"] if a["image_id"] == img["id"]]
        for a in anns:
            assert a["category_id"] == 1 and a["iscrowd"] == 0
            assert {"id", "image_id", "segmentation", "bbox", "area"} <= set(a)
            mask = segmentation_to_mask(a["segmentation"], img["height"], img["width"])
            assert a["area"] == pytest.approx(mask.sum())
        masks = [segmentation_to_mask(a["segmentation"], img["height"], img["width"]) for a in anns]
        out[img["original_file_name"]] = np.stack(masks) if masks else np.zeros((0, img["height"], img["width"]), bool)
    return out


def assert_same_instances(truth: np.ndarray, got: np.ndarray, min_iou: float = 0.99) -> None:
    assert len(got) == len(truth), f"{len(got)} instances, expected {len(truth)}"
    iou = mask_iou_matrix(truth, got)
    rows, cols = linear_sum_assignment(-iou)
    worst = iou[rows, cols].min()
    assert worst >= min_iou, f"an instance has IoU {worst:.3f} with its source"
    for r, c in zip(rows, cols):
        assert abs(int(truth[r].sum()) - int(got[c].sum())) <= 0.01 * truth[r].sum()


def manual_json(summary: dict, split: str = "train") -> str:
    return summary["splits"][f"myotube_manual_{split}"]["json_file"]


# --------------------------------------------------------------------------- round trips


def test_cvat_xml_round_trip_polygons_masks_overlap(tmp_path):
    src = scene()
    path = write_cvat(str(tmp_path / "cvat"), src)
    assert detect_format(path) == "cvat" and detect_format(str(tmp_path / "cvat")) == "cvat"
    summary = organize(tmp_path, path)
    got = output_masks(manual_json(summary))
    for name, shapes in src.items():
        assert_same_instances(truth_masks(shapes), got[name])
    assert any("<box> shapes skipped" in w for w in summary["warnings"])


def test_cvat_rle_decoding_is_row_major_from_background():
    mask = np.zeros((3, 4), bool)
    mask[0, 1:3] = True
    mask[2, 0] = True
    decoded = decode_cvat_rle("1, 2, 5, 1, 3", 4, 3)
    np.testing.assert_array_equal(decoded, mask)
    with pytest.raises(DatasetError, match="covers 11 pixels"):
        decode_cvat_rle("1, 2, 5, 3", 4, 3, file="a.xml")


def test_cvat_subsets_become_splits(tmp_path):
    src = scene()
    path = write_cvat(str(tmp_path / "cvat"), src, subsets={"field_a.png": "Train", "field_b.png": "Validation"})
    summary = organize(tmp_path, path, manual_test_fraction=0.5)
    assert output_masks(manual_json(summary, "train")).keys() == {"field_a.png"}
    assert output_masks(manual_json(summary, "test")).keys() == {"field_b.png"}
    assert any("--manual_test_fraction ignored" in w for w in summary["warnings"])


@pytest.mark.parametrize("embed", [False, True], ids=["image-files", "embedded-imageData"])
def test_labelme_round_trip(tmp_path, embed):
    src = scene()
    folder = write_labelme(str(tmp_path / "labelme"), src, embed_images=embed)
    assert detect_format(folder) == "labelme"
    summary = organize(tmp_path, folder)
    got = output_masks(manual_json(summary))
    for name, shapes in src.items():
        assert_same_instances(truth_masks(shapes), got[name])
    for name in src:  # the embedded bytes are the image, unchanged
        written = os.path.join(summary["output"], "images", name)
        assert cv2.imread(written, cv2.IMREAD_UNCHANGED).shape == (H, W)


def test_labelme_group_id_merges_shapes_into_one_instance(tmp_path):
    folder = tmp_path / "labelme"
    write_labelme(str(folder), {"field_a.png": [("polygon", POLY_A), ("polygon", POLY_B)]})
    doc = json.loads((folder / "field_a.json").read_text())
    for shape in doc["shapes"][:2]:
        shape["group_id"] = 3
    (folder / "field_a.json").write_text(json.dumps(doc))
    dataset = load_manual_annotations(str(folder))
    assert dataset.format == "labelme" and dataset.categories == ["myotube"]
    assert len(dataset.images[0].instances) == 1
    union = rasterise(POLY_A) | rasterise(POLY_B)
    np.testing.assert_array_equal(dataset.images[0].instances[0].to_mask(H, W), union)


def test_labelme_group_of_polygon_and_mask_is_their_union(tmp_path):
    folder = tmp_path / "labelme"
    write_labelme(str(folder), {"field_b.png": [("mask", ring_mask()), ("polygon", POLY_A)]})
    doc = json.loads((folder / "field_b.json").read_text())
    for shape in doc["shapes"][:2]:
        shape["group_id"] = 1
    (folder / "field_b.json").write_text(json.dumps(doc))
    [image] = load_manual_annotations(str(folder)).images
    [instance] = image.instances
    assert not instance.is_polygon
    np.testing.assert_array_equal(instance.to_mask(H, W), ring_mask() | rasterise(POLY_A))


@pytest.mark.parametrize("project", [True, False], ids=["project", "annotation-export"])
def test_via_round_trip(tmp_path, project):
    src = scene(with_masks=False)
    path = write_via(str(tmp_path / "via"), src, project=project)
    assert detect_format(path) == "via"
    summary = organize(tmp_path, path)
    got = output_masks(manual_json(summary))
    for name, shapes in src.items():
        assert_same_instances(truth_masks(shapes), got[name])


def test_via_polyline_is_closed_and_unlabelled_project_is_myotube(tmp_path):
    path = write_via(str(tmp_path / "via"), {"field_a.png": [("polygon", POLY_A)]}, attribute=None)
    doc = json.loads(open(path).read())
    next(iter(doc["_via_img_metadata"].values()))["regions"][0]["shape_attributes"]["name"] = "polyline"
    open(path, "w").write(json.dumps(doc))
    dataset = load_manual_annotations(path)
    [instance] = dataset.images[0].instances
    assert instance.category == "myotube"
    np.testing.assert_array_equal(instance.to_mask(H, W), rasterise(POLY_A))


def test_cvat_coco_export_round_trip_keeps_crowd_masks(tmp_path):
    src = scene()
    write_cvat_coco(str(tmp_path / "coco"), src)
    assert detect_format(str(tmp_path / "coco")) == "coco"
    summary = organize(tmp_path, str(tmp_path / "coco"))
    got = output_masks(manual_json(summary))
    for name, shapes in src.items():
        assert_same_instances(truth_masks(shapes), got[name])
    assert any("iscrowd=1" in w for w in summary["warnings"])
    assert any("box-only" in w for w in summary["warnings"])


def test_coco_subset_files_become_splits(tmp_path):
    write_cvat_coco(str(tmp_path / "coco"), {"field_a.png": [("polygon", POLY_A)]}, "instances_Train.json")
    write_cvat_coco(str(tmp_path / "coco"), {"field_b.png": [("polygon", POLY_B)]}, "instances_Test.json", seed=7)
    summary = organize(tmp_path, str(tmp_path / "coco"))
    assert output_masks(manual_json(summary, "train")).keys() == {"field_a.png"}
    assert output_masks(manual_json(summary, "test")).keys() == {"field_b.png"}


@pytest.mark.parametrize("layout", ["suffix", "folders"])
def test_label_images_round_trip_holes_and_touching(tmp_path, layout):
    folder = str(tmp_path / "labels_src")
    write_label_images(folder, layout)
    assert detect_format(folder) == "labels"
    summary = organize(tmp_path, folder)
    got = output_masks(manual_json(summary))
    _, truth = label_scene()
    name = "field_c.png" if layout == "suffix" else "field_c.tif"
    assert_same_instances(np.stack(truth), got[name], min_iou=1.0)
    ring = next(m for m in got[name] if m[22, 32])
    assert not ring[30, 40] and ring[22, 32], "the hole must stay a hole"
    if layout == "suffix":
        assert any("without a label file" in w for w in summary["warnings"])


def test_label_image_refuses_colour_and_fractional_labels(tmp_path):
    folder = tmp_path / "labels_src"
    folder.mkdir()
    write_image(str(folder / "x.png"))
    colour = np.zeros((H, W, 3), np.uint8)
    colour[5:10, 5:10] = (255, 0, 0)
    cv2.imwrite(str(folder / "x_labels.png"), colour)
    with pytest.raises(DatasetError, match="x_labels.png: label image has 3 different channels"):
        load_manual_annotations(str(folder))
    os.remove(folder / "x_labels.png")
    tifffile.imwrite(str(folder / "x_labels.tif"), np.full((H, W), 1.5, np.float32))
    with pytest.raises(DatasetError, match="fractional"):
        load_manual_annotations(str(folder))


def test_label_stack_is_refused_not_projected(tmp_path):
    folder = tmp_path / "labels_src"
    folder.mkdir()
    write_image(str(folder / "x.png"))
    labels, _ = label_scene()
    tifffile.imwrite(str(folder / "x_labels.tif"), np.stack([labels, labels[::-1]]))
    with pytest.raises(DatasetError, match=r"x_labels.tif: label image is a stack \(2, 48, 64\)"):
        load_manual_annotations(str(folder))


def test_name_clash_between_sources_is_resolved_consistently(tmp_path):
    # The annotator names its images train_000.png ...; the manual set reuses that name for another image.
    make_coco_dataset(str(tmp_path / "annotator_out"), {"train_annotations.json": 2, "test_annotations.json": 1}, size=H)
    clash = {"train_000.png": [("polygon", POLY_A), ("polygon", POLY_B)], "unique.png": [("polygon", POLY_B)]}
    write_cvat_coco(str(tmp_path / "coco"), clash, seed=11)
    summary = organize(tmp_path, str(tmp_path / "coco"))
    out = summary["output"]
    names = sorted(os.listdir(os.path.join(out, "images")))
    assert "algorithmic_train_000.png" in names and "manual_train_000.png" in names and "unique.png" in names
    assert len(names) == len(set(n.lower() for n in names)) == 2 + 1 + 2
    for split_json, src_dir in ((manual_json(summary), tmp_path / "coco" / "images"),
                                (summary["splits"]["myotube_algorithmic_train"]["json_file"], tmp_path / "annotator_out" / "images")):
        for img in read_coco_json(split_json)["images"]:
            written = open(os.path.join(out, "images", img["file_name"]), "rb").read()
            assert written == open(src_dir / img["original_file_name"], "rb").read()
    got = output_masks(manual_json(summary))
    assert_same_instances(truth_masks(clash["train_000.png"]), got["train_000.png"])


def test_identical_image_in_both_sources_is_stored_once(tmp_path):
    make_coco_dataset(str(tmp_path / "annotator_out"), {"train_annotations.json": 2, "test_annotations.json": 1}, size=H)
    folder = tmp_path / "labelme"
    write_labelme(str(folder), {"train_000.png": [("polygon", POLY_A)]})
    os.replace(tmp_path / "annotator_out" / "images" / "train_000.png", folder / "train_000.png")
    os.link(folder / "train_000.png", tmp_path / "annotator_out" / "images" / "train_000.png")
    doc = json.loads((folder / "train_000.json").read_text())
    doc["imageWidth"] = H  # the annotator's fixture images are square
    (folder / "train_000.json").write_text(json.dumps(doc))
    summary = organize(tmp_path, str(folder))
    assert summary["renamed_images"] == {}
    assert read_coco_json(manual_json(summary))["images"][0]["file_name"] == "train_000.png"


# --------------------------------------------------------------------------- detection and errors


def test_detect_format_rules(tmp_path):
    write_cvat(str(tmp_path / "c"), scene())
    write_via(str(tmp_path / "v"), scene(with_masks=False))
    write_cvat_coco(str(tmp_path / "o"), scene())
    write_labelme(str(tmp_path / "l"), scene())
    assert [detect_format(str(tmp_path / d)) for d in "cvlo"] == ["cvat", "via", "labelme", "coco"]
    assert set(FORMATS) == {"coco", "cvat", "labelme", "via", "labels"}
    # Two formats in one folder: ambiguous, the user must choose.
    write_via(str(tmp_path / "l"), {"field_a.png": [("polygon", POLY_A)]})
    with pytest.raises(DatasetError, match="several annotation formats.*--manual_format"):
        detect_format(str(tmp_path / "l"))
    assert load_manual_annotations(str(tmp_path / "l"), "labelme").format == "labelme"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no annotations found"):
        detect_format(str(tmp_path / "empty"))
    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(DatasetError, match="neither COCO, LabelMe nor VIA"):
        detect_format(str(tmp_path / "other.json"))


@pytest.mark.parametrize("fmt", ["cvat", "labelme", "via", "coco"])
def test_truncated_file_is_a_one_line_error_naming_it(tmp_path, fmt):
    src = scene(with_masks=fmt != "via")
    if fmt == "cvat":
        path = write_cvat(str(tmp_path / "m"), src)
    elif fmt == "labelme":
        write_labelme(str(tmp_path / "m"), src)
        path = str(tmp_path / "m" / "field_b.json")
    elif fmt == "via":
        path = write_via(str(tmp_path / "m"), src)
    else:
        path = write_cvat_coco(str(tmp_path / "m"), src)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(DatasetError) as err:
        load_manual_annotations(str(tmp_path / "m") if fmt == "labelme" else path, fmt)
    assert str(err.value).startswith(path) and "\n" not in str(err.value)


def test_missing_image_names_the_annotation_file(tmp_path):
    path = write_cvat(str(tmp_path / "cvat"), scene())
    os.remove(tmp_path / "cvat" / "images" / "field_b.png")
    with pytest.raises(DatasetError, match=r"annotations.xml: image 'field_b.png' not found \(looked in"):
        load_manual_annotations(path)


def test_manual_image_dir_is_searched_first(tmp_path):
    path = write_cvat(str(tmp_path / "cvat"), scene())
    os.rename(tmp_path / "cvat" / "images", tmp_path / "elsewhere")
    dataset = load_manual_annotations(path, image_dir=str(tmp_path / "elsewhere"))
    assert all(img.path.startswith(str(tmp_path / "elsewhere")) for img in dataset.images)


def test_garbage_compressed_rle_is_refused_before_pycocotools(tmp_path):
    path = write_cvat_coco(str(tmp_path / "coco"), {"field_a.png": [("polygon", POLY_A)]})
    doc = json.loads(open(path).read())
    doc["annotations"][0]["segmentation"] = {"size": [H, W], "counts": "zzzz~~~~"}
    open(path, "w").write(json.dumps(doc))
    with pytest.raises(DatasetError, match="RLE counts"):
        load_manual_annotations(path)


def test_rle_string_decoder_matches_pycocotools():
    rng = np.random.default_rng(1)
    for _ in range(20):
        mask = rng.random((17, 23)) > rng.uniform(0.2, 0.8)
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        counts = rle_string_counts(rle["counts"].decode("ascii"))
        back = mask_utils.decode(mask_utils.frPyObjects({"size": [17, 23], "counts": counts}, 17, 23))
        np.testing.assert_array_equal(back.astype(bool), mask)
