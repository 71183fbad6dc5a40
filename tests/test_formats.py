"""Microscope files in, physical units out: OME-TIFF, ImageJ, multi-series and named-channel TIFFs,
CZI / ND2 / LIF through bioio, and the nuclei outputs (labels, per-nucleus table, fusion index)."""

from __future__ import annotations

import csv
import importlib.util
import os
import sys
from dataclasses import replace

import cv2
import numpy as np
import pytest
import tifffile

from mask2former.data.io import read_image, read_metadata
from mask2former.errors import ImageReadError
from mask2former.inference.options import PredictOptions
from mask2former.inference.run import run_prediction
from mask2former.structures import Instances
from tests.helpers import field_image, one_line_error, predict, run, save_tiny_model

HAS_CZI = (
    importlib.util.find_spec("bioio_czi") is not None and importlib.util.find_spec("pylibCZIrw") is not None
)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_ome(path, planes: np.ndarray, pixel_size: float = 0.65, names=("DAPI", "MyHC")) -> None:
    tifffile.imwrite(
        path,
        planes,
        ome=True,
        metadata={
            "axes": "CYX",
            "PhysicalSizeX": pixel_size,
            "PhysicalSizeY": pixel_size,
            "Channel": {"Name": list(names)},
        },
    )


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "model_final.pth")


# --------------------------------------------------------------------------- metadata


def test_ome_tiff_gives_pixel_size_and_channel_names(tmp_path):
    field = field_image(96)
    write_ome(tmp_path / "f.ome.tif", np.stack([field // 2, field]).astype(np.uint16))
    meta = read_metadata(tmp_path / "f.ome.tif")
    assert (meta.pixel_size_um, meta.pixel_size_source, meta.channel_names) == (0.65, "OME", ["DAPI", "MyHC"])
    assert np.array_equal(read_image(tmp_path / "f.ome.tif", channel="myhc"), field)  # by name, any case
    with pytest.raises(
        ImageReadError, match=r"no channel named 'Actin'; the channels are 0 \(DAPI\), 1 \(MyHC\)"
    ):
        read_image(tmp_path / "f.ome.tif", channel="Actin")
    # Microns are also read from other units.
    tifffile.imwrite(
        tmp_path / "nm.ome.tif",
        field,
        ome=True,
        metadata={"axes": "YX", "PhysicalSizeX": 325, "PhysicalSizeXUnit": "nm"},
    )
    assert read_metadata(tmp_path / "nm.ome.tif").pixel_size_um == pytest.approx(0.325)


def test_imagej_calibration_gives_the_pixel_size(tmp_path):
    tifffile.imwrite(
        tmp_path / "ij.tif",
        field_image(64),
        imagej=True,
        resolution=(1 / 0.325, 1 / 0.325),
        metadata={"unit": "um"},
    )
    meta = read_metadata(tmp_path / "ij.tif")
    assert meta.pixel_size_um == pytest.approx(0.325) and meta.pixel_size_source == "ImageJ"
    tifffile.imwrite(tmp_path / "plain.tif", field_image(64))
    assert read_metadata(tmp_path / "plain.tif").pixel_size_um is None  # no calibration, no guess


def test_multi_series_tiff_picks_a_scene_and_lists_them(tmp_path):
    with tifffile.TiffWriter(tmp_path / "ms.tif") as tif:
        tif.write(np.zeros((10, 12), np.uint8))
        tif.write(np.full((20, 22), 7, np.uint8))
    assert read_image(tmp_path / "ms.tif").shape == (10, 12)  # the first by default
    assert read_image(tmp_path / "ms.tif", scene=1).shape == (20, 22)
    assert read_metadata(tmp_path / "ms.tif").scenes == ["series 0", "series 1"]
    with pytest.raises(
        ImageReadError, match=r"no scene '3'; the file holds 2: 0 \(series 0\), 1 \(series 1\)"
    ):
        read_image(tmp_path / "ms.tif", scene="3")


def test_a_three_channel_tiff_needs_a_channel_and_lists_them(tmp_path, model):
    planes = np.stack([field_image(96, seed=s) for s in range(3)]).astype(np.uint16)
    tifffile.imwrite(tmp_path / "c3.tif", planes, photometric="minisblack", metadata={"axes": "CYX"})
    out = predict(model, tmp_path / "c3.tif", tmp_path / "out", cwd=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr.decode()
    line = [x for x in out.stderr.decode().splitlines() if "failed:" in x][0]
    assert "c3.tif: image has 3 channels (0, 1, 2): choose one with --channel" in line
    # An 8-bit RGB PNG is a photograph-style image and stays allowed.
    cv2.imwrite(str(tmp_path / "rgb.png"), np.dstack([field_image(64)] * 3))
    assert read_image(tmp_path / "rgb.png").shape == (64, 64, 3)


# --------------------------------------------------------------------------- CZI, ND2, LIF


@pytest.mark.parametrize("ext, plugin", [(".czi", "bioio-czi"), (".nd2", "bioio-nd2"), (".lif", "bioio-lif")])
def test_microscope_formats_without_their_reader_name_the_install(tmp_path, monkeypatch, ext, plugin):
    path = tmp_path / f"field{ext}"
    path.write_bytes(b"not really")
    monkeypatch.setitem(sys.modules, "bioio", None)  # as if bioio were not installed
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    assert plugin in str(err.value) and 'pip install "myotube-mask2former[formats]"' in str(err.value)


@pytest.mark.skipif(not HAS_CZI, reason="the formats extra (bioio-czi) is not installed")
def test_czi_written_by_pylibczirw_reads_with_names_and_pixel_size(tmp_path):
    import pylibCZIrw.czi as pyczi

    dapi, myosin = (field_image(64, seed=s).astype(np.uint16) * 10 for s in (1, 2))
    with pyczi.create_czi(str(tmp_path / "f.czi"), exist_ok=True) as czi:
        czi.write(data=dapi, plane={"C": 0, "Z": 0, "T": 0})
        czi.write(data=myosin, plane={"C": 1, "Z": 0, "T": 0})
        czi.write_metadata(
            document_name="f", channel_names={0: "DAPI", 1: "MyHC"}, scale_x=0.65e-6, scale_y=0.65e-6
        )
    meta = read_metadata(tmp_path / "f.czi")
    assert (
        meta.channel_names == ["DAPI", "MyHC"]
        and meta.pixel_size_um == pytest.approx(0.65)
        and meta.pixel_size_source == "CZI"
    )
    assert np.array_equal(read_image(tmp_path / "f.czi", channel="MyHC"), myosin)
    with pytest.raises(ImageReadError, match="choose one with --channel"):
        read_image(tmp_path / "f.czi")


# --------------------------------------------------------------------------- units end to end


def test_predict_on_an_ome_tiff_reports_microns_without_a_flag(tmp_path, model):
    field = field_image(128)
    write_ome(tmp_path / "f.ome.tif", np.stack([field // 3, field]).astype(np.uint16), pixel_size=0.65)
    out = predict(model, tmp_path / "f.ome.tif", tmp_path / "out", "--channel", "MyHC", cwd=tmp_path)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    rows = read_rows(tmp_path / "out" / "f_measurements.csv")
    assert rows and "length_um" in rows[0] and "area_um2" in rows[0]
    summary = read_rows(tmp_path / "out" / "summary.csv")[0]
    assert (summary["pixel_size_um"], summary["pixel_size_source"]) == ("0.65", "OME")
    with tifffile.TiffFile(tmp_path / "out" / "f_labels.tif") as tif:
        num, den = tif.pages.first.tags["XResolution"].value
        assert den / num == pytest.approx(0.65, rel=1e-3) and tif.imagej_metadata["unit"] == "um"
    # --pixel-size still wins over the file.
    out = predict(
        model,
        tmp_path / "f.ome.tif",
        tmp_path / "out2",
        "--channel",
        "1",
        "--pixel-size",
        "0.5",
        cwd=tmp_path,
    )
    assert read_rows(tmp_path / "out2" / "summary.csv")[0]["pixel_size_source"] == "--pixel-size"


# --------------------------------------------------------------------------- nuclei you can check


TUBES = [((10, 30), (230, 40), 16), ((20, 120), (220, 150), 14), ((40, 200), (200, 210), 12)]


def nuclei_field():
    """A two-channel field (DAPI, myosin) with three straight tubes and 24 separate nuclei: 18 on
    the tubes' centre lines (known tube), 6 in the background."""
    h, w = 240, 240
    myosin = np.zeros((h, w), np.uint16)
    dapi = np.zeros((h, w), np.uint16)
    truth = []  # (x, y, tube index or -1)
    for k, ((x0, y0), (x1, y1), width) in enumerate(TUBES):
        cv2.line(myosin, (x0, y0), (x1, y1), 3000, width)
        for t in np.linspace(0.1, 0.9, 6):
            truth.append((int(x0 + t * (x1 - x0)), int(y0 + t * (y1 - y0)), k))
    truth += [(30, 80, -1), (120, 85, -1), (200, 90, -1), (60, 175, -1), (150, 180, -1), (110, 230, -1)]
    for x, y, _ in truth:
        cv2.circle(dapi, (x, y), 5, 2500, -1)
    rng = np.random.default_rng(0)
    stack = np.stack([dapi, myosin]).astype(np.float64) + rng.normal(200, 15, (2, h, w))
    return np.clip(stack, 0, 65535).astype(np.uint16), truth


class TubesPredictor:
    """Stand-in model: the known tubes, as the instances."""

    def __call__(self, tile):
        masks = []
        for (x0, y0), (x1, y1), width in TUBES:
            m = np.zeros(tile.shape[:2], np.uint8)
            cv2.line(m, (x0, y0), (x1, y1), 1, width)
            masks.append(m.astype(bool))
        return Instances(np.stack(masks), np.full(len(masks), 0.9, np.float32))


@pytest.mark.parametrize("fusion_min", [2, 7])
def test_nuclei_labels_table_and_fusion_index_on_known_nuclei(tmp_path, fusion_min):
    stack, truth = nuclei_field()
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_ome(inputs / "f.ome.tif", stack, pixel_size=0.5)
    options = PredictOptions(
        tile_size=256,
        channel="MyHC",
        nuclei_channel="DAPI",
        nuclei_radius_um=2.5,
        nuclei_min_area_um2=5.0,
        fusion_min_nuclei=fusion_min,
        progress=False,
    )
    report = run_prediction(str(inputs / "f.ome.tif"), TubesPredictor(), str(tmp_path / "out"), options)
    assert report.ok, report.failures
    labels = tifffile.imread(tmp_path / "out" / "f_nuclei_labels.tif")
    assert labels.dtype == np.uint16 and labels.max() == len(truth)  # every nucleus, once
    rows = read_rows(tmp_path / "out" / "f_nuclei.csv")
    assert len(rows) == len(truth) and {"centroid_x_um", "area_um2", "myotube", "position"} <= set(rows[0])
    right = 0
    for x, y, tube in truth:
        row = rows[int(labels[y, x]) - 1]
        assert (
            abs(float(row["centroid_x_um"]) - 0.5 * x) < 1.0
            and abs(float(row["centroid_y_um"]) - 0.5 * y) < 1.0
        )
        right += row["myotube"] == (str(tube + 1) if tube >= 0 else "")
    assert right / len(truth) >= 0.95
    assert all(r["position"] == "central" for r in rows if r["myotube"])  # on the centre lines
    summary = read_rows(tmp_path / "out" / "summary.csv")[0]
    assert int(summary["nuclei"]) == 24 and int(summary["nuclei_in_myotubes"]) == 18
    # Six nuclei per tube: fused with the default rule (>= 2), not when 7 are asked for.
    assert float(summary["fusion_index"]) == pytest.approx(18 / 24 if fusion_min == 2 else 0.0)
    with tifffile.TiffFile(tmp_path / "out" / "f_nuclei_labels.tif") as tif:
        num, den = tif.pages.first.tags["XResolution"].value
        assert den / num == pytest.approx(0.5, rel=1e-3)
    overlay = cv2.imread(str(tmp_path / "out" / "f_overlay.png"))
    x, y, _ = truth[-1]  # a background nucleus: its outline is drawn white
    assert (overlay[y - 7 : y + 8, x - 7 : x + 8] == 255).all(axis=2).any()


def test_nuclei_settings_in_microns_need_the_pixel_size(tmp_path, model):
    stack, _ = nuclei_field()
    tifffile.imwrite(tmp_path / "f.tif", stack, photometric="minisblack", metadata={"axes": "CYX"})
    out = predict(
        model,
        tmp_path / "f.tif",
        tmp_path / "out",
        "--channel",
        "1",
        "--nuclei-channel",
        "0",
        "--nuclei-radius-um",
        "3",
        cwd=tmp_path,
    )
    assert out.returncode == 1
    assert "nuclei settings in microns need the pixel size" in out.stderr.decode()


def test_fusion_min_nuclei_must_be_positive(tmp_path, model):
    cv2.imwrite(str(tmp_path / "f.png"), field_image())
    one_line_error(
        predict(model, tmp_path / "f.png", tmp_path / "out", "--fusion-min-nuclei", "0", cwd=tmp_path),
        "--fusion-min-nuclei",
    )


def test_predict_help_lists_the_format_and_nuclei_flags(tmp_path):
    out = run("predict.py", "--help", cwd=tmp_path)
    assert out.returncode == 0
    for flag in (
        b"--scene",
        b"--fusion-min-nuclei",
        b"--nuclei-radius-um",
        b"--nuclei-min-area-um2",
        b"N|NAME",
    ):
        assert flag in out.stdout, flag


def test_overlapped_measuring_gives_the_same_results_in_order(tmp_path):
    """Workers measure and export while the model predicts the next image: same files, same order,
    failures reported in place."""
    stack, _ = nuclei_field()
    inputs = tmp_path / "in"
    inputs.mkdir()
    for k in range(4):
        write_ome(inputs / f"f{k}.ome.tif", np.roll(stack, 7 * k, axis=2), pixel_size=0.5)
    (inputs / "f2b.tif").write_bytes(b"broken")  # sorts between f2 and f3
    options = PredictOptions(tile_size=256, channel="MyHC", nuclei_channel="DAPI", progress=False)
    serial = run_prediction(str(inputs), TubesPredictor(), str(tmp_path / "serial"), options)
    overlapped = run_prediction(
        str(inputs), TubesPredictor(), str(tmp_path / "overlapped"), replace(options, workers=2)
    )
    assert [f[0] for f in serial.failures] == [f[0] for f in overlapped.failures] == [str(inputs / "f2b.tif")]
    assert (
        [s["image"] for s in overlapped.summaries]
        == [s["image"] for s in serial.summaries]
        == [f"f{k}.ome.tif" for k in range(4)]
    )
    for name in sorted(os.listdir(tmp_path / "serial")):
        if name.endswith((".tif", ".csv")) and name != "summary.csv":
            assert (tmp_path / "serial" / name).read_bytes() == (
                tmp_path / "overlapped" / name
            ).read_bytes(), name
    rows = [r["image"] for r in read_rows(tmp_path / "overlapped" / "summary.csv")]
    assert rows == ["f0.ome.tif", "f1.ome.tif", "f2.ome.tif", "f2b.tif", "f3.ome.tif"]
