"""Missing modalities at the model level: absent inputs have no influence, ablations, modality dropout.

``tests/test_fusion.py`` checks the fusion contract on hand-made features; these tests go through the whole
:class:`MultimodalModel` (towers included), for every registered fusion method, and through ``train.main``.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_overrides

from crossfuse.commands import train
from fusion import list_fusions
from fusion.registry import get_fusion_class
from models import MultimodalModel

VOCAB, B, LENGTH, SIZE = 40, 6, 7, 32
TINY_TEXT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
TEXT_ABSENT = torch.tensor([False, True, False, True, True, False])
IMAGE_ABSENT = torch.tensor([True, False, False, True, False, False])  # row 3 has neither: still defined


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def model_cfg(fusion: str, modality_dropout: dict | None = None) -> dict:
    return {
        "text": {"name": None, "tokenizer": None, "pretrained": True, "pooling": "cls", "freeze": False,
                 "unfreeze_last_n": 0, "gradient_checkpointing": False, "tiny": TINY_TEXT},
        "vision": {"name": "vit_tiny_patch16_224", "pretrained": False, "checkpoint": None, "freeze": False,
                   "kwargs": {"img_size": SIZE, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2},
                   "gradient_checkpointing": False, "channels_last": False},
        "fusion": {"name": fusion, "dim": 32, "dropout": 0.0, "params": {}},
        "head": {"hidden": 0, "dropout": 0.0},
        "modality_dropout": dict(modality_dropout or {}),
    }


def build(fusion: str, **kwargs) -> MultimodalModel:
    torch.manual_seed(0)
    return MultimodalModel(model_cfg(fusion, **kwargs), num_outputs=3, vocab_size=VOCAB)


def make_batch(b: int = B, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, LENGTH, dtype=torch.long)
    mask[0, 3:] = 0
    return {"input_ids": torch.randint(1, VOCAB, (b, LENGTH), generator=g), "attention_mask": mask,
            "pixel_values": torch.randn(b, 3, SIZE, SIZE, generator=g),
            "text_present": torch.ones(b, dtype=torch.bool), "image_present": torch.ones(b, dtype=torch.bool)}


def scramble(batch: dict, modality: str, rows: torch.Tensor, seed: int = 1) -> dict:
    """Copy of ``batch`` with new random input for ``modality`` in ``rows``."""
    g = torch.Generator().manual_seed(seed)
    out = {k: v.clone() for k, v in batch.items()}
    if modality == "text":
        out["input_ids"][rows] = torch.randint(1, VOCAB, (int(rows.sum()), LENGTH), generator=g)
    else:
        out["pixel_values"][rows] = torch.randn(int(rows.sum()), 3, SIZE, SIZE, generator=g) * 3
    return out


@pytest.mark.parametrize("name", list_fusions())
def test_absent_modality_input_has_no_influence(name):
    """Samples marked absent give finite outputs that do not depend on that modality's input; present ones do."""
    model = build(name).eval()
    reads = get_fusion_class(name).modalities
    batch = make_batch()
    batch["text_present"], batch["image_present"] = ~TEXT_ABSENT, ~IMAGE_ABSENT
    with torch.no_grad():
        ref = model(batch)["logits"]
        assert ref.shape == (B, 3) and torch.isfinite(ref).all()
        for modality, absent in (("text", TEXT_ABSENT), ("image", IMAGE_ABSENT)):
            if modality not in reads:
                continue
            # New input only where the modality is absent: no output changes at all.
            torch.testing.assert_close(model(scramble(batch, modality, absent))["logits"], ref)
            # New input where it is present (and the other modality too): those outputs change.
            other = IMAGE_ABSENT if modality == "text" else TEXT_ABSENT
            rows = ~absent & ~other if len(reads) == 2 else ~absent
            changed = model(scramble(batch, modality, ~absent))["logits"]
            assert (changed[rows] - ref[rows]).abs().amax(-1).min() > 1e-6, f"{name}: present {modality} unused"


@pytest.mark.parametrize("name", list_fusions())
def test_drop_equals_marking_every_sample_absent(name):
    """The evaluation ablation ``model(batch, drop=(m,))`` is the same as ``<m>_present = False`` everywhere."""
    model = build(name).eval()
    batch = make_batch()
    with torch.no_grad():
        for modality in get_fusion_class(name).modalities:
            marked = {**batch, f"{modality}_present": torch.zeros(B, dtype=torch.bool)}
            dropped = model(batch, drop=(modality,))
            torch.testing.assert_close(dropped["logits"], model(marked)["logits"])
            assert not dropped[modality].present.any()


def test_modality_dropout_rates_and_never_both():
    """Training-mode dropout marks text absent with p_text, image with p_image among the rest, never both."""
    model = build("concat", modality_dropout={"text": 0.5, "image": 0.4}).train()
    batch = make_batch(b=2000)
    batch["image_present"][:100] = False  # already missing an image: must keep its text
    torch.manual_seed(0)
    with torch.no_grad():
        out = model(batch)
    text, image = out["text"].present, out["image"].present
    assert (text | image).all()
    assert text[:100].all()
    text_rate = 1 - text[100:].float().mean().item()
    image_rate = 1 - image[100:].float().mean().item()
    assert abs(text_rate - 0.5) < 0.05
    assert abs(image_rate - 0.4 * 0.5) < 0.05  # the image is only dropped where the text was kept
    with torch.no_grad():  # evaluation never drops
        out = model.eval()(batch)
    assert out["text"].present.all() and (out["image"].present == batch["image_present"]).all()


def test_dropped_samples_ignore_their_input_in_training():
    """A sample whose text is dropped during training gets the output of a sample with no text at all."""
    model = build("concat", modality_dropout={"text": 1.0}).train()
    model.text.eval()  # BERT's own dropout would make the two calls differ for an unrelated reason
    batch = make_batch()
    with torch.no_grad():
        dropped = model(batch)["logits"]
        scrambled = model(scramble(batch, "text", torch.ones(B, dtype=torch.bool)))["logits"]
        absent = model.eval()(batch, drop=("text",))["logits"]
    torch.testing.assert_close(dropped, scrambled)
    torch.testing.assert_close(dropped, absent)


def test_train_with_modality_dropout_end_to_end(tmp_path):
    """train.main with modality dropout trains, saves it with the model, and reports both ablations."""
    train.main(tiny_overrides(tmp_path, "md", **{"train.max_steps": 4, "model.fusion.name": "gated",
                                                 "model.modality_dropout": "{text: 0.3, image: 0.3}"}))
    run = tmp_path / "md"
    saved = json.loads((run / "model" / "crossfuse.json").read_text())
    assert saved["model"]["modality_dropout"] == {"text": 0.3, "image": 0.3}
    assert MultimodalModel.from_pretrained(run).modality_dropout == {"text": 0.3, "image": 0.3}
    results = json.loads((run / "metrics.json").read_text())["results"]
    for split in ("val", "test"):
        ablation = results[split]["ablation"]
        assert set(ablation) == {"no_text", "no_image"}
        for metrics in ablation.values():
            assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["n"] == results[split]["overall"]["n"]


@pytest.mark.parametrize("bad", [{"txt": 0.2}, {"image": 1.5}])
def test_bad_modality_dropout_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="model.modality_dropout"):
        build("concat", modality_dropout=bad)
