"""Synthetic fluorescence myotube fields with exact instance ground truth.

A field imitates the myosin-heavy-chain channel of cultured skeletal muscle cells: long, curved,
tapering myotubes (some branched, many crossing), dark nuclei inside them, faint background
myoblasts, round mononuclear cells, bright debris, uneven illumination, optical blur and
Poisson-Gaussian camera noise. A DAPI-like nuclei channel comes with it: nuclei chains inside the
myotubes and scattered mononuclear nuclei.

Pixel scale: ``pixel_scale=1`` draws myotubes as wide and long as in a real 2048 px field resized
to 1500 px (median width ~23 px, lengths of several hundred px); ``size`` only sets how much of
such a field is drawn, so a 256 px field is a crop with a few tubes, not a shrunken field.

Python API: :func:`generate_field` → :class:`SyntheticField`; :func:`write_synthetic_dataset`
writes ``images/`` plus COCO JSON (or the unified four-split layout). CLI::

    python -m mask2former.data.synthetic --out DIR --num-images N --size S --seed K [--unified]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy import ndimage as ndi

logger = logging.getLogger(__name__)

DENSITY_LEVELS = {"sparse": 0.05, "medium": 0.12, "dense": 0.25}
"""Named densities: the fraction of the field covered by myotubes (real fields: 2-30 %)."""


@dataclass(frozen=True)
class SyntheticParams:
    """Appearance of a field. Defaults imitate the QA-skMCs fields at 1500 px (see docs/annotator.md)."""

    # myotube geometry (reference pixels; multiplied by pixel_scale)
    length_median: float = 520.0
    length_sigma: float = 0.55  # lognormal spread
    length_range: tuple[float, float] = (140.0, 1500.0)
    width_median: float = 40.0
    width_sigma: float = 0.55
    width_range: tuple[float, float] = (8.0, 110.0)
    taper_power: tuple[float, float] = (0.25, 0.8)  # width ~ sin(pi s)^p: larger p, longer taper
    bulges: tuple[int, int] = (0, 3)
    bulge_amplitude: tuple[float, float] = (0.15, 0.6)
    curvature: float = 1.0 / 900.0  # std of the constant curvature (1/px)
    wiggle: float = 0.012  # heading random walk per px of length (rad / sqrt(px))
    branch_probability: float = 0.3
    branch_length: tuple[float, float] = (0.2, 0.5)  # fraction of the parent
    branch_angle: tuple[float, float] = (15.0, 45.0)  # degrees from the parent's heading
    protrusions: tuple[int, int] = (0, 2)  # thin spikes leaving the tube (filopodia-like)
    edge_roughness: float = 0.12  # relative jitter of the outline
    # myosin intensities (8-bit units, before illumination and noise)
    background_level: tuple[float, float] = (0.03, 0.3)  # relative to the field's tube brightness
    tube_brightness_median: float = 55.0
    tube_brightness_sigma: float = 0.45
    field_brightness_sigma: float = 0.7  # brightness differs between fields (staining, exposure)
    edge_softness: float = 0.25  # fraction of the half-width over which intensity rises at the edge
    nucleus_darkening: tuple[float, float] = (0.45, 0.8)  # myosin left where a nucleus sits
    texture: float = 0.3  # relative amplitude of fibrous texture along the tube
    myoblasts_per_mpx: float = 6.0  # faint mononuclear cells (per 1e6 px²)
    myoblast_brightness: tuple[float, float] = (0.03, 0.15)  # relative to the median tube
    round_cells_per_mpx: float = 2.5  # small bright round mononuclear cells
    debris_per_mpx: float = 10.0
    illumination_falloff: tuple[float, float] = (0.0, 0.35)  # vignetting strength
    psf_sigma: float = 1.0
    gain: tuple[float, float] = (1.5, 8.0)  # photons per 8-bit unit (Poisson noise)
    read_noise: tuple[float, float] = (0.5, 1.5)  # Gaussian read noise (8-bit units)
    # nuclei channel (DAPI-like)
    nucleus_size: tuple[float, float] = (8.0, 5.5)  # semi-axes (reference px)
    nucleus_spacing: tuple[float, float] = (30.0, 110.0)  # along the tube axis
    nucleus_brightness: tuple[float, float] = (110.0, 210.0)
    free_nuclei_per_mpx: float = 90.0
    dapi_background: tuple[float, float] = (2.0, 10.0)
    max_tubes: int = 300
    # Appearance added for the base model's fields (``REALISTIC``). The defaults switch each one
    # off and draw no random numbers for it, so a seed gives the same field as before they existed.
    profile_steps: tuple[float, float, float, float] = (
        0.45,
        0.25,
        0.18,
        0.12,
    )  # cross-section: edge, then inward
    end_fade: tuple[float, float] = (0.0, 0.0)  # fraction of the length over which each end fades out
    max_branches: int = 2
    branch_width: tuple[float, float] = (0.5, 0.8)  # branch root width relative to the parent
    spread_probability: float = 0.0  # a flat, bright, wide cell body on the tube (spread cytoplasm)
    spread_brightness: tuple[float, float] = (1.4, 2.4)  # relative to the tube
    parallel_probability: float = 0.0  # a new tube laid alongside an earlier one, touching it
    nucleus_cluster_probability: float = 0.0  # per tube: one packed cluster of nuclei
    nucleus_cluster_size: tuple[int, int] = (4, 12)
    illumination_variation: float = 0.07  # std of the slow multiplicative illumination pattern
    psf_sigma_range: tuple[float, float] | None = None  # per field, instead of psf_sigma


REALISTIC = SyntheticParams(
    # Widths, lengths and branching matched to the annotator's tubes on real fields
    # (bench/results/realism.json): real tubes branch less often than the classic ones.
    length_median=450.0,
    length_range=(80.0, 1500.0),
    width_median=36.0,
    width_sigma=0.7,
    width_range=(5.0, 130.0),
    taper_power=(0.25, 0.8),
    protrusions=(0, 0),
    edge_roughness=0.08,
    branch_probability=0.25,
    max_branches=2,
    branch_width=(0.55, 0.95),
    background_level=(0.0, 0.2),
    tube_brightness_median=48.0,
    texture=0.15,
    edge_softness=0.15,
    profile_steps=(0.7, 0.16, 0.09, 0.05),
    end_fade=(0.05, 0.25),
    spread_probability=0.2,
    parallel_probability=0.2,
    nucleus_cluster_probability=0.4,
    tube_brightness_sigma=0.5,
    illumination_falloff=(0.0, 0.6),
    illumination_variation=0.12,
    psf_sigma_range=(0.6, 2.2),
    gain=(1.0, 10.0),
)
"""Fields closer to real cultures (docs/base_model.md): wide, flat-topped tubes with soft ends,
more and wider branches, spread bright cell bodies, tubes touching side by side, packed nuclear
clusters, stronger uneven illumination, and blur and noise that vary between fields."""

GENERATOR_PRESETS = {"classic": SyntheticParams(), "realistic": REALISTIC}
"""Named generator settings: ``classic`` (the default of :func:`generate_field`) and ``realistic``
(what the shipped base model was pretrained on)."""


def generator_params(name: str | SyntheticParams | None) -> SyntheticParams:
    """Settings by preset name (or passed through)."""
    if name is None:
        return SyntheticParams()
    if isinstance(name, SyntheticParams):
        return name
    if name not in GENERATOR_PRESETS:
        raise ValueError(f"unknown generator preset {name!r} (choose {', '.join(GENERATOR_PRESETS)})")
    return GENERATOR_PRESETS[name]


@dataclass
class SyntheticField:
    """One generated field. ``masks`` hold one myotube each (overlaps allowed)."""

    image: np.ndarray  # (H, W) uint8 or uint16 myosin channel
    masks: np.ndarray  # (N, H, W) bool
    nuclei_image: np.ndarray  # (H, W) same dtype, DAPI-like
    nuclei_labels: np.ndarray  # (H, W) int32, 0 = background, k = nucleus k
    density: float  # target covered fraction
    branched: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # (N,) has a branch
    widths: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (N,) maximum width (px)
    lengths: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (N,) centre-line length (px)

    @property
    def nuclei_masks(self) -> np.ndarray:
        """(K, H, W) bool, one per nucleus (decoded from ``nuclei_labels``)."""
        k = int(self.nuclei_labels.max())
        return self.nuclei_labels[None] == np.arange(1, k + 1)[:, None, None]

    @property
    def coverage(self) -> float:
        return float(self.masks.any(axis=0).mean()) if len(self.masks) else 0.0


def density_value(density: float | str) -> float:
    if isinstance(density, str):
        if density not in DENSITY_LEVELS:
            raise ValueError(
                f"unknown density '{density}' (choose {', '.join(DENSITY_LEVELS)} or a fraction)"
            )
        return DENSITY_LEVELS[density]
    value = float(density)
    if not 0.0 < value < 0.9:
        raise ValueError(f"density must be a covered fraction in (0, 0.9), got {value}")
    return value


# --------------------------------------------------------------------------- geometry


@dataclass
class _Tube:
    paths: list[np.ndarray]  # centre lines (K, 2) x, y, main first
    radii: list[np.ndarray]  # (K,) half-widths
    brightness: float
    branched: bool
    width: float
    length: float
    gains: list[float] = field(default_factory=list)  # brightness of each path relative to the tube
    end_fade: float = 0.0  # fraction of each path's length over which its free ends fade


def _centre_line(
    rng: np.random.Generator,
    start: np.ndarray,
    heading: float,
    length: float,
    p: SyntheticParams,
    scale: float,
) -> np.ndarray:
    step = 2.0 * scale
    n = max(3, int(length / step))
    kappa = rng.normal(0.0, p.curvature / scale)
    turns = kappa * step + rng.normal(0.0, p.wiggle * np.sqrt(step / scale), n)
    headings = heading + np.cumsum(turns)
    steps = np.stack([np.cos(headings), np.sin(headings)], axis=1) * step
    return start + np.concatenate([[np.zeros(2)], np.cumsum(steps, axis=0)[:-1]])


def _width_profile(rng: np.random.Generator, n: int, half_width: float, p: SyntheticParams) -> np.ndarray:
    s = np.linspace(0.0, 1.0, n)
    power = rng.uniform(*p.taper_power)
    # Asymmetric spindle: the widest point wanders away from the middle.
    peak = rng.uniform(0.3, 0.7)
    warped = np.where(s < peak, 0.5 * s / peak, 0.5 + 0.5 * (s - peak) / (1 - peak))
    profile = np.sin(np.pi * warped) ** power
    for _ in range(rng.integers(p.bulges[0], p.bulges[1] + 1)):
        centre, spread = rng.uniform(0.15, 0.85), rng.uniform(0.03, 0.1)
        profile *= 1.0 + rng.uniform(*p.bulge_amplitude) * np.exp(-0.5 * ((s - centre) / spread) ** 2)
    profile *= 1.0 + 0.08 * np.sin(2 * np.pi * (rng.uniform(1, 4) * s + rng.uniform()))
    # Ragged outline: correlated jitter over a few pixels of length.
    jitter = ndi.gaussian_filter1d(rng.standard_normal(n), 2.5, mode="nearest")
    profile *= 1.0 + p.edge_roughness * jitter / (jitter.std() + 1e-6)
    return np.maximum(half_width * profile / profile.max(), 1.0)


def _make_tube(
    rng: np.random.Generator, h: int, w: int, p: SyntheticParams, scale: float, brightness: float
) -> _Tube:
    length = float(np.clip(p.length_median * np.exp(rng.normal(0, p.length_sigma)), *p.length_range)) * scale
    width = float(np.clip(p.width_median * np.exp(rng.normal(0, p.width_sigma)), *p.width_range)) * scale
    # Thin tubes are short and thick ones long, as in real cultures.
    length *= float(np.clip((width / (p.width_median * scale)) ** 0.5, 0.6, 1.5))
    anchor = rng.uniform([0, 0], [w, h])
    heading = rng.uniform(0, 2 * np.pi)
    before = rng.uniform(0.1, 0.9) * length
    back = _centre_line(rng, anchor, heading + np.pi, before, p, scale)[::-1]
    ahead = _centre_line(rng, anchor, heading, length - before, p, scale)
    main = np.concatenate([back, ahead[1:]])
    radii = [_width_profile(rng, len(main), width / 2, p)]
    paths = [main]
    branched = False
    if rng.random() < p.branch_probability:
        for _ in range(rng.integers(1, p.max_branches + 1)):
            k = int(rng.uniform(0.25, 0.75) * len(main))
            tangent = main[min(k + 2, len(main) - 1)] - main[max(k - 2, 0)]
            angle = np.arctan2(tangent[1], tangent[0]) + rng.choice([-1, 1]) * np.deg2rad(
                rng.uniform(*p.branch_angle)
            )
            branch = _centre_line(rng, main[k], angle, rng.uniform(*p.branch_length) * length, p, scale)
            r0 = radii[0][k] * rng.uniform(*p.branch_width)
            taper = np.sin(np.linspace(np.pi / 2, np.pi, len(branch))) ** rng.uniform(*p.taper_power)
            paths.append(branch)
            radii.append(np.maximum(r0 * taper, 1.0))
            branched = True
    for _ in range(rng.integers(p.protrusions[0], p.protrusions[1] + 1)):
        k = int(rng.uniform(0.1, 0.9) * len(main))
        tangent = main[min(k + 2, len(main) - 1)] - main[max(k - 2, 0)]
        angle = np.arctan2(tangent[1], tangent[0]) + rng.choice([-1, 1]) * np.deg2rad(rng.uniform(30, 90))
        spike = _centre_line(rng, main[k], angle, radii[0][k] + rng.uniform(15, 60) * scale, p, scale)
        paths.append(spike)
        radii.append(np.linspace(rng.uniform(2.0, 4.5) * scale, 1.0, len(spike)))
    gains = [1.0] * len(paths)
    if p.spread_probability > 0 and rng.random() < p.spread_probability:
        # Spread cytoplasm: a short, very wide, flat and bright lobe sitting on the tube.
        k = int(rng.uniform(0.1, 0.9) * len(main))
        tangent = main[min(k + 2, len(main) - 1)] - main[max(k - 2, 0)]
        angle = np.arctan2(tangent[1], tangent[0]) + rng.normal(0, 0.6)
        lobe_length = rng.uniform(1.0, 2.5) * width
        lobe = _centre_line(
            rng,
            main[k] - 0.5 * lobe_length * np.array([np.cos(angle), np.sin(angle)]),
            angle,
            lobe_length,
            p,
            scale,
        )
        r_lobe = max(radii[0][k], 0.3 * width) * rng.uniform(1.3, 2.4)
        paths.append(lobe)
        radii.append(np.maximum(r_lobe * np.sin(np.linspace(0.15, np.pi - 0.15, len(lobe))) ** 0.35, 1.0))
        gains.append(float(rng.uniform(*p.spread_brightness)))
    fade = float(rng.uniform(*p.end_fade)) if p.end_fade[1] > 0 else 0.0
    return _Tube(paths, radii, brightness, branched, width, length, gains, fade)


def _parallel_tube(
    rng: np.random.Generator, neighbour: _Tube, p: SyntheticParams, scale: float, brightness: float
) -> _Tube:
    """A tube laid alongside part of ``neighbour``'s centre line, touching it: the contacts that
    a model must not merge."""
    main, r_main = neighbour.paths[0], neighbour.radii[0]
    n = len(main)
    span = int(np.clip(rng.uniform(0.4, 1.0) * n, 3, n))
    start = int(rng.integers(0, n - span + 1))
    path, r_near = main[start : start + span], r_main[start : start + span]
    width = float(np.clip(p.width_median * np.exp(rng.normal(0, p.width_sigma)), *p.width_range)) * scale
    radii = _width_profile(rng, span, width / 2, p)
    tangent = np.gradient(ndi.gaussian_filter1d(path, 3.0, axis=0, mode="nearest"), axis=0)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1) / (
        np.linalg.norm(tangent, axis=1, keepdims=True) + 1e-9
    )
    # Touching (0.85) to just apart (1.1); the gap drifts slowly along the tube.
    gap = ndi.gaussian_filter1d(rng.uniform(0.85, 1.1, span), 8.0, mode="nearest")
    side = rng.choice([-1.0, 1.0])
    shifted = path + side * normal * ((r_near + radii) * gap)[:, None]
    fade = float(rng.uniform(*p.end_fade)) if p.end_fade[1] > 0 else 0.0
    length = float(np.sum(np.linalg.norm(np.diff(shifted, axis=0), axis=1)))
    return _Tube([shifted], [radii], brightness, False, width, length, [1.0], fade)


def _draw_discs(
    canvas: np.ndarray, path: np.ndarray, radii: np.ndarray, offset: np.ndarray, factor: float = 1.0, value=1
) -> None:
    """Union of discs along a centre line: a tube of varying width, drawn with ``value`` (one
    number, or one per point of the path)."""
    shift = 2  # quarter-pixel precision
    r = radii * factor
    # Discs a third of their radius apart overlap into a smooth outline; closer ones add nothing.
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
    keep = [0]
    for i in range(1, len(path)):
        if arc[i] - arc[keep[-1]] >= max(1.0, r[i] / 3):
            keep.append(i)
    if keep[-1] != len(path) - 1:
        keep.append(len(path) - 1)
    pts = np.round((path[keep] - offset) * (1 << shift)).astype(np.int64)
    rr = np.maximum(np.round(r[keep] * (1 << shift)), 1 << shift).astype(np.int64)
    values = np.broadcast_to(np.asarray(value, dtype=float), (len(path),))[keep]
    # Brightest last: a pixel takes the largest value of the discs covering it, so a faded end
    # never darkens the wider middle it overlaps.
    order = np.argsort(values, kind="stable")
    for (x, y), radius, v in zip(pts[order].tolist(), rr[order].tolist(), values[order].tolist()):
        cv2.circle(canvas, (x, y), radius, v, -1, cv2.LINE_8, shift)


# --------------------------------------------------------------------------- rendering


def generate_field(
    size: int | tuple[int, int] = 256,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
    density: float | str = "medium",
    bit_depth: int = 8,
    pixel_scale: float = 1.0,
    params: SyntheticParams | None = None,
) -> SyntheticField:
    """Generate one field; the same ``seed`` (or an equal ``rng`` state) gives identical output.

    ``size``: side (or (height, width)) in pixels. ``density``: fraction of the field covered by
    myotubes or one of ``DENSITY_LEVELS``. ``bit_depth`` 8 → uint8 (0-255); 16 → uint16 holding
    12-bit camera data (0-4095). ``pixel_scale`` multiplies every length (see module docstring).
    """
    if rng is None:
        rng = np.random.default_rng(seed)
    p = params or SyntheticParams()
    h, w = _field_shape(size, bit_depth)
    target = density_value(density)
    scale = float(pixel_scale)
    look = _draw_appearance(rng, h, w, p)

    signal = np.zeros((h, w), np.float32)  # myosin, 8-bit units
    nuclei = _Nuclei(np.zeros((h, w), np.float32), np.zeros((h, w), np.int32))
    attenuation = np.ones((h, w), np.float32)  # myosin is displaced where nuclei sit
    texture = _texture(rng, h, w, p, scale)
    crops, tubes = _place_tubes(
        rng, h, w, p, scale, target, look.brightness_median, signal, texture, nuclei, attenuation
    )

    _background_cells(rng, signal, h, w, p, scale, look.brightness_median)
    _free_nuclei(rng, nuclei, h, w, p, scale)
    signal *= cv2.GaussianBlur(attenuation, (0, 0), 0.7 * scale)

    image = _camera(rng, signal, look.background, look.gain, look, scale, bit_depth)
    dapi_bg = rng.uniform(*p.dapi_background)
    nuclei_image = _camera(rng, nuclei.signal, dapi_bg, look.gain * 2, look, scale, bit_depth)
    return SyntheticField(
        image=image,
        masks=_mask_stack(crops, h, w),
        nuclei_image=nuclei_image,
        nuclei_labels=nuclei.labels,
        density=target,
        branched=np.array([t.branched for t in tubes], bool),
        widths=np.array([t.width for t in tubes], float),
        lengths=np.array([t.length for t in tubes], float),
    )


def _field_shape(size: int | tuple[int, int], bit_depth: int) -> tuple[int, int]:
    """(height, width) of a field of ``size``; ValueError for a field too small or a bad bit depth."""
    h, w = (size, size) if np.isscalar(size) else (int(size[0]), int(size[1]))
    if h < 16 or w < 16:
        raise ValueError(f"field size must be at least 16x16, got {h}x{w}")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    return h, w


@dataclass
class _Appearance:
    """Field-wide look: tube brightness, background, sensor gain and noise, illumination, blur."""

    brightness_median: float
    background: float
    gain: float
    read_noise: float
    illumination: np.ndarray
    psf_sigma: float


def _draw_appearance(rng: np.random.Generator, h: int, w: int, p: SyntheticParams) -> _Appearance:
    """The field's look, drawn before anything else so the stream of random numbers is fixed per seed."""
    brightness_median = p.tube_brightness_median * np.exp(rng.normal(0, p.field_brightness_sigma))
    background = brightness_median * rng.uniform(*p.background_level)
    gain = np.exp(rng.uniform(np.log(p.gain[0]), np.log(p.gain[1])))
    read_noise = rng.uniform(*p.read_noise)
    illumination = _illumination(rng, h, w, p)
    psf_sigma = float(rng.uniform(*p.psf_sigma_range)) if p.psf_sigma_range else p.psf_sigma
    return _Appearance(brightness_median, background, gain, read_noise, illumination, psf_sigma)


def _mask_stack(crops: list[tuple[np.ndarray, tuple[int, int, int, int]]], h: int, w: int) -> np.ndarray:
    """(N, h, w) bool: each tube's mask, cut out inside its box, put back in the full field."""
    stack = np.zeros((len(crops), h, w), bool)
    for k, (crop, (y0, y1, x0, x1)) in enumerate(crops):
        stack[k, y0:y1, x0:x1] = crop
    return stack


def _place_tubes(
    rng,
    h,
    w,
    p: SyntheticParams,
    scale,
    target,
    brightness_median,
    signal,
    texture,
    nuclei: _Nuclei,
    attenuation,
):
    """Draw tubes (and their nuclei) into ``signal`` until they cover ``target`` of the field: each
    tube's mask inside its box with the box, and the tubes."""
    crops: list[tuple[np.ndarray, tuple[int, int, int, int]]] = []
    tubes: list[_Tube] = []
    covered = np.zeros((h, w), bool)
    n_covered = 0
    attempts = 0
    while n_covered < target * h * w and len(crops) < p.max_tubes and attempts < 4 * p.max_tubes:
        attempts += 1
        tube_brightness = brightness_median * np.exp(rng.normal(0, p.tube_brightness_sigma))
        if tubes and p.parallel_probability > 0 and rng.random() < p.parallel_probability:
            tube = _parallel_tube(rng, tubes[int(rng.integers(len(tubes)))], p, scale, tube_brightness)
        else:
            tube = _make_tube(rng, h, w, p, scale, tube_brightness)
        drawn = _render_tube(tube, signal, texture, p)
        if drawn is None:
            continue
        crop, (y0, y1, x0, x1) = drawn
        if crop.sum() < max(30.0, 1.5 * (tube.width**2)):
            # Only a sliver of the tube lies inside the field: too little to be an instance, but
            # it stays in the image, unannotated, like a tube cut by the edge of a real field.
            continue
        crops.append(drawn)
        tubes.append(tube)
        window = covered[y0:y1, x0:x1]
        n_covered += int((crop & ~window).sum())
        window |= crop
        _nuclei_in_tube(rng, tube, nuclei, attenuation, h, w, p, scale)
    return crops, tubes


def _illumination(rng: np.random.Generator, h: int, w: int, p: SyntheticParams) -> np.ndarray:
    """Smooth multiplicative field: off-centre vignetting times slow random variation."""
    # Smooth by construction, so it is computed on a coarse grid and upsampled.
    gh, gw = max(2, h // 16), max(2, w // 16)
    yy, xx = np.mgrid[0:gh, 0:gw].astype(np.float32)
    yy *= h / gh
    xx *= w / gw
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    r2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / float(max(h, w) ** 2)
    vignette = 1.0 - rng.uniform(*p.illumination_falloff) * r2
    coarse = cv2.resize(
        rng.normal(0.0, p.illumination_variation, (4, 4)).astype(np.float32),
        (gw, gh),
        interpolation=cv2.INTER_CUBIC,
    )
    field = cv2.resize((vignette * (1.0 + coarse)).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(field, 0.4, 1.3)


def _render_tube(tube: _Tube, signal: np.ndarray, texture: np.ndarray, p: SyntheticParams):
    """Add the tube's intensity to ``signal``; return its mask inside its bounding box and the box
    (y0, y1, x0, x1), or None when it misses the field."""
    h, w = signal.shape
    pts = np.concatenate(tube.paths)
    rmax = max(r.max() for r in tube.radii)
    x0, y0 = np.floor(pts.min(axis=0) - rmax - 2).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0) + rmax + 3).astype(int)
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if cx0 >= cx1 or cy0 >= cy1:
        return None
    offset = np.array([cx0, cy0], float)
    ch, cw = cy1 - cy0, cx1 - cx0
    # Concentric layers (outermost drawn first, inner ones overwrite it with higher codes) give
    # the rounded cross-section of a cylinder without a distance transform per tube.
    layers = (1.0, 1.0 - p.edge_softness, 1.0 - 2 * p.edge_softness, 0.35)
    level = np.cumsum([0.0, *p.profile_steps]).astype(np.float32)
    codes = np.zeros((ch, cw), np.uint8)
    for k, factor in enumerate(layers, start=1):
        for path, radii in zip(tube.paths, tube.radii):
            _draw_discs(codes, path, radii, offset, factor, value=k)
    outer = codes > 0
    if not outer.any():
        return None
    profile = level[codes]
    profile *= texture[cy0:cy1, cx0:cx1]
    if tube.end_fade > 0 or any(g != 1.0 for g in tube.gains):
        profile *= _along_tube(tube, (ch, cw), offset)
    signal[cy0:cy1, cx0:cx1] += tube.brightness * profile
    return outer, (cy0, cy1, cx0, cx1)


def _along_tube(tube: _Tube, shape: tuple[int, int], offset: np.ndarray) -> np.ndarray:
    """Brightness along the tube: free ends fading out (soft ends, main tube at both ends, branches
    at their tip) and each path's own gain (bright spread bodies), drawn in path order."""
    along = np.ones(shape, np.float32)
    for k, (path, radii) in enumerate(zip(tube.paths, tube.radii)):
        gain = tube.gains[k] if k < len(tube.gains) else 1.0
        values = np.full(len(path), gain)
        if tube.end_fade > 0:
            arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
            ramp = tube.end_fade * max(arc[-1], 1.0)
            to_end = arc[-1] - arc if k else np.minimum(arc, arc[-1] - arc)
            t = np.clip(to_end / ramp, 0.0, 1.0)
            values *= 0.25 + 0.75 * t * t * (3 - 2 * t)  # smoothstep from a quarter of the brightness
        _draw_discs(along, path, radii, offset, 1.05, values)
    return along


def _texture(rng: np.random.Generator, h: int, w: int, p: SyntheticParams, scale: float) -> np.ndarray:
    """Blotchy, slightly grainy intensity variation inside myotubes (uneven myosin)."""
    cell = max(4, int(40 * scale))
    small = rng.normal(0.0, 1.0, (max(2, h // cell + 2), max(2, w // cell + 2))).astype(np.float32)
    blotches = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.standard_normal((h, w), dtype=np.float32), (0, 0), 1.2 * scale)
    fine *= 1.0 / (fine.std() + 1e-6)
    return np.clip(1.0 + p.texture * blotches + 0.5 * p.texture * fine, 0.3, 2.0)


def _ellipse(canvas: np.ndarray, centre, axes, angle_deg: float, value) -> None:
    shift = 2
    cv2.ellipse(
        canvas,
        (int(round(centre[0] * 4)), int(round(centre[1] * 4))),
        (max(1, int(round(axes[0] * 4))), max(1, int(round(axes[1] * 4)))),
        angle_deg,
        0,
        360,
        value,
        -1,
        cv2.LINE_8,
        shift,
    )


def _nuclei_in_tube(rng, tube: _Tube, nuclei: _Nuclei, attenuation, h, w, p: SyntheticParams, scale) -> None:
    """Chains of nuclei along the tube axis, clustered the way myonuclei are."""
    main, radii = tube.paths[0], tube.radii[0]
    seg = np.linalg.norm(np.diff(main, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    s = rng.uniform(0, p.nucleus_spacing[1] * scale)
    while s < arc[-1]:
        k = int(np.searchsorted(arc, s))
        k = min(k, len(main) - 1)
        if radii[k] >= 4 * scale:
            centre = main[k]
            tangent = main[min(k + 1, len(main) - 1)] - main[max(k - 1, 0)]
            angle = np.degrees(np.arctan2(tangent[1], tangent[0])) + rng.normal(0, 12)
            centre = centre + rng.normal(0, 0.25 * radii[k], 2)
            a = min(p.nucleus_size[0] * scale * rng.uniform(0.8, 1.25), 0.9 * radii[k] * 2)
            b = min(p.nucleus_size[1] * scale * rng.uniform(0.8, 1.2), 0.8 * radii[k])
            nuclei.add(rng, centre, (a, b), angle, p)
            if 0 <= centre[0] < w and 0 <= centre[1] < h:
                _ellipse(attenuation, centre, (a, b), angle, float(rng.uniform(*p.nucleus_darkening)))
        gap = rng.uniform(*p.nucleus_spacing) * scale
        s += gap * (0.45 if rng.random() < 0.5 else 1.0)  # clusters of two or three
    if p.nucleus_cluster_probability > 0 and rng.random() < p.nucleus_cluster_probability:
        wide = np.flatnonzero(radii >= 6 * scale)
        if len(wide):
            k = int(rng.choice(wide))
            tangent = main[min(k + 1, len(main) - 1)] - main[max(k - 1, 0)]
            theta = np.arctan2(tangent[1], tangent[0])
            axis, across = np.array([np.cos(theta), np.sin(theta)]), np.array([-np.sin(theta), np.cos(theta)])
            for _ in range(int(rng.integers(p.nucleus_cluster_size[0], p.nucleus_cluster_size[1] + 1))):
                centre = (
                    main[k] + axis * rng.normal(0, 1.2 * radii[k]) + across * rng.normal(0, 0.35 * radii[k])
                )
                a = min(p.nucleus_size[0] * scale * rng.uniform(0.7, 1.1), 0.9 * radii[k] * 2)
                b = min(p.nucleus_size[1] * scale * rng.uniform(0.7, 1.1), 0.8 * radii[k])
                angle = np.degrees(theta) + rng.normal(0, 25)
                nuclei.add(rng, centre, (a, b), angle, p)
                if 0 <= centre[0] < w and 0 <= centre[1] < h:
                    _ellipse(attenuation, centre, (a, b), angle, float(rng.uniform(*p.nucleus_darkening)))


@dataclass
class _Nuclei:
    signal: np.ndarray  # (H, W) float32, 8-bit units
    labels: np.ndarray  # (H, W) int32
    count: int = 0

    def add(self, rng: np.random.Generator, centre, axes, angle: float, p: SyntheticParams) -> None:
        h, w = self.labels.shape
        if not (-axes[0] <= centre[0] < w + axes[0] and -axes[0] <= centre[1] < h + axes[0]):
            return
        self.count += 1
        _ellipse(self.labels, centre, axes, angle, self.count)
        _ellipse(self.signal, centre, axes, angle, float(rng.uniform(*p.nucleus_brightness)))


def _free_nuclei(rng, nuclei: _Nuclei, h, w, p: SyntheticParams, scale) -> None:
    n = rng.poisson(p.free_nuclei_per_mpx * h * w / 1e6)
    for _ in range(n):
        centre = rng.uniform([0, 0], [w, h])
        axes = (
            p.nucleus_size[0] * scale * rng.uniform(0.8, 1.3),
            p.nucleus_size[1] * scale * rng.uniform(0.8, 1.3),
        )
        nuclei.add(rng, centre, axes, rng.uniform(0, 180), p)


def _background_cells(rng, signal, h, w, p: SyntheticParams, scale, brightness_median) -> None:
    """Faint spread myoblasts, small bright round cells and debris: visible, but not myotubes."""
    area = h * w / 1e6
    for _ in range(rng.poisson(p.myoblasts_per_mpx * area)):
        centre = rng.uniform([0, 0], [w, h])
        axes = (rng.uniform(30, 110) * scale, rng.uniform(12, 40) * scale)
        _blob(
            rng,
            signal,
            centre,
            axes,
            rng.uniform(0, 180),
            brightness_median * rng.uniform(*p.myoblast_brightness),
            scale,
            0.5,
        )
    for _ in range(rng.poisson(p.round_cells_per_mpx * area)):
        centre = rng.uniform([0, 0], [w, h])
        r = rng.uniform(7, 16) * scale
        _blob(
            rng,
            signal,
            centre,
            (r, r * rng.uniform(0.7, 1.0)),
            rng.uniform(0, 180),
            brightness_median * rng.uniform(0.8, 2.0),
            scale,
            0.15,
        )
    for _ in range(rng.poisson(p.debris_per_mpx * area)):
        centre = rng.uniform([0, 0], [w, h])
        r = rng.uniform(0.8, 3.5) * scale
        _ellipse(signal, centre, (r, r), 0.0, float(brightness_median * rng.uniform(1.0, 4.0)))


def _blob(rng, signal, centre, axes, angle, value, scale, irregularity) -> None:
    """An irregular cell body: an ellipse with a ragged outline and soft edges."""
    pad = int(max(axes) * 1.6 + 4)
    x0, y0 = int(centre[0]) - pad, int(centre[1]) - pad
    size = 2 * pad + 1
    # The outline is shaped on a coarse grid (cheap blurs), then smoothly upsampled.
    step = max(1, int(max(axes) / 12))
    n = max(8, size // step)
    k = n / size
    local = np.zeros((n, n), np.float32)
    _ellipse(local, ((centre[0] - x0) * k, (centre[1] - y0) * k), (axes[0] * k, axes[1] * k), angle, 1.0)
    if irregularity > 0:
        noise = cv2.GaussianBlur(rng.standard_normal((n, n), dtype=np.float32), (0, 0), 3.0)
        noise /= noise.std() + 1e-6
        local = cv2.GaussianBlur(local, (0, 0), 2.4)
        local = (local + irregularity * 0.25 * noise > 0.5).astype(np.float32)
    local = cv2.resize(local, (size, size), interpolation=cv2.INTER_LINEAR)
    local = cv2.GaussianBlur(local, (0, 0), 1.5 * scale) * value
    ys0, xs0 = max(0, y0), max(0, x0)
    ys1, xs1 = min(signal.shape[0], y0 + size), min(signal.shape[1], x0 + size)
    if ys0 < ys1 and xs0 < xs1:
        signal[ys0:ys1, xs0:xs1] += local[ys0 - y0 : ys1 - y0, xs0 - x0 : xs1 - x0]


def _camera(rng, signal, background, gain, look: _Appearance, scale, bit_depth) -> np.ndarray:
    """Optics and sensor: blur, uneven illumination, offset, Poisson-Gaussian noise, clipping.

    ``background`` and ``gain`` are the channel's; blur, illumination and read noise the field's.
    """
    optical = cv2.GaussianBlur(signal, (0, 0), look.psf_sigma * scale) + background
    optical *= look.illumination
    full = 255.0 if bit_depth == 8 else 4095.0
    units = full / 255.0
    # Shot noise (variance = signal / gain) plus read noise; the Gaussian approximation of the
    # Poisson law is exact enough at these photon counts and ten times faster to draw.
    sigma = np.sqrt(np.maximum(optical, 0) / gain + look.read_noise**2)
    noisy = (optical + sigma * rng.standard_normal(optical.shape, dtype=np.float32)) * units
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return np.clip(np.rint(noisy), 0, full).astype(dtype)


__all__ = [
    "DENSITY_LEVELS",
    "GENERATOR_PRESETS",
    "REALISTIC",
    "generator_params",
    "SyntheticField",
    "SyntheticParams",
    "density_value",
    "generate_field",
]
