"""read_image: bit depths, colour, channels, Z-stacks, odd file names, corrupt files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from mask2former.data.io import (
    image_size,
    is_image_file,
    percentile_scale,
    read_image,
    to_model_float,
    to_uint8_display,
)
from mask2former.errors import ImageReadError

RNG = np.random.default_rng(0)
H, W = 24, 32


def gray8() -> np.ndarray:
    return RNG.integers(0, 256, (H, W), dtype=np.uint8)


def gray16() -> np.ndarray:
    return RNG.integers(0, 65536, (H, W), dtype=np.uint16)


def rgb8() -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 200, 100, 10  # distinct values reveal BGR/RGB swaps
    img[3:9, 4:12, 1] = 250
    return img


def cv2_write(path: Path, rgb_or_gray: np.ndarray) -> Path:
    """Write with OpenCV, which expects BGR(A)."""
    img = rgb_or_gray
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    assert cv2.imwrite(str(path), img)
    return path


# --------------------------------------------------------------------------- grayscale and colour


@pytest.mark.parametrize("ext", [".png", ".tif", ".tiff"])
@pytest.mark.parametrize("make", [gray8, gray16], ids=["8bit", "16bit"])
def test_grayscale_round_trip_keeps_dtype_and_values(tmp_path, ext, make):
    data = make()
    path = tmp_path / f"img{ext}"
    if ext == ".png":
        cv2_write(path, data)
    else:
        tifffile.imwrite(path, data)
    out = read_image(path)
    assert out.dtype == data.dtype and out.shape == (H, W)
    np.testing.assert_array_equal(out, data)
    assert image_size(path) == (H, W)


def test_jpeg_is_read(tmp_path):
    path = cv2_write(tmp_path / "img.jpg", np.full((H, W), 77, np.uint8))
    out = read_image(path)
    assert out.shape == (H, W) and abs(int(out.mean()) - 77) <= 2


def test_float_tiff(tmp_path):
    data = RNG.random((H, W)).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", data)
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif"), data)


def test_rgb_png_is_returned_in_rgb_order(tmp_path):
    data = rgb8()
    out = read_image(cv2_write(tmp_path / "rgb.png", data))
    assert out.shape == (H, W, 3)
    np.testing.assert_array_equal(out, data)


def test_rgb_tiffs_are_channels_in_rgb_order(tmp_path):
    """A microscope's RGB-stored TIFF is three channels: one must be chosen, and they come in R, G, B
    order."""
    for name, data in (
        ("rgb.tif", rgb8()),
        ("rgb16.tif", RNG.integers(0, 65536, (H, W, 3), dtype=np.uint16)),
    ):
        tifffile.imwrite(tmp_path / name, data, photometric="rgb")
        with pytest.raises(
            ImageReadError, match=r"image has 3 channels \(0, 1, 2\): choose one with --channel"
        ):
            read_image(tmp_path / name)
        for c in range(3):
            out = read_image(tmp_path / name, channel=c)
            assert out.dtype == data.dtype
            np.testing.assert_array_equal(out, data[..., c])


def test_rgba_drops_alpha(tmp_path):
    data = np.dstack([rgb8(), RNG.integers(0, 256, (H, W), dtype=np.uint8)])
    out = read_image(cv2_write(tmp_path / "rgba.png", data))
    assert out.shape == (H, W, 3)
    np.testing.assert_array_equal(out, data[..., :3])
    tifffile.imwrite(
        tmp_path / "rgba.tif", data, photometric="rgb"
    )  # 4th sample stored as unassociated alpha
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.tif", channel=2), data[..., 2])
    with pytest.raises(ImageReadError, match="channel 3 requested but the image has 3 channels"):
        read_image(tmp_path / "rgba.tif", channel=3)  # alpha is not a channel


def test_rgb_channel_choice(tmp_path):
    path = cv2_write(tmp_path / "rgb.png", rgb8())
    np.testing.assert_array_equal(read_image(path, channel=1), rgb8()[..., 1])
    with pytest.raises(ImageReadError, match="channel 3 requested but the image has 3 channels"):
        read_image(path, channel=3)


def test_grayscale_channel_choice(tmp_path):
    data = gray8()
    path = cv2_write(tmp_path / "g.png", data)
    np.testing.assert_array_equal(read_image(path, channel=0), data)
    with pytest.raises(ImageReadError) as err:
        read_image(path, channel=1)
    assert str(path) in str(err.value) and "single channel" in str(err.value)


# --------------------------------------------------------------------------- channels and Z


@pytest.mark.parametrize("n_channels", [2, 5])
def test_multichannel_tiff_needs_a_channel_choice(tmp_path, n_channels):
    data = RNG.integers(0, 4096, (n_channels, H, W), dtype=np.uint16)
    path = tmp_path / f"c{n_channels}.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "CYX"})
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    message = str(err.value)
    assert message.startswith(str(path) + ": ")
    assert f"{n_channels} channels" in message and "INPUT.CHANNEL" in message
    for c in range(n_channels):
        np.testing.assert_array_equal(read_image(path, channel=c), data[c])
    with pytest.raises(
        ImageReadError, match=f"channel {n_channels} requested but the image has {n_channels} channels"
    ):
        read_image(path, channel=n_channels)


def test_three_channel_imagej_tiff_needs_a_channel(tmp_path):
    data = RNG.integers(0, 4096, (3, H, W), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "c3.tif", data, imagej=True, metadata={"axes": "CYX"})
    with pytest.raises(ImageReadError, match=r"c3.tif: image has 3 channels \(0, 1, 2\)"):
        read_image(tmp_path / "c3.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "c3.tif", channel=2), data[2])


def test_z_stack_is_max_projected(tmp_path):
    data = RNG.integers(0, 4096, (5, H, W), dtype=np.uint16)
    path = tmp_path / "z.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZYX"})
    out = read_image(path)
    assert out.shape == (H, W) and out.dtype == np.uint16
    np.testing.assert_array_equal(out, data.max(axis=0))


def test_z_stack_with_channels(tmp_path):
    data = RNG.integers(0, 4096, (4, 2, H, W), dtype=np.uint16)
    path = tmp_path / "zc.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZCYX"})
    for c in range(2):
        np.testing.assert_array_equal(read_image(path, channel=c), data[:, c].max(axis=0))
    with pytest.raises(ImageReadError, match="2 channels"):
        read_image(path)


def test_time_and_z_are_both_projected(tmp_path):
    data = RNG.integers(0, 4096, (2, 3, 2, H, W), dtype=np.uint16)
    path = tmp_path / "tzc.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZCYX"})
    np.testing.assert_array_equal(read_image(path, channel=1), data[:, :, 1].max(axis=(0, 1)))


# --------------------------------------------------------------------------- file names


@pytest.mark.parametrize("name", ["Zellkultur_äöü_β.png", "myotube 日本 (1).tif", "ça va.jpeg"])
def test_non_ascii_file_names(tmp_path, name):
    data = gray8()
    path = tmp_path / "ördner" / name
    path.parent.mkdir()
    if name.endswith(".tif"):
        tifffile.imwrite(path, data)
    else:
        ok, encoded = cv2.imencode(Path(name).suffix, data)
        assert ok
        path.write_bytes(encoded.tobytes())
    out = read_image(path)
    assert out.shape == (H, W)
    if not name.endswith(".jpeg"):
        np.testing.assert_array_equal(out, data)


def test_upper_case_extensions(tmp_path):
    data = gray16()
    tifffile.imwrite(tmp_path / "A.TIF", data)
    np.testing.assert_array_equal(read_image(tmp_path / "A.TIF"), data)
    assert is_image_file("x/A.TIF") and is_image_file("b.Png") and not is_image_file("c.json")


# --------------------------------------------------------------------------- broken files


def _assert_read_error(path: Path, *needles: str):
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    message = str(err.value)
    assert message.startswith(str(path) + ": "), message
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    assert err.value.path == str(path)


def test_missing_file_and_directory(tmp_path):
    _assert_read_error(tmp_path / "nope.png", "not found")
    (tmp_path / "folder.tif").mkdir()
    _assert_read_error(tmp_path / "folder.tif", "directory")


@pytest.mark.parametrize("ext", [".png", ".tif", ".jpg"])
def test_empty_file(tmp_path, ext):
    path = tmp_path / f"empty{ext}"
    path.write_bytes(b"")
    _assert_read_error(path)


@pytest.mark.parametrize("ext", [".png", ".tif", ".jpg"])
def test_garbage_file(tmp_path, ext):
    path = tmp_path / f"garbage{ext}"
    path.write_bytes(RNG.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    _assert_read_error(path)


def test_tiff_header_with_garbage(tmp_path):
    path = tmp_path / "junk.tif"
    path.write_bytes(b"II*\x00" + b"\xff" * 100)
    _assert_read_error(path, "TIFF")


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, -1])
def test_truncated_png(tmp_path, keep):
    path = cv2_write(tmp_path / "t.png", gray16())
    data = path.read_bytes()
    cut = len(data) - 1 if keep == -1 else int(len(data) * keep)
    path.write_bytes(data[:cut])
    _assert_read_error(path)


@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("keep", [0.3, 0.9])
def test_truncated_tiff(tmp_path, compression, keep):
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, gray16(), compression=compression)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    _assert_read_error(path, "TIFF")


def test_truncated_z_stack_is_not_read_as_a_shorter_stack(tmp_path):
    path = tmp_path / "z.tif"
    tifffile.imwrite(
        path, RNG.integers(0, 4096, (6, 64, 64), dtype=np.uint16), imagej=True, metadata={"axes": "ZYX"}
    )
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _assert_read_error(path, "truncated")


def test_truncated_jpeg(tmp_path):
    path = cv2_write(tmp_path / "t.jpg", gray8())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    _assert_read_error(path)


def test_reading_never_modifies_the_file(tmp_path):
    path = tmp_path / "z.tif"
    tifffile.imwrite(
        path, RNG.integers(0, 4096, (3, H, W), dtype=np.uint16), imagej=True, metadata={"axes": "ZYX"}
    )
    before = path.read_bytes()
    read_image(path)
    assert path.read_bytes() == before


# --------------------------------------------------------------------------- model input


@pytest.mark.parametrize("make", [gray8, gray16, rgb8])
def test_to_model_float(make):
    img = make()
    out = to_model_float(img)
    assert out.shape == (H, W, 3) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    if img.ndim == 2:
        np.testing.assert_array_equal(out[..., 0], out[..., 2])  # grayscale replicated
    display = to_uint8_display(img)
    assert display.dtype == np.uint8 and display.shape == (H, W, 3)


def test_dim_16bit_image_is_stretched_by_percentiles():
    dim = np.full((64, 64), 100, np.uint16)
    dim[20:40, 10:50] = 900  # a 12-bit camera uses a sliver of the 16-bit range
    out = percentile_scale(dim)[..., 0]
    assert out[30, 30] == pytest.approx(1.0) and out[0, 0] == pytest.approx(0.0)


def test_constant_image_gives_no_nan():
    out = to_model_float(np.full((8, 8), 5, np.uint16))
    assert np.isfinite(out).all()


def test_jpeg_content_with_a_png_name_is_read(tmp_path):
    ok, encoded = cv2.imencode(".jpg", np.full((H, W), 90, np.uint8))
    path = tmp_path / "really_a_jpeg.png"
    path.write_bytes(encoded.tobytes())
    assert abs(int(read_image(path).mean()) - 90) <= 2


def test_truncated_png_is_reported_without_decoder_noise(tmp_path, capfd):
    path = cv2_write(tmp_path / "t.png", gray16())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _assert_read_error(path, "truncated")
    assert capfd.readouterr().err == ""  # libpng never got to print its own messages
