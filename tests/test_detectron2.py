"""detectron2 Mask2Former weights: the model zoo's pickles and detectron2 training checkpoints."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from mask2former.errors import WeightsError
from mask2former.modeling.build import build_model
from mask2former.modeling.detectron2 import IGNORED, architecture, to_detectron2, to_transformers
from mask2former.modeling.weights import load_model
from tests.helpers import SWIN_TINY, tiny_cfg


def detectron2_swin_b_instance_keys() -> list[str]:
    """Every state-dict key of detectron2's Mask2Former Swin-B COCO instance model
    (maskformer2_swin_base_IN21k_384_bs16_50ep), written from the original module definitions of
    facebookresearch/Mask2Former: D2SwinTransformer (embed 128, depths 2-2-18-2, all four outputs,
    no absolute position embedding), MSDeformAttnPixelDecoder (res3-5 through 6 deformable encoder
    layers, one lateral level res2), MultiScaleMaskedTransformerDecoder (DEC_LAYERS 10: 9 layers,
    hidden 256 = conv dim, so no input projection), SetCriterion's buffer and the meta
    architecture's pixel_mean / pixel_std."""
    wb = ("weight", "bias")
    keys = [f"backbone.patch_embed.{m}.{p}" for m in ("proj", "norm") for p in wb]
    for i, depth in enumerate((2, 2, 18, 2)):
        for j in range(depth):
            b = f"backbone.layers.{i}.blocks.{j}."
            keys += [b + "attn.relative_position_bias_table", b + "attn.relative_position_index"]
            keys += [
                b + f"{m}.{p}"
                for m in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
                for p in wb
            ]
        if i < 3:
            keys += [f"backbone.layers.{i}.downsample.reduction.weight"] + [
                f"backbone.layers.{i}.downsample.norm.{p}" for p in wb
            ]
        keys += [f"backbone.norm{i}.{p}" for p in wb]
    d = "sem_seg_head.pixel_decoder."
    keys += [d + f"input_proj.{level}.{k}.{p}" for level in range(3) for k in (0, 1) for p in wb]
    keys += [d + "transformer.level_embed"]
    for e in range(6):
        layer = d + f"transformer.encoder.layers.{e}."
        keys += [
            layer + f"self_attn.{m}.{p}"
            for m in ("sampling_offsets", "attention_weights", "value_proj", "output_proj")
            for p in wb
        ]
        keys += [layer + f"{m}.{p}" for m in ("norm1", "linear1", "linear2", "norm2") for p in wb]
    keys += [d + f"mask_features.{p}" for p in wb]
    keys += [d + "adapter_1.weight", d + "adapter_1.norm.weight", d + "adapter_1.norm.bias"]
    keys += [d + "layer_1.weight", d + "layer_1.norm.weight", d + "layer_1.norm.bias"]
    q = "sem_seg_head.predictor."
    for i in range(9):
        keys += [q + f"transformer_self_attention_layers.{i}.self_attn.in_proj_{p}" for p in wb]
        keys += [
            q + f"transformer_self_attention_layers.{i}.{m}.{p}"
            for m in ("self_attn.out_proj", "norm")
            for p in wb
        ]
        keys += [q + f"transformer_cross_attention_layers.{i}.multihead_attn.in_proj_{p}" for p in wb]
        keys += [
            q + f"transformer_cross_attention_layers.{i}.{m}.{p}"
            for m in ("multihead_attn.out_proj", "norm")
            for p in wb
        ]
        keys += [
            q + f"transformer_ffn_layers.{i}.{m}.{p}" for m in ("linear1", "linear2", "norm") for p in wb
        ]
    keys += [q + f"decoder_norm.{p}" for p in wb] + [q + f"class_embed.{p}" for p in wb]
    keys += [q + "query_feat.weight", q + "query_embed.weight", q + "level_embed.weight"]
    keys += [q + f"mask_embed.layers.{k}.{p}" for k in range(3) for p in wb]
    return keys + ["criterion.empty_weight", "pixel_mean", "pixel_std"]


def test_every_key_of_the_swin_b_instance_model_is_mapped_onto_ours():
    keys = detectron2_swin_b_instance_keys()
    assert len(keys) == len(set(keys)) == 652  # 357 backbone, 117 pixel decoder, 175 predictor, 3 buffers
    dummy = {k: torch.zeros(3, 1) for k in keys}
    converted, unmapped = to_transformers(dummy)
    assert unmapped == []
    ignored = [k for k in keys if any(p.match(k) for p in IGNORED)]
    assert len(ignored) == 24 + 2  # Swin's relative_position_index buffers, pixel_mean / pixel_std
    # The converted names are exactly our Swin-B model's (its final layernorm is never used).
    from mask2former.config import load_config

    cfg = load_config(None, ["MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "100"])
    with torch.device("meta"):
        ours = set(build_model(cfg, [f"c{i}" for i in range(80)]).state_dict())
    assert set(converted) == ours - {
        "model.pixel_level_module.encoder.swin.layernorm.weight",
        "model.pixel_level_module.encoder.swin.layernorm.bias",
    }


def _tiny_source(seed: int = 0, queries: int = 16, classes: list[str] | None = None):
    torch.manual_seed(seed)
    cfg = tiny_cfg(*SWIN_TINY, "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", queries)
    return cfg, build_model(cfg, classes or ["myotube"]).eval()


def _save_layouts(model, tmp_path) -> dict[str, str]:
    state = to_detectron2(model.state_dict())
    state["pixel_mean"] = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    zoo = tmp_path / "model_final_tiny.pkl"
    with open(zoo, "wb") as f:
        pickle.dump(
            {
                "model": {k: v.numpy() for k, v in state.items()},
                "__author__": "Mask2Former",
                "matching_heuristics": True,
            },
            f,
        )
    trained = tmp_path / "model_final.pth"
    torch.save({"model": state, "optimizer": {}, "scheduler": {}, "iteration": 4999}, trained)
    return {"zoo pickle": str(zoo), "training checkpoint": str(trained)}


@pytest.mark.parametrize("layout", ["zoo pickle", "training checkpoint"])
def test_round_trip_through_both_detectron2_layouts_gives_identical_outputs(tmp_path, layout):
    cfg, source = _tiny_source()
    path = _save_layouts(source, tmp_path)[layout]
    loaded, described = load_model(cfg, ["myotube"], path)
    assert "detectron2" in described and "Swin" in described
    image = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 3, 128, 128)).astype(np.float32))
    loaded.eval()
    with torch.no_grad():
        a, b = source(pixel_values=image), loaded(pixel_values=image)
    assert torch.equal(a.masks_queries_logits, b.masks_queries_logits) and torch.equal(
        a.class_queries_logits, b.class_queries_logits
    )


def test_queries_grow_for_training_and_coco_class_heads_are_reinitialised(tmp_path, caplog):
    cfg8, source = _tiny_source(queries=8, classes=[f"c{i}" for i in range(80)])
    path = _save_layouts(source, tmp_path)["zoo pickle"]
    cfg16 = tiny_cfg(*SWIN_TINY, "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 16)
    with caplog.at_level("INFO"):
        model, _ = load_model(cfg16, ["myotube"], path, for_training=True)
    own, src = model.state_dict(), source.state_dict()
    key = "model.transformer_module.queries_features.weight"
    assert torch.equal(own[key][:8], src[key])  # the learned queries are kept
    assert own["class_predictor.weight"].shape[0] == 2  # myotube + no object
    assert "re-initialised: " in caplog.text and "class_predictor.weight" in caplog.text
    with pytest.raises(WeightsError, match="checkpoint has 8 queries, the config 16"):
        load_model(cfg16, ["myotube"], path)  # prediction never pads with random queries


def test_an_architecture_mismatch_is_refused_naming_the_keys(tmp_path):
    _, source = _tiny_source()
    path = _save_layouts(source, tmp_path)["zoo pickle"]
    with pytest.raises(WeightsError) as err:
        load_model(tiny_cfg(*SWIN_TINY, "MODEL.SWIN.EMBED_DIM", 32), ["myotube"], path)
    assert "MODEL.SWIN.EMBED_DIM 24 (the config says 32)" in str(err.value) and "\n" not in str(err.value)


def test_the_architecture_is_read_from_the_shapes():
    keys = detectron2_swin_b_instance_keys()
    from mask2former.config import load_config

    cfg = load_config(None, ["MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "100"])
    with torch.device("meta"):
        hf = build_model(cfg, [f"c{i}" for i in range(80)]).state_dict()
    state = {k: v for k, v in to_detectron2(hf).items()}
    arch = architecture(state)
    assert arch["MODEL.SWIN.DEPTHS"] == [2, 2, 18, 2] and arch["MODEL.SWIN.NUM_HEADS"] == [4, 8, 16, 32]
    assert (
        arch["MODEL.SWIN.EMBED_DIM"],
        arch["MODEL.SWIN.WINDOW_SIZE"],
        arch["MODEL.MASK_FORMER.DEC_LAYERS"],
    ) == (128, 12, 10)
    assert (arch["MODEL.MASK_FORMER.NUM_OBJECT_QUERIES"], arch["classes"]) == (100, 80)
    assert set(state) <= set(keys)


def test_resnet_maskformer_and_truncated_checkpoints_get_one_line(tmp_path):
    resnet = tmp_path / "r50.pkl"
    with open(resnet, "wb") as f:
        pickle.dump(
            {
                "model": {
                    "backbone.res2.0.conv1.weight": np.zeros((1, 1)),
                    "sem_seg_head.predictor.query_embed.weight": np.zeros((1, 1)),
                }
            },
            f,
        )
    with pytest.raises(WeightsError, match="ResNet backbone: only Swin backbones"):
        load_model(tiny_cfg(*SWIN_TINY), ["myotube"], str(resnet))
    _, source = _tiny_source()
    state = to_detectron2(source.state_dict())
    # MaskFormer (v1, semantic segmentation): a plain transformer decoder instead of the masked-attention one.
    v1 = {k: v for k, v in state.items() if not k.startswith("sem_seg_head.predictor.transformer_")}
    v1["sem_seg_head.predictor.transformer.decoder.layers.0.linear1.weight"] = torch.zeros(2, 2)
    torch.save({"model": v1}, tmp_path / "maskformer.pth")
    with pytest.raises(WeightsError, match="not a Mask2Former head") as err:
        load_model(tiny_cfg(*SWIN_TINY), ["myotube"], str(tmp_path / "maskformer.pth"))
    assert "\n" not in str(err.value)
    good = _save_layouts(source, tmp_path)
    for path in good.values():
        data = open(path, "rb").read()
        cut = tmp_path / ("cut_" + path.split("/")[-1])
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(WeightsError, match="truncated or corrupt"):
            load_model(tiny_cfg(*SWIN_TINY), ["myotube"], str(cut))


def test_a_pickle_that_builds_other_objects_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("not today",))

    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": {"backbone.patch_embed.proj.weight": Evil()}}, f)
    with pytest.raises(WeightsError, match="refusing to load builtins.print"):
        load_model(tiny_cfg(*SWIN_TINY), ["myotube"], str(path))


def test_convert_writes_a_hugging_face_folder_that_loads_like_hub_weights(tmp_path, capsys):
    from mask2former.modeling.convert_detectron2 import main

    cfg, source = _tiny_source()
    path = _save_layouts(source, tmp_path)["zoo pickle"]
    assert main([path, str(tmp_path / "hf")]) == 0
    assert "Wrote" in capsys.readouterr().out
    assert (tmp_path / "hf" / "config.json").is_file() and (tmp_path / "hf" / "model.safetensors").is_file()
    loaded, described = load_model(cfg, ["myotube"], str(tmp_path / "hf"))
    assert "Hugging Face" in described
    own, src = loaded.state_dict(), source.state_dict()
    backbone = [k for k in src if k.startswith("model.pixel_level_module.encoder.swin.encoder")]
    assert backbone and all(torch.equal(own[k], src[k]) for k in backbone)
    assert main([str(tmp_path / "nope.pkl"), str(tmp_path / "hf2")]) == 1
    assert "nope.pkl" in capsys.readouterr().err
