"""Build transformers' Mask2FormerForUniversalSegmentation (Swin, ConvNeXt or ResNet backbone) from our
config."""

from __future__ import annotations

import logging

from transformers import (
    ConvNextConfig,
    Mask2FormerConfig,
    Mask2FormerForUniversalSegmentation,
    ResNetConfig,
    SwinConfig,
)

from ..config import CfgNode

logger = logging.getLogger(__name__)

# Prefix of the Swin backbone's parameters inside the HF model (for the backbone LR multiplier).
BACKBONE_PREFIX = "model.pixel_level_module.encoder."


def build_backbone_config(cfg: CfgNode):
    """transformers' backbone config for MODEL.BACKBONE.NAME, returning all four stages."""
    name = cfg.MODEL.BACKBONE.NAME
    if name == "convnext":
        convnext = cfg.MODEL.CONVNEXT
        return ConvNextConfig(
            hidden_sizes=list(convnext.HIDDEN_SIZES),
            depths=list(convnext.DEPTHS),
            drop_path_rate=convnext.DROP_PATH_RATE,
            out_features=[f"stage{i + 1}" for i in range(len(convnext.DEPTHS))],
        )
    if name == "resnet":
        resnet = cfg.MODEL.RESNET
        return ResNetConfig(
            embedding_size=resnet.EMBEDDING_SIZE,
            hidden_sizes=list(resnet.HIDDEN_SIZES),
            depths=list(resnet.DEPTHS),
            layer_type=resnet.LAYER_TYPE,
            out_features=[f"stage{i + 1}" for i in range(len(resnet.DEPTHS))],
        )
    swin = cfg.MODEL.SWIN
    return SwinConfig(
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


class _KnownBackboneNote(logging.Filter):
    """transformers warns that any backbone but Swin "may not be compatible"; ResNet and ConvNeXt
    are tested here (tests/test_model.py), so the warning would only alarm users."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is not a supported model and may not be compatible" not in record.getMessage()


_MASK2FORMER_CONFIG_LOGGER = "transformers.models.mask2former.configuration_mask2former"
logging.getLogger(_MASK2FORMER_CONFIG_LOGGER).addFilter(_KnownBackboneNote())


def build_hf_config(cfg: CfgNode, class_names: list[str]) -> Mask2FormerConfig:
    """The HF config for ``cfg``; ``class_names`` (from the dataset) fixes ``num_labels``."""
    backbone = build_backbone_config(cfg)
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
    if cfg.MODEL.SWIN.USE_CHECKPOINT and cfg.MODEL.BACKBONE.NAME == "swin":
        # The Mask2Former wrapper refuses gradient checkpointing as a whole; its Swin encoder supports it.
        model.model.pixel_level_module.encoder.gradient_checkpointing_enable()


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
