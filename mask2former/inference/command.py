"""What ``predict.py`` does after parsing: flags → config → model → :func:`run_prediction`."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from ..errors import InputError, WeightsError
from .run import PredictOptions, collect_inputs, run_prediction

logger = logging.getLogger(__name__)

# Flag → config key; flags go before --opts so --opts has the last word.
FLAG_KEYS = {
    "channel": "INPUT.CHANNEL",
    "tile_size": "INFERENCE.TILE_SIZE",
    "tile_overlap": "INFERENCE.TILE_OVERLAP",
    "score_threshold": "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD",
    "device": "MODEL.DEVICE",
}


def config_overrides(flags: dict, weights: str | None, opts: Sequence[str]) -> list[str]:
    out: list[str] = []
    if weights is not None:
        out += ["MODEL.WEIGHTS", weights]
    for flag, key in FLAG_KEYS.items():
        value = flags.get(flag)
        if value is not None:
            out += [key, str(value)]
    return out + list(opts)


def resolve_weights(weights: str | None, cfg) -> str | None:
    """``None``: ``OUTPUT_DIR/model_final.pth`` of the config when it exists, else MODEL.WEIGHTS."""
    if weights is None:
        final = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
        if os.path.isfile(final):
            return final
        return None
    if weights.endswith((".pth", ".pt")) and not os.path.isfile(weights):
        raise WeightsError(weights, "weights file not found")
    return weights


def predict_command(
    config_file: str,
    inputs: Sequence[str],
    output: str,
    weights: str | None = None,
    channel: int | None = None,
    nuclei_channel: int | None = None,
    nuclei: str | None = None,
    nuclei_images: str | None = None,
    tile_size: int | None = None,
    tile_overlap: float | None = None,
    score_threshold: float | None = None,
    pixel_size: float | None = None,
    device: str | None = None,
    opts: Sequence[str] = (),
    progress: bool = True,
) -> int:
    """Run ``predict.py``; returns the exit code (1 when any image failed)."""
    from ..config import load_config, save_config

    flags = {"channel": channel, "tile_size": tile_size, "tile_overlap": tile_overlap,
             "score_threshold": score_threshold, "device": device}
    cfg = load_config(config_file, config_overrides(flags, None, opts), freeze=False)
    chosen = resolve_weights(weights, cfg)
    if chosen is not None:
        cfg.merge_from_list(["MODEL.WEIGHTS", chosen])
        # --opts MODEL.WEIGHTS still wins over --weights.
        cfg.merge_from_list(list(opts))
    cfg.freeze()

    options = PredictOptions.from_cfg(
        cfg,
        nuclei_channel=nuclei_channel,
        nuclei_masks_dir=nuclei,
        nuclei_images_dir=nuclei_images,
        pixel_size=pixel_size,
        progress=progress,
    )
    options.validate()
    # Check the inputs before spending time on loading the model.
    paths = collect_inputs(list(inputs), exclude_dir=output)
    if os.path.exists(output) and not os.path.isdir(output):
        raise InputError(output, "output exists and is not a folder")

    from .predictor import MyotubePredictor

    if not cfg.MODEL.WEIGHTS:
        logger.warning("No weights: predicting with a randomly initialised model (for tests and benchmarks only)")
    predictor = MyotubePredictor(cfg)
    logger.info(
        "Predicting %d image(s) with %s on %s; tiles %d px, overlap %.2f; score >= %.2f; output %s",
        len(paths), cfg.MODEL.WEIGHTS or "random weights", predictor.device, options.tile_size,
        options.tile_overlap, options.post.score_threshold, output,
    )
    os.makedirs(output, exist_ok=True)
    save_config(cfg, os.path.join(output, "config.yaml"))
    report = run_prediction(paths, predictor, output, options)
    n_ok, n_failed = len(report.summaries), len(report.failures)
    logger.info("%d image(s) done, %d failed; results in %s", n_ok, n_failed, output)
    return 1 if n_failed else 0
