"""Read any microscopy image the toolkit accepts: TIFF (8/16-bit, channels, Z-stacks), PNG, JPG.

``read_image`` returns the pixel data in its own dtype as ``(H, W)`` or ``(H, W, C)``;
``to_model_float`` turns that into the percentile-scaled float RGB the model sees.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..errors import ImageReadError

logger = logging.getLogger(__name__)

# Read by bioio and its reader plugins (the extra "formats"); everything else by tifffile or OpenCV.
MICROSCOPE_FORMATS = {".czi": "bioio-czi", ".nd2": "bioio-nd2", ".lif": "bioio-lif"}
IMAGE_EXTENSIONS = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", *MICROSCOPE_FORMATS)
FORMATS_INSTALL = 'pip install "myotube-mask2former[formats]"'


@dataclass
class ImageMetadata:
    """What a file says about itself, beyond its pixels.

    ``pixel_size_um``: microns per pixel (X), with ``pixel_size_source`` naming where it came from
    ("OME", "ImageJ", "CZI", ...). ``scenes``: the series / scenes the file holds; ``scene`` the
    one read.
    """

    channel_names: list[str] | None = None
    pixel_size_um: float | None = None
    pixel_size_source: str | None = None
    scenes: list[str] = field(default_factory=list)
    scene: str | None = None


def is_image_file(path: str | os.PathLike) -> bool:
    return os.fspath(path).lower().endswith(IMAGE_EXTENSIONS)


def read_image(
    path: str | os.PathLike, channel: int | str = -1, z_project: bool = False, scene: int | str | None = None
) -> np.ndarray:
    """Read ``path`` and return ``(H, W)`` (one channel) or ``(H, W, 3)`` (RGB).

    Z-stacks are max-projected. ``channel`` picks one channel of a multi-channel image, by index
    or, where the file names its channels, by name (case-insensitive); ``-1`` keeps grayscale or
    an 8-bit RGB(A) PNG/JPG as is (alpha dropped) and refuses other channel counts, listing them.
    A TIFF axis that its metadata does not name (tifffile's "Q") may be channels or Z planes:
    a channel reads it as channels, ``z_project`` as a Z-stack, and without either it is an error.
    ``scene``: the series (TIFF) or scene (CZI, ND2, LIF) to read, by index or name; default the
    first. Non-finite pixels (NaN, inf) are replaced by the lowest finite value, with a warning.
    """
    return read_image_and_metadata(path, channel, z_project, scene)[0]


def read_image_and_metadata(
    path: str | os.PathLike, channel: int | str = -1, z_project: bool = False, scene: int | str | None = None
) -> tuple[np.ndarray, ImageMetadata]:
    """:func:`read_image`, and what the file says about itself (pixel size, channel names, scenes)."""
    path = os.fspath(path)
    wants_channel = isinstance(channel, str) or channel >= 0
    image, channel_axis, meta = _read_any(
        path, "z" if z_project else ("channels" if wants_channel else "ask"), scene
    )
    if isinstance(channel, str):
        channel = channel_index(path, channel, meta)
    return select_channel(path, image, channel, channel_axis, meta.channel_names), meta


def read_all_channels(
    path: str | os.PathLike, z_project: bool = False, scene: int | str | None = None
) -> np.ndarray:
    """Every channel of ``path``: ``(H, W)`` or ``(H, W, C)`` (Z-stacks max-projected; an unnamed
    TIFF axis counts as channels unless ``z_project``)."""
    return _read_any(os.fspath(path), "z" if z_project else "channels", scene)[0]


def read_metadata(path: str | os.PathLike, scene: int | str | None = None) -> ImageMetadata:
    """Channel names, pixel size and scenes of ``path``, without reading its pixels (TIFF), or
    through bioio for the microscope formats. Formats without such metadata give an empty record."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext in MICROSCOPE_FORMATS:
        return _read_bioio(path, scene, pixels=False)[2]
    if ext in (".tif", ".tiff"):
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                return _tiff_metadata(tif, _series_index(path, tif, scene))
        except ImageReadError:
            raise
        except Exception as err:
            raise ImageReadError(path, f"cannot read TIFF ({type(err).__name__}: {_short(err)})") from None
    return ImageMetadata()


def channel_index(path: str, name: str, meta: ImageMetadata) -> int:
    """The index of the channel called ``name`` (a number in a string is an index)."""
    if name.strip().lstrip("-").isdigit():
        return int(name)
    names = meta.channel_names or []
    for i, known in enumerate(names):
        if known.casefold() == name.strip().casefold():
            return i
    if not names:
        raise ImageReadError(
            path, f"channel {name!r} asked for by name, but the file names no channels; give its index"
        )
    raise ImageReadError(
        path, f"no channel named {name!r}; the channels are {_channel_list(names, len(names))}"
    )


def _channel_list(names: list[str] | None, n: int) -> str:
    if names and len(names) == n:
        return ", ".join(f"{i} ({nm})" for i, nm in enumerate(names))
    return ", ".join(str(i) for i in range(n))


def _read_any(
    path: str, unnamed_axis: str, scene: int | str | None = None
) -> tuple[np.ndarray, bool, ImageMetadata]:
    if not os.path.exists(path):
        raise ImageReadError(path, "file not found")
    if os.path.isdir(path):
        raise ImageReadError(path, "is a directory, not an image")
    ext = os.path.splitext(path)[1].lower()
    if ext in MICROSCOPE_FORMATS:
        image, channel_axis, meta = _read_bioio(path, scene)
    elif ext in (".tif", ".tiff"):
        image, channel_axis, meta = _read_tiff(path, unnamed_axis, scene)
    else:
        if scene not in (None, 0, "0"):
            raise ImageReadError(path, f"scene {scene!r} asked for, but a {ext} file holds one image")
        image, channel_axis = _read_with_opencv(path)
        meta = ImageMetadata()
    if image.size == 0 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageReadError(path, f"image has no pixels (shape {image.shape})")
    return _finite(path, image), channel_axis, meta


def _read_bioio(
    path: str, scene: int | str | None, pixels: bool = True
) -> tuple[np.ndarray | None, bool, ImageMetadata]:
    """CZI, ND2 and LIF through bioio: one scene, time point 0, Z max-projected, channels last."""
    plugin = MICROSCOPE_FORMATS[os.path.splitext(path)[1].lower()]
    try:
        from bioio import BioImage
    except ImportError:
        raise ImageReadError(
            path,
            f"reading this format needs bioio and {plugin}: {FORMATS_INSTALL} "
            f"(or pip install bioio {plugin})",
        ) from None
    try:
        img = BioImage(path)
        scenes = [str(s) for s in img.scenes]
    except ImportError as err:
        raise ImageReadError(
            path, f"reading this format needs {plugin} ({_short(err)}): {FORMATS_INSTALL}"
        ) from None
    except Exception as err:
        if "UnsupportedFileFormat" in type(err).__name__:
            raise ImageReadError(
                path, f"no bioio reader for this file; install {plugin}: {FORMATS_INSTALL}"
            ) from None
        raise ImageReadError(path, f"cannot read ({type(err).__name__}: {_short(err)})") from None
    index = _scene_index(path, scenes, scene)
    try:
        img.set_scene(index)
        names = [str(n) for n in (img.channel_names or [])] or None
        size = img.physical_pixel_sizes.X
        source = os.path.splitext(path)[1][1:].upper() if size else None
        meta = ImageMetadata(names, float(size) if size else None, source, scenes, scenes[index])
        if not pixels:
            return None, False, meta
        data = np.asarray(img.get_image_data("CZYX", T=0)).max(axis=1)  # (C, Y, X)
    except ImageReadError:
        raise
    except Exception as err:
        raise ImageReadError(
            path, f"cannot read scene {scenes[index]!r} ({type(err).__name__}: {_short(err)})"
        ) from None
    image = data[0] if data.shape[0] == 1 else np.moveaxis(data, 0, -1)
    return np.ascontiguousarray(image), image.ndim == 3, meta


def _scene_index(path: str, scenes: list[str], scene: int | str | None) -> int:
    if scene is None:
        return 0
    if isinstance(scene, int) or str(scene).strip().isdigit():
        index = int(scene)
        if 0 <= index < len(scenes):
            return index
    elif str(scene) in scenes:
        return scenes.index(str(scene))
    listed = ", ".join(f"{i} ({n})" for i, n in enumerate(scenes))
    raise ImageReadError(path, f"no scene {scene!r}; the file holds {len(scenes)}: {listed}")


_WARNED_NON_FINITE: set[str] = set()


def _finite(path: str, image: np.ndarray) -> np.ndarray:
    """Non-finite pixels become the lowest finite value (background, not a bright spot): one NaN
    would otherwise make the percentile scaling NaN everywhere and the model see nothing."""
    if image.dtype.kind != "f":
        return image
    bad = ~np.isfinite(image)
    n_bad = int(bad.sum())
    if not n_bad:
        return image
    if n_bad == image.size:
        raise ImageReadError(path, "every pixel is NaN or infinite")
    image = image.copy()
    image[bad] = image[~bad].min()
    if path not in _WARNED_NON_FINITE:  # a training image is read again every epoch
        _WARNED_NON_FINITE.add(path)
        logger.warning(
            "%s: %d of %d pixels are NaN or infinite; set to the lowest finite value", path, n_bad, image.size
        )
    return image


def _read_with_opencv(path: str) -> tuple[np.ndarray, bool]:
    try:
        data = np.fromfile(
            path, dtype=np.uint8
        )  # np.fromfile copes with non-ASCII names; cv2.imread does not
    except OSError as err:
        raise ImageReadError(path, f"cannot read the file ({err.strerror or err})") from None
    if data.size == 0:
        raise ImageReadError(path, "file is empty")
    # Checked before decoding: libpng would print its own complaints about a cut-off file.
    if _is_png(data) and not _png_complete(data):
        raise ImageReadError(path, "PNG file is truncated or corrupt (no IEND chunk)")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as err:  # e.g. a header declaring more pixels than OpenCV accepts
        raise ImageReadError(path, f"cannot decode image ({_short(err)})") from None
    if image is None:
        raise ImageReadError(path, "cannot decode image (corrupt, truncated or unsupported format)")
    if image.ndim == 3:
        if image.shape[2] == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
        return image, True
    return image, False


def _is_png(data: np.ndarray) -> bool:
    # By content, not by name: a JPEG saved as .png decodes fine and has no IEND chunk.
    return bytes(data[:8]) == b"\x89PNG\r\n\x1a\n"


def _png_complete(data: np.ndarray) -> bool:
    return bytes(data[-12:]).find(b"IEND") >= 0


def _read_tiff(
    path: str, unnamed_axis: str = "ask", scene: int | str | None = None
) -> tuple[np.ndarray, bool, ImageMetadata]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            index = _series_index(path, tif, scene)
            series = tif.series[index]
            axes = series.axes.upper()
            image = series.asarray()
            missing = _missing_planes(tif, series)
            alpha = _has_alpha(series)
            meta = _tiff_metadata(tif, index)
    except ImageReadError:
        raise
    except Exception as err:  # tifffile raises many types for corrupt files
        raise ImageReadError(path, f"cannot read TIFF ({type(err).__name__}: {_short(err)})") from None
    if missing:
        raise ImageReadError(path, f"TIFF file is truncated or corrupt ({missing})")
    image = np.asarray(image)
    if alpha:  # RGBA: alpha is transparency, not a fluorescence channel
        image = np.take(image, [0, 1, 2], axis=axes.index("S"))
    # Collapse everything to Y, X and one channel axis; Z/T are max-projected.
    if len(axes) != image.ndim:
        axes = "Q" * (image.ndim - 2) + "YX"
    unnamed = [i for i, a in enumerate(axes) if a in "QI" and image.shape[i] > 1]
    if unnamed and unnamed_axis != "z":
        if (
            unnamed_axis == "ask"
            or len(unnamed) > 1
            or any(a in "CS" and image.shape[i] > 1 for i, a in enumerate(axes))
        ):
            planes = " x ".join(str(image.shape[i]) for i in unnamed)
            raise ImageReadError(
                path,
                f"axes {series.axes} {tuple(series.shape)}: {planes} planes not named as channels or Z "
                "in the metadata; give --channel N (INPUT.CHANNEL) if they are channels, "
                "or --z-project (INPUT.Z_PROJECT) if they are a Z-stack",
            )
        axes = axes[: unnamed[0]] + "C" + axes[unnamed[0] + 1 :]
    channel_axes = [i for i, a in enumerate(axes) if a in "CS"]
    other = [i for i, a in enumerate(axes) if a not in "YXCS"]
    if len(channel_axes) > 1:
        # e.g. C and S both present: keep S (samples) only when C is trivial.
        extra = [i for i in channel_axes if image.shape[i] == 1]
        other += extra
        channel_axes = [i for i in channel_axes if i not in extra][:1]
    for axis in sorted(other, reverse=True):
        image = image.max(axis=axis)
        axes = axes[:axis] + axes[axis + 1 :]
    if channel_axes:
        c = axes.index("C") if "C" in axes else axes.index("S")
        image = np.moveaxis(image, c, -1)
        if image.shape[-1] == 1:
            image = image[..., 0]
    if image.ndim not in (2, 3):
        raise ImageReadError(path, f"unsupported TIFF layout {series.axes} {series.shape}")
    return np.ascontiguousarray(image), image.ndim == 3, meta


def _series_index(path: str, tif, scene: int | str | None) -> int:
    names = [s.name or f"series {i}" for i, s in enumerate(tif.series)]
    return _scene_index(path, names, scene)


# Length units of microscopy metadata, in microns.
UNITS_UM = {
    "µm": 1.0,
    "um": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "\u03bcm": 1.0,
    "nm": 1e-3,
    "mm": 1e3,
    "cm": 1e4,
    "m": 1e6,
}


def _tiff_metadata(tif, index: int) -> ImageMetadata:
    """Pixel size and channel names from OME-XML, else the pixel size of ImageJ's calibration."""
    scenes = [s.name or f"series {i}" for i, s in enumerate(tif.series)]
    meta = ImageMetadata(scenes=scenes, scene=scenes[index])
    if tif.is_ome and tif.ome_metadata:
        _ome_metadata(tif.ome_metadata, index, meta)
    if meta.pixel_size_um is None and tif.is_imagej:
        unit = str((tif.imagej_metadata or {}).get("unit", "")).replace("\\u00B5", "µ").lower()
        resolution = tif.pages.first.tags.get("XResolution")
        if unit in UNITS_UM and resolution is not None:
            num, den = resolution.value
            if num > 0:
                meta.pixel_size_um, meta.pixel_size_source = den / num * UNITS_UM[unit], "ImageJ"
    return meta


def _ome_metadata(xml: str, index: int, meta: ImageMetadata) -> None:
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return
    images = [e for e in root if e.tag.split("}")[-1] == "Image"]
    if index >= len(images):
        return
    pixels = next((e for e in images[index] if e.tag.split("}")[-1] == "Pixels"), None)
    if pixels is None:
        return
    size, unit = pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeXUnit", "µm")
    if size and unit.lower() in UNITS_UM:
        try:
            meta.pixel_size_um, meta.pixel_size_source = float(size) * UNITS_UM[unit.lower()], "OME"
        except ValueError:
            pass
    names = [c.get("Name") for c in pixels if c.tag.split("}")[-1] == "Channel"]
    if names and all(names):
        meta.channel_names = [str(n) for n in names]


def _missing_planes(tif, series) -> str | None:
    """A truncated stack loses its last pages; tifffile then only logs a warning and returns the
    pages it found. ImageJ and tifffile's own metadata say how much there should be."""
    per_plane = 1
    for n, axis in zip(series.shape, series.axes):
        if axis in "YXS":
            per_plane *= n
    planes = series.size // max(per_plane, 1)
    if tif.is_imagej:
        declared = int((tif.imagej_metadata or {}).get("images", 1))
        if declared > planes:
            return f"ImageJ metadata lists {declared} planes, the file holds {planes}"
    elif tif.is_shaped and tif.shaped_metadata:
        shape = tif.shaped_metadata[0].get("shape")
        if shape and int(np.prod(shape, dtype=np.int64)) > series.size:
            return f"metadata shape {tuple(shape)}, the file holds {tuple(series.shape)}"
    return None


def _has_alpha(series) -> bool:
    """RGB with an extra sample marked as (associated or unassociated) alpha."""
    page = series.keyframe
    return (
        "S" in series.axes
        and series.shape[series.axes.index("S")] == 4
        and page.photometric == 2  # RGB
        and any(int(e) in (1, 2) for e in (page.extrasamples or ()))
    )


def _short(err: BaseException) -> str:
    return str(err).replace("\n", " ")[:160]


def select_channel(
    path: str, image: np.ndarray, channel: int, has_channels: bool = True, names: list[str] | None = None
) -> np.ndarray:
    """``read_image``'s channel rule applied to an image read with :func:`read_all_channels`."""
    if image.ndim == 2:
        if channel > 0:
            raise ImageReadError(path, f"channel {channel} requested but the image has a single channel")
        return image
    n = image.shape[2]
    if channel >= 0:
        if channel >= n:
            raise ImageReadError(
                path, f"channel {channel} requested but the image has {n} channels: {_channel_list(names, n)}"
            )
        return np.ascontiguousarray(image[..., channel])
    if n == 1:
        return image[..., 0]
    # Only an 8-bit PNG/JPG is a photograph-style RGB(A) image; a microscope's channels are not colours.
    rgb_file = not path.lower().endswith((".tif", ".tiff", *MICROSCOPE_FORMATS)) and image.dtype == np.uint8
    if rgb_file and n == 3:
        return image
    if rgb_file and n == 4:
        return np.ascontiguousarray(image[..., :3])  # RGBA PNG: drop alpha
    raise ImageReadError(
        path, f"image has {n} channels ({_channel_list(names, n)}): choose one with --channel / INPUT.CHANNEL"
    )


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of an image of any channel count, decoding it fully so corrupt files are caught."""
    image = read_all_channels(path)
    return int(image.shape[0]), int(image.shape[1])


def percentile_range(image: np.ndarray, low: float = 0.5, high: float = 99.8) -> np.ndarray:
    """Per-channel ``(low, high)`` percentile intensities, shape (C, 2)."""
    img = image if image.ndim == 3 else image[..., None]
    # Percentiles of a subsample: exact enough and ~10x faster on 2048x2048 fields.
    step = max(1, int(np.sqrt(img.shape[0] * img.shape[1] / 250_000)))
    ranges = np.empty((img.shape[2], 2), np.float64)
    for c in range(img.shape[2]):
        lo, hi = np.percentile(img[::step, ::step, c], [low, high])
        ranges[c] = lo, (hi if hi > lo else lo + 1.0)
    return ranges


def percentile_scale(
    image: np.ndarray, low: float = 0.5, high: float = 99.8, value_range: np.ndarray | None = None
) -> np.ndarray:
    """Scale each channel so its ``low``/``high`` percentiles map to 0/1 (float32, clipped).

    Fluorescence intensities vary by orders of magnitude between microscopes and bit depths;
    fixed 1/255 or 1/65535 scaling would leave dim 16-bit fields almost black. ``value_range``
    (from :func:`percentile_range` of a whole field) scales a tile like the field it came from.
    """
    img = image.astype(np.float32, copy=False)
    if img.ndim == 2:
        img = img[..., None]
    ranges = percentile_range(img, low, high) if value_range is None else value_range
    out = np.empty_like(img, dtype=np.float32)
    for c in range(img.shape[2]):
        lo, hi = ranges[c]
        out[..., c] = (img[..., c] - lo) / (hi - lo)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def to_model_float(
    image: np.ndarray, low: float = 0.5, high: float = 99.8, value_range: np.ndarray | None = None
) -> np.ndarray:
    """Any image from :func:`read_image` → float32 ``(H, W, 3)`` in [0, 1]; grayscale replicated."""
    scaled = percentile_scale(image, low, high, value_range)
    if scaled.shape[2] == 1:
        scaled = np.repeat(scaled, 3, axis=2)
    return scaled


def to_uint8_display(image: np.ndarray, low: float = 0.5, high: float = 99.8) -> np.ndarray:
    """For overlays and previews: percentile-scaled uint8 RGB."""
    return (to_model_float(image, low, high) * 255.0 + 0.5).astype(np.uint8)
