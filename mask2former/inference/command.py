"""What ``predict.py`` does after parsing: flags → config → model → :func:`run_prediction`
(:func:`predict_command`), the classical annotator in the model's place (:func:`annotator_command`,
``--method annotator``), and ``--merge`` of shard folders."""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import yaml

from .. import __version__
from ..annotate import AnnotatorParams
from ..config import CfgNode, load_config, save_config
from ..data.scale import prediction_scale
from ..errors import InputError, WeightsError
from ..modeling.weights import FINAL, checkpoint_config
from ..utils.fileio import atomic_write_text
from ..utils.processes import default_workers
from ..utils.resumable import (
    OpenedOutput,
    Shard,
    StopRequests,
    check_shards,
    link_shards,
    make_state,
    open_output,
    stopped,
)
from .batch_state import copy_config, plan_batch, prediction_settings, weights_identity, write_run_files
from .inputs import OUTPUT_SUFFIXES, RUN_FILES, collect_inputs, output_names
from .options import PredictOptions
from .run import run_prediction

logger = logging.getLogger(__name__)

# Flag → config keys; flags go before --opts so --opts has the last word.
FLAG_KEYS = {
    "channel": ("INPUT.CHANNEL",),
    "scale": ("INFERENCE.INPUT_SCALE",),
    "z_project": ("INPUT.Z_PROJECT",),
    "tile_size": ("INFERENCE.TILE_SIZE",),
    "tile_overlap": ("INFERENCE.TILE_OVERLAP",),
    # The threshold the user asks for is the one in force, with test-time augmentation or without.
    "score_threshold": ("MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", "TEST.AUG.OBJECT_MASK_THRESHOLD"),
    "tta": ("TEST.AUG.ENABLED",),
    "device": ("MODEL.DEVICE",),
}


def config_overrides(flags: dict, opts: Sequence[str]) -> list[str]:
    """Flags as KEY VALUE pairs, then ``--opts`` (which have the last word)."""
    out: list[str] = []
    for flag, keys in FLAG_KEYS.items():
        value = flags.get(flag)
        if value is not None:
            for key in keys:
                out += [key, str(value)]
    return out + list(opts)


def prediction_config(config_file: str | None, weights: str | None, overrides: Sequence[str] = ()) -> CfgNode:
    """The unfrozen config to predict with: ``config_file`` with ``overrides``, or without a config
    file the one ``weights`` carries (a named model such as ``myotube-base``, or a project
    ``model_final.pth``: the architecture and inference settings it was trained with)."""
    if config_file:
        return load_config(config_file, overrides, freeze=False)
    if not weights:
        raise InputError(
            None,
            "give --config-file, or --weights naming a model that carries its config "
            "(a named model such as myotube-base, or a model_final.pth)",
        )
    return load_config(None, overrides, freeze=False, base=checkpoint_config(weights))


def choose_weights(weights: str | None, cfg) -> str | None:
    """``None``: ``OUTPUT_DIR/model_final.pth`` of the config when it exists, else MODEL.WEIGHTS."""
    if weights is None:
        final = os.path.join(cfg.OUTPUT_DIR, FINAL)
        if os.path.isfile(final):
            return final
        return None
    if weights.endswith((".pth", ".pt")) and not os.path.isfile(weights):
        raise WeightsError(weights, "weights file not found")
    return weights


def _index_or_name(channel: int | str | None) -> tuple[int | None, str | None]:
    """``1`` / ``"1"`` is an index; ``"MyHC"`` a name, resolved per file."""
    if channel is None or isinstance(channel, int):
        return channel, None
    text = str(channel).strip()
    return (int(text), None) if text.lstrip("-").isdigit() else (None, text)


def recorded_scale(cfg):
    """The training scale stored with ``cfg``'s weights (None for weights without one)."""
    # Imported here, not at the top: bad inputs are refused before torch and transformers load.
    from .predictor import input_scale_for_weights

    return input_scale_for_weights(cfg.MODEL.WEIGHTS)


def resolve_input_scale(cfg, pixel_size: float | None = None) -> tuple[float, str]:
    """Model-input pixels per image pixel for ``cfg``'s weights, and why (see data/scale.py)."""
    return prediction_scale(recorded_scale(cfg), cfg.INFERENCE.INPUT_SCALE, pixel_size)


def prediction_options(cfg, pixel_size: float | None = None, **option_overrides) -> PredictOptions:
    """The options ``predict.py`` predicts ``cfg``'s weights with, the scale rule inside: images
    resized to the model's training scale, or, when the model records its microns per pixel and an
    image states its own (``pixel_size``, or the file's metadata at prediction), to the model's
    microns per pixel; INFERENCE.INPUT_SCALE > 0 (``--scale``) is the scale for every image. Logs
    the scale and why; the weights' record is read once."""
    recorded = recorded_scale(cfg)
    input_scale, why = prediction_scale(recorded, cfg.INFERENCE.INPUT_SCALE, pixel_size)
    logger.info("Pixel scale: images are resized by %.4g before tiling: %s", input_scale, why)
    by_hand = cfg.INFERENCE.INPUT_SCALE > 0
    return PredictOptions.from_cfg(
        cfg,
        input_scale=input_scale,
        pixel_size=pixel_size,
        model_pixel_size_um=None if by_hand or recorded is None else recorded.pixel_size_um,
        **option_overrides,
    )


def build_predictor(
    cfg, pixel_size: float | None = None, options: PredictOptions | None = None, **option_overrides
):
    """The predictor and options ``predict.py`` uses for ``cfg`` (its MODEL.WEIGHTS), the one way
    every caller builds them (predict.py, the napari widget, the benches, notebooks); ``options``
    from :func:`prediction_options` when given, else made here."""
    from .predictor import MyotubePredictor

    if options is None:
        options = prediction_options(cfg, pixel_size, **option_overrides)
    if not cfg.MODEL.WEIGHTS:
        logger.warning(
            "No weights: predicting with a randomly initialised model (for tests and benchmarks only)"
        )
    return MyotubePredictor(cfg, input_scale=options.input_scale), options


def is_prediction_output(name: str) -> bool:
    """A file predict.py writes into its output folder."""
    return name in RUN_FILES or name.endswith(OUTPUT_SUFFIXES)


def prepare_output_folder(
    output: str, force: bool, resume: bool = False, state: dict | None = None
) -> OpenedOutput:
    """Create ``output``, take its lock and check that it is writable, before the model loads. An
    earlier run's results are refused unless ``force`` (they are removed once the model has loaded)
    or ``resume`` (its record must match ``state``; see utils/resumable.open_output)."""
    opened = open_output(
        output, state, resume=resume, force=force, ours=is_prediction_output, what="prediction results"
    )
    try:
        with tempfile.TemporaryFile(dir=output):
            pass
    except OSError as err:
        opened.lock.release()
        raise InputError(output, f"cannot write the results here ({err.strerror or err})") from None
    return opened


@dataclass(frozen=True)
class BatchRequest:
    """What every method of ``predict.py`` shares: the images and how to read them, nuclei and
    measurements, the output folder and the long-batch rules (``resume`` continues the run in
    ``output``; ``shard`` "K/N" does every N-th input from the K-th; ``continue_with`` is the
    command a stopped run prints to continue)."""

    inputs: Sequence[str]
    output: str
    channel: int | str | None = None
    z_project: bool = False
    scene: int | str | None = None
    nuclei_channel: int | str | None = None
    nuclei: str | None = None
    nuclei_images: str | None = None
    pixel_size: float | None = None
    fusion_min_nuclei: int = 2
    nuclei_radius_um: float | None = None
    nuclei_min_area_um2: float | None = None
    progress: bool = True
    workers: int | None = None
    force: bool = False
    resume: bool = False
    shard: str | None = None
    continue_with: str | None = None

    def channel_index(self) -> int | None:
        return _index_or_name(self.channel)[0]

    def option_fields(self) -> dict:
        """The PredictOptions fields this request sets (a channel given by name is looked up per file)."""
        name = _index_or_name(self.channel)[1]
        nuclei_index, nuclei_name = _index_or_name(self.nuclei_channel)
        fields = dict(
            nuclei_channel=nuclei_name or nuclei_index,
            nuclei_masks_dir=self.nuclei,
            nuclei_images_dir=self.nuclei_images,
            progress=self.progress,
            scene=self.scene,
            fusion_min_nuclei=self.fusion_min_nuclei,
            nuclei_radius_um=self.nuclei_radius_um,
            nuclei_min_area_um2=self.nuclei_min_area_um2,
            workers=self.workers or 0,  # the default depends on the device: set once the predictor is built
        )
        return {**fields, "channel": name} if name else fields

    def with_default_workers(self, options: PredictOptions, device) -> PredictOptions:
        """``options`` with the measuring workers that suit ``device`` when the request leaves
        them open (``workers`` None), else as they are."""
        return replace(options, workers=default_workers(str(device))) if self.workers is None else options


def model_run_config(
    config_file: str | None, weights: str | None, flags: dict, opts: Sequence[str]
) -> CfgNode:
    """The unfrozen config of a model's run: :func:`prediction_config` with the command's ``flags``
    and ``--opts`` over it, then the weights :func:`choose_weights` picks."""
    cfg = prediction_config(config_file, weights, config_overrides(flags, opts))
    chosen = choose_weights(weights, cfg)
    if chosen is not None:
        cfg.merge_from_list(["MODEL.WEIGHTS", chosen])
        # --opts MODEL.WEIGHTS still wins over --weights.
        cfg.merge_from_list(list(opts))
    return cfg


def predict_command(
    request: BatchRequest,
    config_file: str | None = None,
    weights: str | None = None,
    scale: float | None = None,
    tile_size: int | None = None,
    tile_overlap: float | None = None,
    score_threshold: float | None = None,
    tta: bool | None = None,
    device: str | None = None,
    opts: Sequence[str] = (),
) -> int:
    """Run ``predict.py`` with a model; returns the exit code (1 when any image failed). Without
    ``config_file`` the config comes from ``weights`` (see :func:`prediction_config`). SIGTERM or
    SIGINT stop the run after the image in hand with :class:`Interrupted`."""
    if scale is not None and not scale > 0:
        raise InputError(None, f"--scale must be > 0, got {scale}")
    flags = {
        "channel": request.channel_index(),
        "tile_size": tile_size,
        "tile_overlap": tile_overlap,
        "score_threshold": score_threshold,
        "tta": tta,  # None: the config's TEST.AUG.ENABLED
        "device": device,
        "scale": scale,
        "z_project": request.z_project or None,
    }
    cfg = model_run_config(config_file, weights, flags, opts)
    options = prediction_options(cfg, request.pixel_size, **request.option_fields())
    # The output's config.yaml says which scale was used, not "0 = recorded".
    cfg.INFERENCE.INPUT_SCALE = options.input_scale
    cfg.freeze()
    options.validate()
    # Check the inputs and the output folder before spending time on loading the model.
    paths = collect_inputs(list(request.inputs), exclude_dir=request.output)
    share = Shard.parse(request.shard)
    state = make_state(
        "predict", prediction_settings(cfg, options), weights_identity(cfg.MODEL.WEIGHTS), paths, share
    )

    def load() -> tuple:
        predictor, _ = build_predictor(cfg, request.pixel_size, options=options)
        used = request.with_default_workers(options, predictor.device)
        what = (
            f"with {cfg.MODEL.WEIGHTS or 'random weights'} on {predictor.device}; "
            f"tiles of {used.tile_size} model px "
            f"({used.image_tile_size} image px), overlap {used.tile_overlap:.2f}; "
            f"score >= {used.post.score_threshold:.2f}"
            + ("; the four flips fused (--tta)" if cfg.TEST.AUG.ENABLED else "")
        )
        return predictor, used, what

    return _run_batch(
        paths,
        request,
        state,
        share,
        load,
        lambda: save_config(cfg, os.path.join(request.output, "config.yaml")),
    )


def annotator_command(request: BatchRequest, params: AnnotatorParams | None = None) -> int:
    """``predict.py --method annotator``: the classical annotator segments each image instead of a
    model (no config, no weights), and its myotubes go through what :func:`predict_command` does
    with a model's: the same measurements, files and long-batch rules. Each image is annotated
    whole at its own pixels (see :mod:`.annotator`); the run's settings go to ``annotator.yaml``."""
    from .annotator import AnnotatorPredictor, annotator_identity, annotator_options

    params = params or AnnotatorParams()
    check_annotator_params(params)
    index = request.channel_index()
    fields = {"channel": index if index is not None else -1, **request.option_fields()}
    options = annotator_options(z_project=bool(request.z_project), pixel_size=request.pixel_size, **fields)
    options.validate()
    paths = collect_inputs(list(request.inputs), exclude_dir=request.output)
    share = Shard.parse(request.shard)
    state = make_state(
        "predict", prediction_settings(None, options), annotator_identity(params), paths, share
    )
    scale = annotator_scale_text(params)

    def load() -> tuple:
        predictor = AnnotatorPredictor(params)
        used = request.with_default_workers(options, predictor.device)
        return (
            predictor,
            used,
            f"with the classical annotator, whole images at their own pixels (scale: {scale}), "
            "no post-processing",
        )

    def write_settings() -> None:
        settings = {"method": "annotator", "version": __version__, "annotator": dataclasses.asdict(params)}
        atomic_write_text(
            os.path.join(request.output, "annotator.yaml"), yaml.safe_dump(settings, sort_keys=False)
        )

    return _run_batch(paths, request, state, share, load, write_settings)


def check_annotator_params(params: AnnotatorParams) -> None:
    if params.scale is not None and not params.scale > 0:
        raise InputError(None, f"--annotator-scale must be > 0, got {params.scale}")
    if params.reference_pixel_size_um is not None and not params.reference_pixel_size_um > 0:
        raise InputError(None, f"--reference-pixel-size must be > 0, got {params.reference_pixel_size_um}")
    if params.scale is not None and params.reference_pixel_size_um:
        raise InputError(
            None, "--annotator-scale and --reference-pixel-size both set the annotator's scale: give one"
        )


def annotator_scale_text(params: AnnotatorParams) -> str:
    """The annotator's scale rule in words, for the run's start-up line."""
    if params.reference_pixel_size_um:
        return (
            f"from each image's pixel size and the reference field's {params.reference_pixel_size_um:g} "
            "um per pixel"
        )
    if params.scale is not None:
        return f"{params.scale:g} image px per reference px"
    return f"each image a whole field (longest side / {params.reference_size} px)"


def _run_batch(
    paths: list[str],
    request: BatchRequest,
    state: dict,
    share: Shard,
    load: Callable[[], tuple],
    write_settings: Callable[[], None],
) -> int:
    """What both methods share once their settings are known: the output folder (lock, --force,
    --resume), the predictor (``load() -> (predictor, options, description)``), the settings file,
    the images of this run, and the exit code (1 when any image failed)."""
    # From here on a signal ends the run cleanly (lock released, the continue command printed),
    # also while the model loads or a resumed folder's checksums are checked.
    output = request.output
    with (
        prepare_output_folder(output, request.force, request.resume, state) as opened,
        StopRequests() as stop,
    ):
        predictor, options, what = load()
        logger.info(
            "Predicting %d image(s)%s %s; %d measuring worker(s); output %s",
            len(share.positions(len(paths))),
            "" if share.whole else f" (shard {share} of {len(paths)})",
            what,
            options.workers,
            output,
        )
        opened.remove_earlier()  # --force: the earlier run's results go, so the folder holds this run only
        write_settings()
        batch = plan_batch(paths, output, state, resumed=opened.resumed)
        report = run_prediction(paths, predictor, output, options, batch=batch, stop=stop)
    if report.stopped:
        raise stopped(report.stopped, len(report.summaries), report.total, output, request.continue_with)
    n_ok, n_failed = len(report.summaries), len(report.failures)
    logger.info("%d image(s) done, %d failed; results in %s", n_ok, n_failed, output)
    return 1 if n_failed else 0


def merge_command(shard_folders: Sequence[str], output: str, force: bool = False) -> int:
    """``predict.py --merge``: the complete shards of one batch into ``output``, which then holds
    what one run would have written (per-image files linked, summary.csv and predictions_coco.json
    rebuilt in input order). Returns 1 when any image had failed in its shard."""
    checked = check_shards(list(shard_folders), output, lambda state: output_names(state["inputs"]))
    with open_output(
        output, None, resume=False, force=force, ours=is_prediction_output, what="prediction results"
    ) as opened:
        opened.remove_earlier()
        link_shards(checked, output)
        copy_config(checked.folders[min(checked.folders)], output)
        write_run_files(output, checked.manifests)
    n_failed = sum(1 for m in checked.manifests.values() if m["error"] is not None)
    logger.info(
        "Merged %d shard folders: %d image(s), %d failed; results in %s",
        len(shard_folders),
        len(checked.manifests),
        n_failed,
        output,
    )
    return 1 if n_failed else 0
