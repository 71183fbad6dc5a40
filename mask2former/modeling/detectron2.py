"""Mask2Former weights from detectron2: the model zoo's pickles and detectron2 training checkpoints.

detectron2's Mask2Former (facebookresearch/Mask2Former) names its parameters after its modules:
``backbone.*`` (D2SwinTransformer), ``sem_seg_head.pixel_decoder.*`` (MSDeformAttnPixelDecoder) and
``sem_seg_head.predictor.*`` (MultiScaleMaskedTransformerDecoder). :func:`to_transformers` renames
them to transformers' ``Mask2FormerForUniversalSegmentation`` and splits the fused attention
projections (Swin's ``qkv``, the decoder's self-attention ``in_proj``); :func:`to_detectron2` is
the inverse. Files are recognised by content, not by name:

- the model zoo's ``model_final_*.pkl``: a pickle of ``{"model": {name: numpy array}, "__author__": ...}``;
- a detectron2 training checkpoint (``model_final.pth``, ``model_0004999.pth``): a torch file with
  ``model`` (and possibly ``optimizer``, ``scheduler``, ``iteration``).

The architecture is read from the tensors' shapes (:func:`architecture`).
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import WeightsError

# Parameters detectron2 keeps that have no counterpart: buffers the model computes itself, and the
# input normalisation (ours is INPUT.PIXEL_MEAN / PIXEL_STD, in [0, 1] units, not 0-255).
IGNORED = (
    re.compile(r"^backbone\.layers\.\d+\.blocks\.\d+\.attn\.relative_position_index$"),
    re.compile(r"^pixel_(mean|std)$"),
)

_SWIN = "model.pixel_level_module.encoder."
_PIXEL = "model.pixel_level_module.decoder."
_TRANSFORMER = "model.transformer_module."

# (detectron2 name, transformers name) patterns; "{n}" stands for a layer, block or level index.
_RENAMES = [
    ("backbone.patch_embed.proj.", _SWIN + "swin.embeddings.patch_embeddings.projection."),
    ("backbone.patch_embed.norm.", _SWIN + "swin.embeddings.norm."),
    ("backbone.layers.{n}.blocks.{n}.norm1.", _SWIN + "swin.encoder.layers.{n}.blocks.{n}.layernorm_before."),
    ("backbone.layers.{n}.blocks.{n}.norm2.", _SWIN + "swin.encoder.layers.{n}.blocks.{n}.layernorm_after."),
    (
        "backbone.layers.{n}.blocks.{n}.attn.proj.",
        _SWIN + "swin.encoder.layers.{n}.blocks.{n}.attention.o_proj.",
    ),
    (
        "backbone.layers.{n}.blocks.{n}.attn.relative_position_bias_table",
        _SWIN
        + "swin.encoder.layers.{n}.blocks.{n}.attention.relative_position_bias.relative_position_bias_table",
    ),
    ("backbone.layers.{n}.blocks.{n}.mlp.fc1.", _SWIN + "swin.encoder.layers.{n}.blocks.{n}.mlp.fc1."),
    ("backbone.layers.{n}.blocks.{n}.mlp.fc2.", _SWIN + "swin.encoder.layers.{n}.blocks.{n}.mlp.fc2."),
    ("backbone.layers.{n}.downsample.", _SWIN + "swin.encoder.layers.{n}.downsample."),
    ("backbone.norm{n}.", _SWIN + "hidden_states_norms.stage{n+1}."),
    ("sem_seg_head.pixel_decoder.input_proj.{n}.", _PIXEL + "input_projections.{n}."),
    ("sem_seg_head.pixel_decoder.transformer.level_embed", _PIXEL + "level_embed"),
    (
        "sem_seg_head.pixel_decoder.transformer.encoder.layers.{n}.self_attn.",
        _PIXEL + "encoder.layers.{n}.self_attn.",
    ),
    (
        "sem_seg_head.pixel_decoder.transformer.encoder.layers.{n}.norm1.",
        _PIXEL + "encoder.layers.{n}.self_attn_layer_norm.",
    ),
    (
        "sem_seg_head.pixel_decoder.transformer.encoder.layers.{n}.linear1.",
        _PIXEL + "encoder.layers.{n}.fc1.",
    ),
    (
        "sem_seg_head.pixel_decoder.transformer.encoder.layers.{n}.linear2.",
        _PIXEL + "encoder.layers.{n}.fc2.",
    ),
    (
        "sem_seg_head.pixel_decoder.transformer.encoder.layers.{n}.norm2.",
        _PIXEL + "encoder.layers.{n}.final_layer_norm.",
    ),
    ("sem_seg_head.pixel_decoder.mask_features.", _PIXEL + "mask_projection."),
    ("sem_seg_head.pixel_decoder.adapter_1.weight", _PIXEL + "adapter_1.0.weight"),
    ("sem_seg_head.pixel_decoder.adapter_1.norm.", _PIXEL + "adapter_1.1."),
    ("sem_seg_head.pixel_decoder.layer_1.weight", _PIXEL + "layer_1.0.weight"),
    ("sem_seg_head.pixel_decoder.layer_1.norm.", _PIXEL + "layer_1.1."),
    ("sem_seg_head.predictor.query_embed.weight", _TRANSFORMER + "queries_embedder.weight"),
    ("sem_seg_head.predictor.query_feat.weight", _TRANSFORMER + "queries_features.weight"),
    ("sem_seg_head.predictor.level_embed.weight", _TRANSFORMER + "level_embed.weight"),
    ("sem_seg_head.predictor.decoder_norm.", _TRANSFORMER + "decoder.layernorm."),
    (
        "sem_seg_head.predictor.mask_embed.layers.{n}.",
        _TRANSFORMER + "decoder.mask_predictor.mask_embedder.{n}.0.",
    ),
    ("sem_seg_head.predictor.class_embed.", "class_predictor."),
    (
        "sem_seg_head.predictor.transformer_self_attention_layers.{n}.self_attn.out_proj.",
        _TRANSFORMER + "decoder.layers.{n}.self_attn.out_proj.",
    ),
    (
        "sem_seg_head.predictor.transformer_self_attention_layers.{n}.norm.",
        _TRANSFORMER + "decoder.layers.{n}.self_attn_layer_norm.",
    ),
    (
        "sem_seg_head.predictor.transformer_cross_attention_layers.{n}.multihead_attn.",
        _TRANSFORMER + "decoder.layers.{n}.cross_attn.",
    ),
    (
        "sem_seg_head.predictor.transformer_cross_attention_layers.{n}.norm.",
        _TRANSFORMER + "decoder.layers.{n}.cross_attn_layer_norm.",
    ),
    ("sem_seg_head.predictor.transformer_ffn_layers.{n}.linear1.", _TRANSFORMER + "decoder.layers.{n}.fc1."),
    ("sem_seg_head.predictor.transformer_ffn_layers.{n}.linear2.", _TRANSFORMER + "decoder.layers.{n}.fc2."),
    (
        "sem_seg_head.predictor.transformer_ffn_layers.{n}.norm.",
        _TRANSFORMER + "decoder.layers.{n}.final_layer_norm.",
    ),
    ("criterion.empty_weight", "criterion.empty_weight"),
]
# Fused projections: one detectron2 tensor is three transformers tensors (query, key, value).
_SPLITS = [
    (
        "backbone.layers.{n}.blocks.{n}.attn.qkv.{p}",
        _SWIN + "swin.encoder.layers.{n}.blocks.{n}.attention.{q}_proj.{p}",
    ),
    (
        "sem_seg_head.predictor.transformer_self_attention_layers.{n}.self_attn.in_proj_{p}",
        _TRANSFORMER + "decoder.layers.{n}.self_attn.{q}_proj.{p}",
    ),
]


def _pattern(template: str, prefix_only: bool) -> re.Pattern:
    text = (
        re.escape(template)
        .replace(r"\{n\}", r"(\d+)")
        .replace(r"\{n\+1\}", r"(\d+)")
        .replace(r"\{p\}", r"(weight|bias)")
    )
    return re.compile("^" + text + ("" if prefix_only else "$"))


@dataclass(frozen=True)
class _Rule:
    source: re.Pattern
    target: str
    prefix: bool  # the rule renames a prefix; the rest of the name is kept
    shift: int  # index offset between the two names (Swin's norm{i} is stage{i+1})


def _rules(renames: list[tuple[str, str]], forward: bool) -> list[_Rule]:
    rules = []
    for d2, hf in renames:
        src, dst = (d2, hf) if forward else (hf, d2)
        shift = (1 if "{n+1}" in dst else 0) if forward else (-1 if "{n+1}" in src else 0)
        rules.append(
            _Rule(_pattern(src, src.endswith(".")), dst.replace("{n+1}", "{n}"), src.endswith("."), shift)
        )
    return rules


_FORWARD = _rules(_RENAMES, True)
_BACKWARD = _rules(_RENAMES, False)


def _rename(name: str, rules: list[_Rule]) -> str | None:
    for rule in rules:
        m = rule.source.match(name)
        if m:
            numbers = list(m.groups())
            target = rule.target
            for n in numbers:
                target = target.replace("{n}", str(int(n) + rule.shift), 1)
            return target + (name[m.end() :] if rule.prefix else "")
    return None


def to_transformers(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """detectron2 names → transformers names; returns the new state and the names left unmapped."""
    out: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    splits = [(_pattern(d2, False), hf) for d2, hf in _SPLITS]
    for name, tensor in state.items():
        if any(p.match(name) for p in IGNORED):
            continue
        for pattern, hf in splits:
            m = pattern.match(name)
            if m:
                *numbers, part = m.groups()
                for q, chunk in zip("qkv", torch.chunk(tensor, 3, dim=0)):
                    target = hf.replace("{q}", q).replace("{p}", part)
                    for n in numbers:
                        target = target.replace("{n}", n, 1)
                    out[target] = chunk.clone()
                break
        else:
            target = _rename(name, _FORWARD)
            if target is None:
                unmapped.append(name)
            else:
                out[target] = tensor
    return out, unmapped


def to_detectron2(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers names → detectron2 names (the inverse of :func:`to_transformers`)."""
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    splits = [
        (
            re.compile(
                "^"
                + re.escape(hf)
                .replace(r"\{n\}", r"(\d+)")
                .replace(r"\{q\}", "([qkv])")
                .replace(r"\{p\}", "(weight|bias)")
                + "$"
            ),
            d2,
        )
        for d2, hf in _SPLITS
    ]
    for name, tensor in state.items():
        for pattern, d2 in splits:
            m = pattern.match(name)
            if m:
                *numbers, q, part = m.groups()
                target = d2.replace("{p}", part)
                for n in numbers:
                    target = target.replace("{n}", n, 1)
                fused.setdefault(target, {})[q] = tensor
                break
        else:
            target = _rename(name, _BACKWARD)
            if target is not None:
                out[target] = tensor
    for name, parts in fused.items():
        out[name] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


# --------------------------------------------------------------------------- files


def is_detectron2_state(state: dict) -> bool:
    return any(k.startswith(("sem_seg_head.", "backbone.")) for k in state)


def read_detectron2(path: str) -> dict[str, torch.Tensor] | None:
    """The detectron2 state dict in ``path`` as tensors, or None when the file is not one.
    A detectron2 file that is truncated, or whose backbone is not a Swin, is an error."""
    raw = _load_any(path)
    if raw is None:
        return None
    state = raw.get("model", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict) or not is_detectron2_state(state):
        return None
    if any(k.startswith(("backbone.res", "backbone.stem", "backbone.bottom_up")) for k in state):
        raise WeightsError(
            path, "detectron2 checkpoint with a ResNet backbone: only Swin backbones (Swin-T/S/B/L) convert"
        )
    if not any(k.startswith("backbone.patch_embed.") for k in state):
        raise WeightsError(
            path, "detectron2 checkpoint whose backbone is not a Swin transformer: only Swin-T/S/B/L convert"
        )
    return {
        k: torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v for k, v in state.items()
    }


def _load_any(path: str):
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as err:
        raise WeightsError(path, f"cannot read ({err.strerror or err})") from None
    if head[:2] == b"PK":  # torch's zip format
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as err:
            raise WeightsError(
                path,
                "cannot read checkpoint, truncated or corrupt? "
                f"({type(err).__name__}: {str(err).splitlines()[0][:100]})",
            ) from None
    try:
        with open(path, "rb") as f:
            return _NumpyUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError) as err:
        raise WeightsError(
            path, f"cannot read checkpoint, truncated or corrupt? ({type(err).__name__}: {str(err)[:100]})"
        ) from None


class _NumpyUnpickler(pickle.Unpickler):
    """The model zoo's pickles hold numpy arrays and plain containers only; nothing else is built."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("collections", "OrderedDict"),
        ("builtins", "set"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights pickle")


# --------------------------------------------------------------------------- architecture


def architecture(state: dict[str, torch.Tensor]) -> dict:
    """The Swin and Mask2Former sizes a detectron2 state dict implies (our config's names)."""

    def count(pattern: str) -> int:
        found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
        return max(found) + 1 if found else 0

    stages = count(r"backbone\.layers\.(\d+)\.")
    depths = [count(rf"backbone\.layers\.{i}\.blocks\.(\d+)\.") for i in range(stages)]
    tables = [state[f"backbone.layers.{i}.blocks.0.attn.relative_position_bias_table"] for i in range(stages)]
    window = int(round((np.sqrt(tables[0].shape[0]) + 1) / 2)) if tables else 0
    p = "sem_seg_head.predictor."
    return {
        "MODEL.SWIN.EMBED_DIM": int(state["backbone.patch_embed.proj.weight"].shape[0]),
        "MODEL.SWIN.PATCH_SIZE": int(state["backbone.patch_embed.proj.weight"].shape[-1]),
        "MODEL.SWIN.DEPTHS": depths,
        "MODEL.SWIN.NUM_HEADS": [int(t.shape[1]) for t in tables],
        "MODEL.SWIN.WINDOW_SIZE": window,
        "MODEL.SEM_SEG_HEAD.CONVS_DIM": int(
            state["sem_seg_head.pixel_decoder.mask_features.weight"].shape[1]
        ),
        "MODEL.SEM_SEG_HEAD.MASK_DIM": int(state["sem_seg_head.pixel_decoder.mask_features.weight"].shape[0]),
        "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS": count(
            r"sem_seg_head\.pixel_decoder\.transformer\.encoder\.layers\.(\d+)\."
        ),
        "MODEL.SEM_SEG_HEAD.ENC_FEEDFORWARD_DIM": int(
            state["sem_seg_head.pixel_decoder.transformer.encoder.layers.0.linear1.weight"].shape[0]
        ),
        # Deformable attention offsets: heads x 3 levels x 4 points x (x, y); the decoder has as many heads.
        "MODEL.MASK_FORMER.NHEADS": int(
            state[
                "sem_seg_head.pixel_decoder.transformer.encoder.layers.0.self_attn.sampling_offsets.weight"
            ].shape[0]
        )
        // 24,
        "MODEL.MASK_FORMER.HIDDEN_DIM": int(state[p + "query_feat.weight"].shape[1]),
        "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES": int(state[p + "query_feat.weight"].shape[0]),
        # detectron2's DEC_LAYERS counts the prediction on the learnable queries too (its layers + 1).
        "MODEL.MASK_FORMER.DEC_LAYERS": count(
            r"sem_seg_head\.predictor\.transformer_self_attention_layers\.(\d+)\."
        )
        + 1,
        "MODEL.MASK_FORMER.DIM_FEEDFORWARD": int(
            state[p + "transformer_ffn_layers.0.linear1.weight"].shape[0]
        ),
        "classes": int(state[p + "class_embed.weight"].shape[0]) - 1,
    }


def check_head(path: str, state: dict[str, torch.Tensor]) -> None:
    """A Mask2Former instance/panoptic/semantic model has the masked-attention decoder; MaskFormer
    (v1) and per-pixel baselines have other heads, which do not convert."""
    needed = (
        "sem_seg_head.predictor.query_feat.weight",
        "sem_seg_head.predictor.transformer_self_attention_layers.0.self_attn.in_proj_weight",
        "sem_seg_head.pixel_decoder.mask_features.weight",
    )
    missing = [k for k in needed if k not in state]
    if missing:
        heads = sorted({".".join(k.split(".")[:3]) for k in state if k.startswith("sem_seg_head.")})[:4]
        raise WeightsError(
            path,
            f"not a Mask2Former head (no {missing[0]}; it has {', '.join(heads)}): MaskFormer and per-pixel "
            "checkpoints have another decoder and do not convert",
        )


def describe_differences(ours: dict, theirs: dict) -> list[str]:
    return [
        f"{key} {theirs[key]} (the config says {ours[key]})"
        for key in ours
        if key in theirs and ours[key] != theirs[key]
    ]


# Checked against the config before loading; queries and classes may differ (grown / re-initialised).
ARCHITECTURE_KEYS = (
    "MODEL.SWIN.EMBED_DIM",
    "MODEL.SWIN.PATCH_SIZE",
    "MODEL.SWIN.DEPTHS",
    "MODEL.SWIN.NUM_HEADS",
    "MODEL.SWIN.WINDOW_SIZE",
    "MODEL.SEM_SEG_HEAD.CONVS_DIM",
    "MODEL.SEM_SEG_HEAD.MASK_DIM",
    "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS",
    "MODEL.SEM_SEG_HEAD.ENC_FEEDFORWARD_DIM",
    "MODEL.MASK_FORMER.NHEADS",
    "MODEL.MASK_FORMER.HIDDEN_DIM",
    "MODEL.MASK_FORMER.DEC_LAYERS",
    "MODEL.MASK_FORMER.DIM_FEEDFORWARD",
)
# Named Swin sizes, to say which one a checkpoint is.
SWIN_SIZES = {
    "Swin-T": (96, [2, 2, 6, 2]),
    "Swin-S": (96, [2, 2, 18, 2]),
    "Swin-B": (128, [2, 2, 18, 2]),
    "Swin-L": (192, [2, 2, 18, 2]),
}


def swin_name(arch: dict) -> str:
    for name, (dim, depths) in SWIN_SIZES.items():
        if arch["MODEL.SWIN.EMBED_DIM"] == dim and list(arch["MODEL.SWIN.DEPTHS"]) == depths:
            return name
    return f"Swin with EMBED_DIM {arch['MODEL.SWIN.EMBED_DIM']}, DEPTHS {arch['MODEL.SWIN.DEPTHS']}"
