"""What a prediction run produces besides the model: :class:`PredictOptions`.

One frozen value carries every choice that decides a run's files (tiling, the image's scale,
post-processing, how a file is read, the nuclei source and their segmentation, fusion, workers),
so that predict.py, the annotator method, the napari widget and the benches all pass the same
thing down the per-image pipeline, and batch_state.py can record it (--resume refuses a run with
other options). :meth:`PredictOptions.from_cfg` takes the config's part; :meth:`~PredictOptions.validate`
refuses impossible values before a model loads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from ..config import get_cfg
from ..errors import InputError
from .filters import PostprocessParams

_DEFAULTS = get_cfg()


@dataclass(frozen=True)
class PredictOptions:
    """Everything besides the model that decides what a run produces."""

    # Tile side in model-input pixels; a tile covers tile_size / input_scale pixels of the image.
    tile_size: int = _DEFAULTS.INPUT.IMAGE_SIZE
    tile_overlap: float = _DEFAULTS.INFERENCE.TILE_OVERLAP
    # Model-input pixels per image pixel: the model's training scale (data/scale.py).
    input_scale: float = 1.0
    # Fragments from two tiles are one object when their IoU inside the region both tiles saw is
    # at least this (see inference/tiling.py).
    tile_match_overlap: float = _DEFAULTS.INFERENCE.TILE_MATCH_OVERLAP
    # The model's post-processing (filters.py); None: none at all, the predictor's instances are
    # the result (the classical annotator, which cleans up its own).
    post: PostprocessParams | None = field(default_factory=PostprocessParams)
    # False: every image goes to the predictor whole, whatever its size (the classical annotator,
    # which works at the image's own pixels); True: tiles of ``tile_size`` model pixels.
    tiled: bool = True
    # By index, or by name where the file names its channels.
    channel: int | str = -1
    # The planes of an unnamed TIFF axis are a Z-stack (max-projected); see data/io.read_image.
    z_project: bool = False
    # Series (TIFF) or scene (CZI, ND2, LIF), by index or name; None: the first.
    scene: int | str | None = None
    nuclei_channel: int | str | None = None
    nuclei_masks_dir: str | None = None
    nuclei_images_dir: str | None = None
    # Microns per pixel, for every image; None: each image's own metadata, else pixels.
    pixel_size: float | None = None
    # Microns per model pixel, when the model records it: each image whose metadata gives its
    # pixel size is then resized by the ratio (unless the scale was fixed by hand).
    model_pixel_size_um: float | None = None
    # Classical nuclei segmentation: about a nucleus radius, and the smallest nucleus, in pixels,
    # or in microns (they win when the image's pixel size is known).
    nuclei_min_distance: int = 7
    nuclei_min_area: int = 30
    nuclei_radius_um: float | None = None
    nuclei_min_area_um2: float | None = None
    # A myotube with at least this many nuclei counts as fused (fusion index).
    fusion_min_nuclei: int = 2
    # Processes that measure and export while the model predicts the next image (0: all in turn).
    workers: int = 0
    progress: bool = True

    @classmethod
    def from_cfg(cls, cfg, **overrides) -> PredictOptions:
        """Tiling and post-processing from the config (``INFERENCE.*``, score threshold, channel)."""
        inf = cfg.INFERENCE
        tile = int(inf.TILE_SIZE) or int(cfg.INPUT.IMAGE_SIZE)
        base = cls(
            tile_size=tile,
            tile_overlap=float(inf.TILE_OVERLAP),
            tile_match_overlap=float(inf.TILE_MATCH_OVERLAP),
            post=PostprocessParams.from_cfg(cfg),
            channel=int(cfg.INPUT.CHANNEL),
            z_project=bool(cfg.INPUT.Z_PROJECT),
        )
        return replace(base, **overrides)

    @property
    def image_tile_size(self) -> int:
        """Tile side in pixels of the image: the model sees ``tile_size`` pixels after resizing."""
        return max(1, round(self.tile_size / self.input_scale))

    def validate(self) -> None:
        if not self.input_scale > 0:
            raise InputError(None, f"input scale must be > 0, got {self.input_scale}")
        if self.tile_size < 32:
            raise InputError(None, f"tile size must be at least 32 pixels, got {self.tile_size}")
        if not 0.0 <= self.tile_overlap < 0.9:
            raise InputError(None, f"tile overlap must be in [0, 0.9), got {self.tile_overlap}")
        if self.pixel_size is not None and self.pixel_size <= 0:
            raise InputError(None, f"pixel size must be > 0 microns, got {self.pixel_size}")
        if self.workers < 0:
            raise InputError(None, f"--workers must be 0 or more, got {self.workers}")
        if self.fusion_min_nuclei < 1:
            raise InputError(None, f"--fusion-min-nuclei must be at least 1, got {self.fusion_min_nuclei}")
        for name, value in (
            ("--nuclei-radius-um", self.nuclei_radius_um),
            ("--nuclei-min-area-um2", self.nuclei_min_area_um2),
        ):
            if value is not None and value <= 0:
                raise InputError(None, f"{name} must be > 0, got {value}")
        sources = [self.nuclei_channel is not None, bool(self.nuclei_masks_dir), bool(self.nuclei_images_dir)]
        if sum(sources) > 1:
            raise InputError(
                None,
                "give only one nuclei source: a nuclei channel, a nuclei mask folder "
                "or a nuclei image folder",
            )
        for directory in (self.nuclei_masks_dir, self.nuclei_images_dir):
            if directory and not os.path.isdir(directory):
                raise InputError(directory, "nuclei folder not found")
