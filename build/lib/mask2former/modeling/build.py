"""Build transformers' Mask2FormerForUniversalSegmentation (Swin backbone) from our config."""

from __future__ import annotations

import logging

from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig

from ..config import CfgNode

logger = logging.getLogger(__name__)

# Prefix of the Swin backbone's parameters inside the HF model (for the backbone LR multiplier).
BACKBONE_PREFIX = "model.pixel_level_module.encoder."


def build_hf_config(cfg: CfgNode, class_names: list[str]) -> Mask2FormerConfig:
    """The HF config for ``cfg``; ``class_names`` (from the dataset) fixes ``num_labels``."""
    swin = cfg.MODEL.SWIN
    backbone = SwinConfig(
        image_size=swin.PRETRAIN_IMG_SIZE,
        patch_size=swin.PATCH_SIZE,
        embed_dim=swin.EMBED_DIM,
        depths=list(swin.DEPTHS),
        num_heads=list(swin.NUM_HEADS),
        window_size=swin.WINDOW_SIZE,
        mlp_ratio=swin.MLP_RATIO,
        drop_path_rate=swin.DROP_PATH_RATE,
        out_features=[f"stage{i + 1}" for i in range(len(swin.DEPTHS))],
    )
    mf = cfg.MODEL.MASK_FORMER
    head = cfg.MODEL.SEM_SEG_HEAD
    id2label = dict(enumerate(class_names))
    return Mask2FormerConfig(
        backbone_config=backbone,
        feature_size=head.CONVS_DIM,
        mask_feature_size=head.MASK_DIM,
        encoder_layers=head.TRANSFORMER_ENC_LAYERS,
        encoder_feedforward_dim=head.ENC_FEEDFORWARD_DIM,
        hidden_dim=mf.HIDDEN_DIM,
        num_attention_heads=mf.NHEADS,
        dim_feedforward=mf.DIM_FEEDFORWARD,
        decoder_layers=mf.DEC_LAYERS,
        num_queries=mf.NUM_OBJECT_QUERIES,
        no_object_weight=mf.NO_OBJECT_WEIGHT,
        class_weight=mf.CLASS_WEIGHT,
        mask_weight=mf.MASK_WEIGHT,
        dice_weight=mf.DICE_WEIGHT,
        train_num_points=mf.TRAIN_NUM_POINTS,
        oversample_ratio=mf.OVERSAMPLE_RATIO,
        importance_sample_ratio=mf.IMPORTANCE_SAMPLE_RATIO,
        use_auxiliary_loss=mf.DEEP_SUPERVISION,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
    )


def build_model(cfg: CfgNode, class_names: list[str]) -> Mask2FormerForUniversalSegmentation:
    """A randomly initialised model of the configured architecture (weights: see weights.py)."""
    model = Mask2FormerForUniversalSegmentation(build_hf_config(cfg, class_names))
    configure_trainable_parts(model, cfg)
    return model


def configure_trainable_parts(model: Mask2FormerForUniversalSegmentation, cfg: CfgNode) -> None:
    # SwinBackbone returns its per-stage normed features; the classifier-style final layernorm
    # never takes part in the loss. Freezing it keeps DDP from waiting for gradients that never come.
    encoder = model.model.pixel_level_module.encoder
    final_norm = getattr(getattr(encoder, "swin", None), "layernorm", None)
    if final_norm is not None:
        final_norm.requires_grad_(False)
    if cfg.MODEL.SWIN.USE_CHECKPOINT:
        # The Mask2Former wrapper refuses gradient checkpointing as a whole; its Swin encoder supports it.
        model.model.pixel_level_module.encoder.gradient_checkpointing_enable()


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
