import os

import numpy as np
import pytest
import torch

from mask2former.data.coco_records import load_coco_instances
from mask2former.data.mapper import MyotubeDatasetMapper, collate_samples
from mask2former.engine.trainer import loss_terms
from mask2former.errors import WeightsError
from mask2former.modeling.build import build_model
from mask2former.modeling.weights import QUERY_KEYS, load_model
from tests.helpers import SWIN_TINY, make_coco_dataset, tiny_cfg


def _batch(tmp_path, n_images=2, size=128, seed=0, augment=False):
    make_coco_dataset(str(tmp_path), {"train.json": n_images}, size=size, seed=seed)
    records = load_coco_instances(tmp_path / "annotations" / "train.json", tmp_path / "images")
    cfg = tiny_cfg("INPUT.AUGMENT", augment)
    mapper = MyotubeDatasetMapper(cfg, is_train=True)
    rng = np.random.default_rng(0)
    return cfg, collate_samples([mapper(r, rng) for r in records])


def _step_loss(model, batch):
    out = model(pixel_values=batch["pixel_values"], output_auxiliary_logits=True)
    return loss_terms(model, out, batch)


def test_one_training_step_is_finite_and_backward_reaches_every_part(tmp_path):
    torch.manual_seed(0)
    cfg, batch = _batch(tmp_path)
    model = build_model(cfg, ["myotube"]).train()
    losses = _step_loss(model, batch)
    assert set(losses) == {"loss_ce", "loss_mask", "loss_dice", "loss_aux"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    for part in (
        "pixel_level_module.encoder",
        "pixel_level_module.decoder",
        "transformer_module",
        "class_predictor",
    ):
        assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if part in n), part


def test_thirty_steps_on_a_fixed_batch_drive_the_loss_down(tmp_path):
    torch.manual_seed(0)
    cfg, batch = _batch(tmp_path)
    model = build_model(cfg, ["myotube"]).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    history = []
    for _ in range(30):
        total = sum(_step_loss(model, batch).values())
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append(total.item())
    assert np.mean(history[-5:]) < 0.75 * np.mean(history[:3]), history


def test_image_without_instances_trains(tmp_path):
    torch.manual_seed(0)
    make_coco_dataset(str(tmp_path), {"train.json": 3}, size=128, empty_images=2)
    records = load_coco_instances(tmp_path / "annotations" / "train.json", tmp_path / "images")[:2]
    assert all(not r["annotations"] for r in records)
    cfg = tiny_cfg()
    batch = collate_samples([MyotubeDatasetMapper(cfg)(r, np.random.default_rng(0)) for r in records])
    assert all(len(m) == 0 for m in batch["mask_labels"])
    model = build_model(cfg, ["myotube"]).train()
    total = sum(_step_loss(model, batch).values())
    assert torch.isfinite(total)
    total.backward()


def test_hf_directory_weights_load_and_keep_learned_queries(tmp_path):
    torch.manual_seed(0)
    source_cfg = tiny_cfg("MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 10)
    source = build_model(source_cfg, ["cat", "dog", "car"])  # a "COCO" model with other classes
    source.save_pretrained(tmp_path / "hf")
    cfg = tiny_cfg("MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 16)
    model, described = load_model(cfg, ["myotube"], str(tmp_path / "hf"))
    assert "Hugging Face" in described
    src, dst = source.state_dict(), model.state_dict()
    for key in QUERY_KEYS:
        assert dst[key].shape[0] == 16
        assert torch.equal(dst[key][:10], src[key])  # the learned queries survive
        assert not torch.equal(dst[key][10:], torch.zeros_like(dst[key][10:]))
    assert dst["class_predictor.weight"].shape[0] == 2  # myotube + no-object
    backbone = [k for k in src if k.startswith("model.pixel_level_module.encoder.")]
    assert backbone and all(torch.equal(src[k], dst[k]) for k in backbone)


def test_project_checkpoint_loads_exactly(tmp_path):
    cfg = tiny_cfg()
    source = build_model(cfg, ["myotube"])
    path = tmp_path / "model_final.pth"
    torch.save({"model": source.state_dict(), "class_names": ["myotube"]}, path)
    model, _ = load_model(cfg, ["myotube"], str(path))
    for k, v in source.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k


@pytest.mark.parametrize(
    "weights, expected",
    [
        ("/nonexistent/model_final.pth", "checkpoint not found"),
        ("/nonexistent/hf_folder", "folder not found"),
        # The guide's download location, not downloaded yet: a folder, not a hub repo "weights/...".
        ("weights/mask2former-swin-base-coco-instance", "folder not found"),
        (
            "facebook/mask2former-swin-base-coco-instance",
            "hf download facebook/mask2former-swin-base-coco-instance",
        ),
    ],
)
def test_missing_weights_give_one_clear_error(weights, expected, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsError) as err:
        load_model(tiny_cfg(), ["myotube"], weights)
    message = str(err.value)
    assert expected in message and "\n" not in message and weights in message
    assert "huggingface-cli" not in message  # not installed by current huggingface_hub releases


def test_weights_kind_tells_local_folders_from_hub_ids(tmp_path, monkeypatch):
    from mask2former.modeling.weights import weights_kind

    monkeypatch.chdir(tmp_path)
    assert weights_kind("facebook/mask2former-swin-base-coco-instance") == "hub_id"
    assert weights_kind("weights/anything") == "hf_dir"
    assert weights_kind("models/coco") == "hub_id"  # no local models/ folder: could be a hub repo
    (tmp_path / "models").mkdir()
    assert weights_kind("models/coco") == "hf_dir"  # its first folder is here: a local path
    assert (
        weights_kind("./coco") == "hf_dir"
        and weights_kind("out/model_final.pth") == "checkpoint"
        and weights_kind("") == "none"
    )


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    other = build_model(tiny_cfg("MODEL.RESNET.EMBEDDING_SIZE", 32), ["myotube"])
    path = tmp_path / "other.pth"
    torch.save({"model": other.state_dict()}, path)
    with pytest.raises(WeightsError, match="does not fit the configured architecture"):
        load_model(tiny_cfg(), ["myotube"], str(path))


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read checkpoint"):
        load_model(tiny_cfg(), ["myotube"], str(path))
    assert os.path.getsize(path) == len(b"not a checkpoint")


def test_the_model_ignores_pixel_mask_so_batches_do_not_carry_one(tmp_path):
    # The loader ships no pixel_mask (padding is zero-valued pixels). If a transformers release starts
    # using it, outputs change here and the mapper must build one again.
    torch.manual_seed(0)
    cfg, batch = _batch(tmp_path)
    assert "pixel_mask" not in batch
    model = build_model(cfg, ["myotube"]).eval()
    half = torch.ones(batch["pixel_values"].shape[0], *batch["pixel_values"].shape[2:], dtype=torch.long)
    half[:, :, 64:] = 0
    with torch.no_grad():
        plain = model(pixel_values=batch["pixel_values"])
        masked = model(pixel_values=batch["pixel_values"], pixel_mask=half)
    torch.testing.assert_close(plain.masks_queries_logits, masked.masks_queries_logits)
    torch.testing.assert_close(plain.class_queries_logits, masked.class_queries_logits)


CONV_BACKBONES = {
    "resnet": (
        "MODEL.BACKBONE.NAME",
        "resnet",
        "MODEL.RESNET.EMBEDDING_SIZE",
        16,
        "MODEL.RESNET.HIDDEN_SIZES",
        "[16, 24, 32, 48]",
        "MODEL.RESNET.DEPTHS",
        "[1, 1, 1, 1]",
        "MODEL.RESNET.LAYER_TYPE",
        "basic",
    ),
    "convnext": (
        "MODEL.BACKBONE.NAME",
        "convnext",
        "MODEL.CONVNEXT.HIDDEN_SIZES",
        "[16, 24, 32, 48]",
        "MODEL.CONVNEXT.DEPTHS",
        "[1, 1, 1, 1]",
    ),
}


@pytest.mark.parametrize("backbone", list(CONV_BACKBONES))
def test_convolutional_backbones_train_and_their_checkpoints_rebuild_themselves(backbone, tmp_path):
    from mask2former.modeling.weights import checkpoint_architecture

    torch.manual_seed(0)
    cfg, batch = _batch(tmp_path)
    conv_cfg = tiny_cfg(*CONV_BACKBONES[backbone])
    model = build_model(conv_cfg, ["myotube"]).train()
    encoder = type(model.model.pixel_level_module.encoder).__name__
    assert backbone in encoder.lower(), encoder
    total = sum(_step_loss(model, batch).values())
    total.backward()
    backbone_grads = [
        p.grad
        for n, p in model.named_parameters()
        if n.startswith("model.pixel_level_module.encoder.") and p.requires_grad
    ]
    assert backbone_grads and all(g is not None and torch.isfinite(g).all() for g in backbone_grads)
    # A checkpoint names its backbone: a Swin config file predicting with it builds the checkpoint's.
    path = str(tmp_path / "conv.pth")
    torch.save({"model": model.state_dict(), "cfg": conv_cfg.dump(), "class_names": ["myotube"]}, path)
    adopted, changes = checkpoint_architecture(tiny_cfg(*SWIN_TINY), path)
    assert adopted.MODEL.BACKBONE.NAME == backbone and any(
        c.startswith("MODEL.BACKBONE.NAME") for c in changes
    )
    loaded = load_model(adopted, ["myotube"], path)[0]
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
