"""One config tree, detectron2 style.

Every key is declared with its default in :func:`add_myotube_config`; YAML files only override,
share settings through ``_BASE_`` (resolved relative to the file that names it), and trailing
``KEY VALUE`` pairs (``--opts``) come last. Unknown keys are an error, so a typo such as
``MODEL.WETGHTS`` never passes silently.

The shipped configs are package data in ``mask2former/configs/`` (the two stage configs, the
Swin-B base, ``cpu_tiny/``, ``base/``), found wherever the package is installed:
:func:`config_path` names one by its path there. A checkout keeps ``configs/`` and the two stage
configs at its root as symbolic links to that folder. Links rather than copying the root's files
into the package at build time (detectron2's setup.py does that): each file exists once, and a
checkout, an editable install and a wheel read the same files with no build step. The price: a
clone on a file system without symbolic links (Windows without developer mode) gets the links as
small text files, and must use the ``mask2former/configs/...`` paths.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import yaml
from fvcore.common.config import CfgNode as _FvCfgNode

from .errors import ConfigError, one_line
from .utils.fileio import atomic_write_text

logger = logging.getLogger(__name__)

# Public COCO instance-segmentation checkpoint the Stage 1 architecture matches.
COCO_SWIN_B_WEIGHTS = "facebook/mask2former-swin-base-coco-instance"


BASE_KEY = "_BASE_"
# The shipped configs: package data, beside this module in a checkout and in an installed wheel alike.
CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def _shipped_relative(name: str | os.PathLike) -> str:
    """``name`` relative to CONFIG_DIR: ``configs/cpu_tiny`` (the checkout's spelling) is ``cpu_tiny``."""
    rel = os.path.normpath(os.fspath(name))
    first, _, rest = rel.partition(os.sep)
    return (rest or ".") if first == "configs" else rel


def shipped_configs() -> list[str]:
    """Every shipped config file, relative to CONFIG_DIR (e.g. ``cpu_tiny/stage2_config.yaml``)."""
    found = []
    for root, dirs, files in os.walk(CONFIG_DIR):
        dirs.sort()
        found += sorted(
            os.path.relpath(os.path.join(root, f), CONFIG_DIR) for f in files if f.endswith(".yaml")
        )
    return found


def config_path(name: str | os.PathLike = ".") -> str:
    """The shipped config file or folder ``name``, relative to ``mask2former/configs``:
    ``config_path("cpu_tiny/stage2_config.yaml")``, ``config_path("cpu_tiny")`` (a folder of stage
    configs), ``config_path()`` (the full configuration's folder). A leading ``configs/``, as the
    checkout spells these paths, is accepted."""
    rel = _shipped_relative(name)
    path = os.path.normpath(os.path.join(CONFIG_DIR, rel))
    if (
        os.path.isabs(rel)
        or rel == os.pardir
        or rel.startswith(os.pardir + os.sep)
        or not os.path.exists(path)
    ):
        raise ConfigError(
            os.fspath(name),
            f"no shipped config of this name; the package ships {', '.join(shipped_configs())}",
        )
    return path


def find_config(path: str | os.PathLike) -> str:
    """A config file or folder given on the command line: the path itself when it exists, else the
    shipped one of that name (``stage2_config.yaml``, ``configs/cpu_tiny``), so the commands the
    README shows work from any folder once the package is installed. Otherwise ``path`` unchanged:
    the caller reports it missing."""
    path = os.fspath(path)
    if os.path.exists(path) or os.path.isabs(path):
        return path
    try:
        shipped = config_path(path)
    except ConfigError:
        return path
    logger.info("%s: not in %s; using the shipped %s", path, os.getcwd(), shipped)
    return shipped


class CfgNode(_FvCfgNode):
    """fvcore's CfgNode with ``_BASE_`` chains resolved here and errors that name the file and key."""

    @classmethod
    def load_yaml_with_base(
        cls, filename: str, allow_unsafe: bool = False, _chain: tuple[str, ...] = ()
    ) -> dict:
        """The file's mapping merged over its ``_BASE_`` chain (paths relative to the naming file).

        fvcore's version recurses forever on a ``_BASE_`` loop and fails with bare Python errors
        on empty files, non-UTF-8 text or a ``_BASE_`` that is not a path.

        A relative ``_BASE_`` is taken from the folder the file really is in (symbolic links
        resolved): the checkout's ``stage1_config.yaml`` is a link to
        ``mask2former/configs/stage1_config.yaml``, whose base lies beside it there. One that is
        not there but names a shipped config is the shipped one, so a copy of a shipped config
        in a project folder loads as it is.
        """
        filename = os.fspath(filename)
        if not os.path.isfile(filename):
            raise ConfigError(filename, "config file not found")
        try:
            with open(filename, encoding="utf-8") as f:
                loaded = yaml.safe_load(f)
        except UnicodeDecodeError:
            raise ConfigError(filename, "not UTF-8 text (is this a YAML config?)") from None
        except yaml.YAMLError as err:
            raise ConfigError(filename, f"not valid YAML: {one_line(err)}") from None
        if loaded is None:  # empty, or comments only: no overrides
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(filename, "config must be a YAML mapping of KEY: value")
        bases = loaded.pop(BASE_KEY, None)
        if bases is None:
            return loaded
        # One base, or a list merged in order (a tiny preset: a stage's data, then a shared architecture).
        bases = bases if isinstance(bases, list) and bases else [bases]
        chain = _chain + (os.path.realpath(filename),)
        merged: dict = {}
        for base in bases:
            if not isinstance(base, str) or not base.strip():
                raise ConfigError(
                    filename,
                    f"{BASE_KEY} must be the path of another config file (or a list of them), got {base!r}",
                )
            base = os.path.expanduser(base)
            if not os.path.isabs(base):
                base = _base_path(filename, base)
            if not os.path.isfile(base):
                raise ConfigError(filename, f"{BASE_KEY} file not found: {base}")
            if os.path.realpath(base) in chain:
                raise ConfigError(filename, f"{BASE_KEY} chain loops back to {base}")
            _merge_dict_into(cls.load_yaml_with_base(base, _chain=chain), merged)
        _merge_dict_into(loaded, merged)
        return merged

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        loaded = self.load_yaml_with_base(cfg_filename)
        try:
            self.merge_from_other_cfg(type(self)(loaded))
        except (KeyError, ValueError, AssertionError, TypeError) as err:
            raise ConfigError(cfg_filename, one_line(err)) from None

    def merge_from_list(self, cfg_list: Sequence[str]) -> None:
        if len(cfg_list) % 2:
            raise ConfigError(
                None, f"--opts needs KEY VALUE pairs, got an odd number of items: {list(cfg_list)}"
            )
        items = list(cfg_list)
        for i in range(0, len(items), 2):
            items[i + 1] = self._coerce_number(items[i], items[i + 1])
        try:
            super().merge_from_list(items)
        except (KeyError, ValueError, AssertionError, TypeError) as err:
            raise ConfigError(None, f"--opts: {one_line(err)}") from None

    def _coerce_number(self, key, value):
        """``SOLVER.BASE_LR 1`` or ``-1`` from the command line is the float key's 1.0, not a type error."""
        node = self
        for part in str(key).split("."):
            if not isinstance(node, dict) or part not in node:
                return value  # unknown keys are reported by the merge itself
            node = node[part]
        if isinstance(node, float) and not isinstance(node, bool):
            try:
                number = float(value) if isinstance(value, str) else value
            except ValueError:
                return value
            return (
                float(number) if isinstance(number, (int, float)) and not isinstance(number, bool) else value
            )
        return value


def _base_path(filename: str, base: str) -> str:
    """Where the relative ``_BASE_`` ``base`` of ``filename`` is (see ``load_yaml_with_base``)."""
    beside = os.path.join(os.path.dirname(os.path.realpath(filename)), base)
    if os.path.isfile(beside):
        return beside
    try:
        shipped = config_path(base)
    except ConfigError:
        return beside  # reported as not found, where it was looked for
    if not os.path.isfile(shipped):
        return beside
    logger.info("%s: %s %s is not beside it; using the shipped %s", filename, BASE_KEY, base, shipped)
    return shipped


def _merge_dict_into(override: dict, base: dict) -> None:
    """Recursively write ``override`` over ``base`` (nested mappings merged, other values replaced)."""
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge_dict_into(value, base[key])
        else:
            base[key] = value


def add_myotube_config(cfg: CfgNode) -> None:
    """Declare every key with its default. YAML files may only override these."""
    _C = cfg
    _C.VERSION = 2
    _C.OUTPUT_DIR = "./output"
    # -1: pick a random seed and log it (detectron2's convention).
    _C.SEED = -1

    _model_defaults(_C)
    _head_defaults(_C)
    _input_defaults(_C)
    _datasets_defaults(_C)
    _synthetic_defaults(_C)
    _solver_defaults(_C)
    _test_defaults(_C)
    _inference_defaults(_C)


def _model_defaults(_C: CfgNode) -> None:
    """The model node: device, weights and the three backbones."""
    _C.MODEL = CfgNode()
    # "auto": cuda when available, else cpu.
    _C.MODEL.DEVICE = "auto"
    # A local Hugging Face model directory, a hub id, a project checkpoint (.pth) or "" (random init).
    _C.MODEL.WEIGHTS = ""

    # The backbone: "swin" (MODEL.SWIN, the seed's), "convnext" (MODEL.CONVNEXT) or "resnet"
    # (MODEL.RESNET); all three are transformers' own backbones (no timm, no torchvision).
    _C.MODEL.BACKBONE = CfgNode()
    _C.MODEL.BACKBONE.NAME = "swin"
    _C.MODEL.CONVNEXT = CfgNode()
    _C.MODEL.CONVNEXT.HIDDEN_SIZES = [96, 192, 384, 768]
    _C.MODEL.CONVNEXT.DEPTHS = [3, 3, 9, 3]
    _C.MODEL.CONVNEXT.DROP_PATH_RATE = 0.0
    _C.MODEL.RESNET = CfgNode()
    _C.MODEL.RESNET.EMBEDDING_SIZE = 64
    _C.MODEL.RESNET.HIDDEN_SIZES = [256, 512, 1024, 2048]
    _C.MODEL.RESNET.DEPTHS = [3, 4, 6, 3]
    _C.MODEL.RESNET.LAYER_TYPE = "bottleneck"  # or "basic"

    _C.MODEL.SWIN = CfgNode()
    _C.MODEL.SWIN.EMBED_DIM = 128
    _C.MODEL.SWIN.DEPTHS = [2, 2, 18, 2]
    _C.MODEL.SWIN.NUM_HEADS = [4, 8, 16, 32]
    _C.MODEL.SWIN.WINDOW_SIZE = 12
    _C.MODEL.SWIN.PATCH_SIZE = 4
    _C.MODEL.SWIN.MLP_RATIO = 4.0
    _C.MODEL.SWIN.DROP_PATH_RATE = 0.3
    _C.MODEL.SWIN.PRETRAIN_IMG_SIZE = 384
    # Gradient checkpointing inside the Swin stages: trades compute for memory at 1500x1500.
    _C.MODEL.SWIN.USE_CHECKPOINT = False


def _head_defaults(_C: CfgNode) -> None:
    """The pixel decoder, the transformer decoder and its losses, and test-time thresholds."""
    _C.MODEL.SEM_SEG_HEAD = CfgNode()
    # Pixel decoder width (HF: feature_size) and mask embedding size (HF: mask_feature_size).
    _C.MODEL.SEM_SEG_HEAD.CONVS_DIM = 256
    _C.MODEL.SEM_SEG_HEAD.MASK_DIM = 256
    _C.MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS = 6
    _C.MODEL.SEM_SEG_HEAD.ENC_FEEDFORWARD_DIM = 1024

    _C.MODEL.MASK_FORMER = CfgNode()
    _C.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES = 200
    _C.MODEL.MASK_FORMER.HIDDEN_DIM = 256
    _C.MODEL.MASK_FORMER.NHEADS = 8
    _C.MODEL.MASK_FORMER.DIM_FEEDFORWARD = 2048
    _C.MODEL.MASK_FORMER.DEC_LAYERS = 10
    _C.MODEL.MASK_FORMER.DEEP_SUPERVISION = True
    _C.MODEL.MASK_FORMER.NO_OBJECT_WEIGHT = 0.1
    _C.MODEL.MASK_FORMER.CLASS_WEIGHT = 2.0
    _C.MODEL.MASK_FORMER.MASK_WEIGHT = 5.0
    _C.MODEL.MASK_FORMER.DICE_WEIGHT = 5.0
    _C.MODEL.MASK_FORMER.TRAIN_NUM_POINTS = 12544
    _C.MODEL.MASK_FORMER.OVERSAMPLE_RATIO = 3.0
    _C.MODEL.MASK_FORMER.IMPORTANCE_SAMPLE_RATIO = 0.75

    _C.MODEL.MASK_FORMER.TEST = CfgNode()
    # Minimum instance score (class probability x mean mask probability) kept by predict.py and
    # by the threshold-based metrics (F1, semantic IoU). COCO AP ranks all detections instead.
    _C.MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD = 0.5
    # Per-pixel probability above which a pixel belongs to an instance's mask.
    _C.MODEL.MASK_FORMER.TEST.MASK_THRESHOLD = 0.5
    # Instances whose mask has fewer pixels than this are dropped.
    _C.MODEL.MASK_FORMER.TEST.MIN_MASK_AREA = 16


def _input_defaults(_C: CfgNode) -> None:
    _C.INPUT = CfgNode()
    # Training/inference resolution: images are resized so the longest side is IMAGE_SIZE,
    # then padded (or cropped after scale jitter) to IMAGE_SIZE x IMAGE_SIZE.
    _C.INPUT.IMAGE_SIZE = 1500
    # -1: use the image as it is (grayscale, or RGB); N: use channel N of a multi-channel image.
    _C.INPUT.CHANNEL = -1
    # A TIFF axis its metadata does not name ("Q") is refused unless INPUT.CHANNEL says the planes
    # are channels or this says they are a Z-stack (max-projected like named Z planes).
    _C.INPUT.Z_PROJECT = False
    # Z-stacks are max-projected.
    _C.INPUT.PERCENTILE_LOW = 0.5
    _C.INPUT.PERCENTILE_HIGH = 99.8
    # Applied after percentile scaling to [0, 1]; ImageNet statistics suit the pretrained Swin.
    _C.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]
    _C.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]
    _C.INPUT.AUGMENT = True
    # Conservative scale jitter around the nominal size, then a random IMAGE_SIZE crop.
    _C.INPUT.MIN_SCALE = 0.8
    _C.INPUT.MAX_SCALE = 1.25
    _C.INPUT.HFLIP = True
    _C.INPUT.VFLIP = True
    _C.INPUT.ROTATE_90 = True
    # Instances with fewer pixels than this after augmentation are dropped from the target.
    _C.INPUT.MIN_INSTANCE_AREA = 8
    # A crop that lost every instance: "resample" another crop (up to EMPTY_CROP_RETRIES times,
    # then train on it as background) or "background" (train on it as pure background at once).
    _C.INPUT.EMPTY_CROP_POLICY = "resample"
    _C.INPUT.EMPTY_CROP_RETRIES = 10


def _datasets_defaults(_C: CfgNode) -> None:
    _C.DATASETS = CfgNode()
    _C.DATASETS.TRAIN = ("myotube_algorithmic_train",)
    # Share of the training steps each DATASETS.TRAIN dataset gets (same order): e.g. (0.5, 0.5)
    # lets 5 manual fields weigh as much as 100 annotator-labelled ones. Empty: every image of
    # every dataset once per shuffled pass, so each dataset weighs by its image count.
    _C.DATASETS.TRAIN_SHARES = ()
    _C.DATASETS.TEST = ("myotube_algorithmic_test",)


def _synthetic_defaults(_C: CfgNode) -> None:
    # Pretraining on generated fields (the base model): when ENABLED, training draws a fresh field
    # for every sample from the generator instead of reading DATASETS.TRAIN; field k of the stream
    # is the same for a given SEED, so a resumed run goes on where it stopped and never repeats one.
    _C.SYNTHETIC = CfgNode()
    _C.SYNTHETIC.ENABLED = False
    _C.SYNTHETIC.PRESET = "realistic"  # mask2former.data.synthetic.GENERATOR_PRESETS
    # Pixel scale of the model's fields against the generator's reference field (a 2048 px field
    # drawn at 1500 px): 0.5 puts a whole 2048 px field at about 750 model pixels.
    _C.SYNTHETIC.PIXEL_SCALE = 0.5
    # Each field's scale is PIXEL_SCALE times a log-uniform factor in this range.
    _C.SYNTHETIC.SCALE_JITTER = (0.8, 1.25)
    # Covered fraction of each field, uniform in this range.
    _C.SYNTHETIC.DENSITY = (0.04, 0.3)
    # Square field sides in model pixels, one drawn per step with these weights (crops of growing
    # size teach the model whole fields, not only small crops).
    _C.SYNTHETIC.FIELD_SIZES = (256,)
    _C.SYNTHETIC.FIELD_SIZE_WEIGHTS = (1.0,)
    _C.SYNTHETIC.BIT_DEPTH = 8
    _C.SYNTHETIC.SEED = 0
    # Training on registered datasets (ENABLED off), this fraction of the steps draws generated
    # fields from the stream instead: fine-tuning the base model on the annotator's labels, which
    # merge crossing tubes, then keeps rehearsing the exact labels it was pretrained on. 0 = off.
    _C.SYNTHETIC.REPLAY = 0.0


def _solver_defaults(_C: CfgNode) -> None:
    """The data loader and the optimiser, schedule, checkpoints and gradient clipping."""
    _C.DATALOADER = CfgNode()
    _C.DATALOADER.NUM_WORKERS = 4

    _C.SOLVER = CfgNode()
    _C.SOLVER.OPTIMIZER = "ADAMW"
    # Total batch over all processes (detectron2 semantics).
    _C.SOLVER.IMS_PER_BATCH = 2
    _C.SOLVER.BASE_LR = 1e-4
    _C.SOLVER.WEIGHT_DECAY = 0.05
    _C.SOLVER.BACKBONE_MULTIPLIER = 0.1
    _C.SOLVER.MAX_ITER = 4000
    _C.SOLVER.LR_SCHEDULER_NAME = "WarmupPolyLR"  # or "WarmupCosineLR"
    _C.SOLVER.POLY_LR_POWER = 0.9
    _C.SOLVER.WARMUP_ITERS = 100
    _C.SOLVER.WARMUP_FACTOR = 0.01
    _C.SOLVER.CHECKPOINT_PERIOD = 500
    # Older periodic checkpoints beyond this many are deleted (model_final.pth is always kept).
    _C.SOLVER.MAX_CHECKPOINTS_KEPT = 3
    _C.SOLVER.LOG_PERIOD = 20
    _C.SOLVER.CLIP_GRADIENTS = CfgNode()
    _C.SOLVER.CLIP_GRADIENTS.ENABLED = True
    _C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 0.01
    _C.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0
    _C.SOLVER.AMP = CfgNode()
    # Mixed precision (bf16 autocast) is used only on CUDA.
    _C.SOLVER.AMP.ENABLED = True


def _test_defaults(_C: CfgNode) -> None:
    _C.TEST = CfgNode()
    # 0 disables periodic evaluation; evaluation always runs at the end of training.
    _C.TEST.EVAL_PERIOD = 0
    # Detections kept per image for COCO AP; 0 means "all queries". COCO's default 100 caps recall.
    _C.TEST.DETECTIONS_PER_IMAGE = 0
    # Test-time augmentation (inference/augmentation.py): predict the four flips of every image or
    # tile and fuse them: four forward passes (one batch) instead of one.
    _C.TEST.AUG = CfgNode()
    _C.TEST.AUG.ENABLED = False
    # Queries of two views are one instance when their masks overlap with at least this IoU.
    _C.TEST.AUG.FUSE_IOU = 0.5
    # The score threshold in place of MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD: a fused score
    # is lower (a tube missed by one view of four keeps three quarters of it; averaged masks are
    # softer), so it needs its own. Both values: the best mean F1 on validation fields
    # (bench/tta.py, bench/results/tta_validation.json).
    _C.TEST.AUG.OBJECT_MASK_THRESHOLD = 0.4


def _inference_defaults(_C: CfgNode) -> None:
    _C.INFERENCE = CfgNode()
    # Model-input pixels per pixel of a new image: images are resized by this before tiling.
    # 0: the training scale recorded in the weights (see mask2former/data/scale.py).
    _C.INFERENCE.INPUT_SCALE = 0.0
    # Tiled prediction for images larger than the model input: tile side in model-input pixels
    # (after resizing by the scale). 0: INPUT.IMAGE_SIZE.
    _C.INFERENCE.TILE_SIZE = 0
    _C.INFERENCE.TILE_OVERLAP = 0.2
    # Fragments from neighbouring tiles are one instance when their IoU inside the region both
    # tiles saw is at least this (each fragment matched to at most one of the other tile).
    _C.INFERENCE.TILE_MATCH_OVERLAP = 0.5
    # Post-processing of predicted instances (each step can be switched off).
    _C.INFERENCE.MIN_AREA = 100
    # Minimum skeleton-length / mean-width ratio; 0 disables.
    _C.INFERENCE.MIN_ELONGATION = 0.0
    # Drop instances with less than this fraction of their pixels above the field's foreground
    # threshold (the classical annotator's; inference/filters.py); 0 disables. Faint cells beside
    # bright myotubes are left out of hand-drawn masks (docs/predict.md measures it on real fields).
    _C.INFERENCE.MIN_BRIGHT_FRACTION = 0.0
    # Outlines from the field's foreground threshold (the classical annotator's), at full
    # resolution: foreground pixels up to this far from an instance join it, its pixels outside the
    # foreground leave it (inference/outlines.py). Pixels of a 1500 px field; 0 disables.
    _C.INFERENCE.SNAP_REACH = 0.0
    # A mask in several separate parts is one instance per part: a myotube is one connected region.
    _C.INFERENCE.SPLIT_DISCONNECTED = False
    # A part smaller than this fraction of the mask's largest part is dropped, not kept as an
    # instance. Such parts were mostly scraps on generated fields and mostly tubes on real ones
    # (docs/benchmarks.md).
    _C.INFERENCE.SPLIT_MIN_FRACTION = 0.0
    # Off by default: unions chain, and one instance covering two tubes pulls in every instance it
    # overlaps (on real fields this left a handful of instances per field; see docs/predict.md).
    _C.INFERENCE.MERGE_FRAGMENTS = False
    # Two instances are merged when their masks overlap by this fraction of the smaller one.
    _C.INFERENCE.MERGE_OVERLAP = 0.5
    _C.INFERENCE.REMOVE_CONTAINED = True
    _C.INFERENCE.CONTAINED_FRACTION = 0.9
    # Of two instances whose masks have an IoU of at least this, the lower-scoring one is a
    # duplicate and goes (mask non-maximum suppression); 0 disables. Crossing tubes share only the
    # crossing, far below it.
    _C.INFERENCE.DUPLICATE_IOU = 0.5
    # Join pieces of one tube that continue each other end to end (inference/joining.py): ends
    # within JOIN_MAX_GAP tube widths, pointing at each other within JOIN_MAX_ANGLE degrees.
    _C.INFERENCE.JOIN_PIECES = False
    _C.INFERENCE.JOIN_MAX_GAP = 2.0
    _C.INFERENCE.JOIN_MAX_ANGLE = 30.0


def score_threshold_in_force(cfg: CfgNode) -> float:
    """The minimum instance score in force: TEST.AUG.OBJECT_MASK_THRESHOLD with test-time
    augmentation, else MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD."""
    if cfg.TEST.AUG.ENABLED:
        return float(cfg.TEST.AUG.OBJECT_MASK_THRESHOLD)
    return float(cfg.MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD)


def get_cfg() -> CfgNode:
    """A fresh config holding every default."""
    cfg = CfgNode()
    add_myotube_config(cfg)
    return cfg


def load_config(
    config_file: str | os.PathLike | None,
    opts: Sequence[str] = (),
    freeze: bool = True,
    base: CfgNode | None = None,
) -> CfgNode:
    """Defaults (or a copy of ``base``: a config stored with a model), then ``config_file`` (with its
    ``_BASE_`` chain), then ``opts``. A ``config_file`` that does not exist but names a shipped
    config (``stage2_config.yaml``, ``configs/cpu_tiny/stage1_config.yaml``) is that one."""
    cfg = get_cfg() if base is None else base.clone()
    if config_file:
        config_file = find_config(config_file)
        cfg.merge_from_file(config_file)
    if opts:
        cfg.merge_from_list(list(opts))
    _check_no_nulls(cfg, get_cfg(), config_file)
    try:
        _check_values(cfg, config_file)
    except ConfigError as err:
        # A bad value that came from the command line is blamed on --opts, not on the YAML file.
        key = err.problem.split(" ", 1)[0]
        if key in list(opts)[::2]:
            raise ConfigError(None, f"--opts: {err.problem}") from None
        raise
    if freeze:
        cfg.freeze()
    return cfg


def _check_no_nulls(cfg: CfgNode, defaults: CfgNode, source, prefix: str = "") -> None:
    """yacs lets ``null`` replace any value; every key here needs a real one."""
    for key, default in defaults.items():
        value = cfg[key]
        if isinstance(default, CfgNode):
            _check_no_nulls(value, default, source, f"{prefix}{key}.")
        elif value is None and default is not None:
            raise ConfigError(
                os.fspath(source) if source else None,
                f"{prefix}{key} is empty (null); its default is {default!r}",
            )


def _check_values(cfg: CfgNode, source) -> None:
    where = os.fspath(source) if source else None
    if cfg.SOLVER.IMS_PER_BATCH < 1:
        raise ConfigError(where, f"SOLVER.IMS_PER_BATCH must be >= 1, got {cfg.SOLVER.IMS_PER_BATCH}")
    if cfg.SOLVER.MAX_ITER < 1:
        raise ConfigError(where, f"SOLVER.MAX_ITER must be >= 1, got {cfg.SOLVER.MAX_ITER}")
    if cfg.SOLVER.BASE_LR <= 0:
        raise ConfigError(where, f"SOLVER.BASE_LR must be > 0, got {cfg.SOLVER.BASE_LR}")
    if cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES < 1:
        raise ConfigError(where, "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES must be >= 1")
    if cfg.MODEL.BACKBONE.NAME not in ("swin", "convnext", "resnet"):
        raise ConfigError(
            where, f"MODEL.BACKBONE.NAME must be swin, convnext or resnet, got {cfg.MODEL.BACKBONE.NAME!r}"
        )
    for node in ("CONVNEXT", "RESNET"):
        if len(cfg.MODEL[node].DEPTHS) != len(cfg.MODEL[node].HIDDEN_SIZES):
            raise ConfigError(
                where, f"MODEL.{node}.DEPTHS and MODEL.{node}.HIDDEN_SIZES must have the same length"
            )
    if len(cfg.MODEL.SWIN.DEPTHS) != len(cfg.MODEL.SWIN.NUM_HEADS):
        raise ConfigError(where, "MODEL.SWIN.DEPTHS and MODEL.SWIN.NUM_HEADS must have the same length")
    if cfg.INPUT.CHANNEL < -1:
        raise ConfigError(
            where,
            f"INPUT.CHANNEL must be -1 (image as it is) or a channel index >= 0, got {cfg.INPUT.CHANNEL}",
        )
    if cfg.INPUT.EMPTY_CROP_POLICY not in ("resample", "background"):
        raise ConfigError(
            where,
            "INPUT.EMPTY_CROP_POLICY must be 'resample' or 'background', "
            f"got {cfg.INPUT.EMPTY_CROP_POLICY!r}",
        )
    if cfg.SOLVER.OPTIMIZER.upper() != "ADAMW":
        raise ConfigError(where, f"SOLVER.OPTIMIZER {cfg.SOLVER.OPTIMIZER!r} is not supported (use ADAMW)")
    _check_train_shares(cfg.DATASETS, where)
    if not 0.0 < cfg.TEST.AUG.FUSE_IOU < 1.0:
        raise ConfigError(where, f"TEST.AUG.FUSE_IOU must be in (0, 1), got {cfg.TEST.AUG.FUSE_IOU}")
    _check_inference(cfg.INFERENCE, where)
    if not 0.0 <= cfg.SYNTHETIC.REPLAY < 1.0:
        raise ConfigError(where, f"SYNTHETIC.REPLAY must be in [0, 1), got {cfg.SYNTHETIC.REPLAY}")
    if cfg.SYNTHETIC.ENABLED or cfg.SYNTHETIC.REPLAY > 0:
        _check_synthetic(cfg.SYNTHETIC, where)
    if cfg.SOLVER.LR_SCHEDULER_NAME not in ("WarmupPolyLR", "WarmupCosineLR"):
        raise ConfigError(
            where,
            "SOLVER.LR_SCHEDULER_NAME must be WarmupPolyLR or WarmupCosineLR, "
            f"got {cfg.SOLVER.LR_SCHEDULER_NAME!r}",
        )
    if cfg.MODEL.DEVICE not in ("auto", "cpu", "cuda") and not str(cfg.MODEL.DEVICE).startswith("cuda:"):
        raise ConfigError(where, f"MODEL.DEVICE must be auto, cpu or cuda, got {cfg.MODEL.DEVICE!r}")


def _check_inference(inf: CfgNode, where: str | None) -> None:
    if inf.INPUT_SCALE < 0:
        raise ConfigError(
            where,
            "INFERENCE.INPUT_SCALE must be > 0, or 0 for the scale recorded with the weights, "
            f"got {inf.INPUT_SCALE}",
        )
    for key in ("MIN_BRIGHT_FRACTION", "SPLIT_MIN_FRACTION"):
        if not 0.0 <= inf[key] <= 1.0:
            raise ConfigError(where, f"INFERENCE.{key} must be in [0, 1], got {inf[key]}")
    if inf.SNAP_REACH < 0:
        raise ConfigError(where, f"INFERENCE.SNAP_REACH must be >= 0, got {inf.SNAP_REACH}")


def save_config(cfg: CfgNode, path: str | os.PathLike) -> None:
    """Write the merged config atomically (what the run really used)."""
    atomic_write_text(path, cfg.dump())


def resolve_device(cfg: CfgNode) -> str:
    import torch

    device = cfg.MODEL.DEVICE
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            None, "MODEL.DEVICE is cuda but no CUDA GPU is available; use --opts MODEL.DEVICE cpu"
        )
    return device


def _check_train_shares(datasets: CfgNode, where: str) -> None:
    shares = tuple(datasets.TRAIN_SHARES)
    if not shares:
        return
    if len(shares) != len(datasets.TRAIN):
        raise ConfigError(
            where,
            f"DATASETS.TRAIN_SHARES has {len(shares)} value(s) for {len(datasets.TRAIN)} dataset(s) in "
            f"DATASETS.TRAIN {tuple(datasets.TRAIN)}: give one share per dataset",
        )
    if any(not isinstance(v, (int, float)) or v < 0 for v in shares) or sum(shares) <= 0:
        raise ConfigError(
            where, f"DATASETS.TRAIN_SHARES must be numbers >= 0 with a positive sum, got {shares}"
        )


def _check_synthetic(node: CfgNode, where) -> None:
    # SYNTHETIC.PRESET is checked by the stream (the generator's presets live in the data layer).
    if node.PIXEL_SCALE <= 0:
        raise ConfigError(where, f"SYNTHETIC.PIXEL_SCALE must be > 0, got {node.PIXEL_SCALE}")
    for key in ("SCALE_JITTER", "DENSITY"):
        low, high = node[key]
        if not 0 < low <= high:
            raise ConfigError(
                where, f"SYNTHETIC.{key} must be two numbers 0 < low <= high, got {list(node[key])}"
            )
    if node.DENSITY[1] >= 0.9:
        raise ConfigError(where, f"SYNTHETIC.DENSITY must stay below 0.9, got {list(node.DENSITY)}")
    if not node.FIELD_SIZES or len(node.FIELD_SIZES) != len(node.FIELD_SIZE_WEIGHTS):
        raise ConfigError(
            where,
            "SYNTHETIC.FIELD_SIZES and SYNTHETIC.FIELD_SIZE_WEIGHTS must be non-empty and of the same length",
        )
    if min(node.FIELD_SIZES) < 32 or min(node.FIELD_SIZE_WEIGHTS) < 0 or sum(node.FIELD_SIZE_WEIGHTS) <= 0:
        raise ConfigError(
            where,
            "SYNTHETIC.FIELD_SIZES must be >= 32 px and FIELD_SIZE_WEIGHTS non-negative with a positive sum",
        )
    if node.BIT_DEPTH not in (8, 16):
        raise ConfigError(where, f"SYNTHETIC.BIT_DEPTH must be 8 or 16, got {node.BIT_DEPTH}")
