"""Reuse of trained models: init_from (loaded / skipped / new tensors), layer-wise LR decay and LP-FT."""

import json

import pytest
import torch
from conftest import tiny_overrides
from safetensors.torch import load_file

from crossfuse.commands import train
from engine.builders import build_tokenizer
from engine.config import load_config
from engine.finetune import encoder_depths, layer_id, layer_lr_scale
from engine.init_from import init_from_run, load_matching
from engine.optim import param_groups
from models import MultimodalModel
from models.errors import CheckpointMismatchError


def _saved(run):
    return load_file(str(run / "model" / "model.safetensors"))


def _cfg(tmp_path, run, **extra):
    return load_config(None, tiny_overrides(tmp_path, "new", **{"model.fusion.name": "concat",
                                                                  "train.init_from": str(run), **extra}))


def test_init_from_run_new_label_set(tiny_run, tmp_path):
    cfg = _cfg(tmp_path, tiny_run)
    tokenizer = build_tokenizer(cfg, tiny_run / "model")
    model, report = init_from_run(cfg, tiny_run, 3, ["a", "b", "c"], False, tokenizer)
    saved, own = _saved(tiny_run), model.state_dict()
    assert report.loaded and all(not k.startswith("head.") for k in report.loaded)
    assert sorted(report.skipped) == sorted(k for k in saved if k.startswith("head."))
    assert report.new == [] and report.unused == []
    for name in report.loaded:
        assert torch.equal(own[name], saved[name]), name
    assert model.label_names == ["a", "b", "c"] and model(_batch(tokenizer))["logits"].shape == (2, 3)
    assert report.summary().startswith(f"init_from {tiny_run / 'model'}: {len(report.loaded)} tensors loaded")


def _batch(tokenizer):
    enc = tokenizer(["there is a red circle", "hay un cuadrado verde"], padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
            "pixel_values": torch.zeros(2, 3, 32, 32), "text_present": torch.ones(2, dtype=torch.bool),
            "image_present": torch.ones(2, dtype=torch.bool)}


def test_shape_mismatch_is_an_error_unless_skipped(tiny_run, tmp_path):
    cfg = _cfg(tmp_path, tiny_run, **{"model.fusion.dim": 48})
    tokenizer = build_tokenizer(cfg, tiny_run / "model")
    with pytest.raises(CheckpointMismatchError, match=r"(?s)fusion\.\S+: saved .*train.init_skip=\[fusion\.\*\]"):
        init_from_run(cfg, tiny_run, 2, ["false", "true"], False, tokenizer)
    cfg = _cfg(tmp_path, tiny_run, **{"model.fusion.dim": 48, "train.init_skip": "[fusion.*]"})
    _, report = init_from_run(cfg, tiny_run, 2, ["false", "true"], False, tokenizer)
    assert any(k.startswith("fusion.") for k in report.skipped)
    assert all(k.startswith(("text.", "vision.")) for k in report.loaded)


def test_unused_and_new_tensors_are_reported():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    state = {"0.weight": torch.ones(2, 2), "0.bias": torch.ones(2), "9.weight": torch.ones(1)}
    report = load_matching(model, state)
    assert report.loaded == ["0.weight", "0.bias"] and report.unused == ["9.weight"]
    assert report.new == ["1.weight", "1.bias"] and torch.equal(model[0].weight, torch.ones(2, 2))


def test_train_from_run_with_linear_probe_then_finetune(tiny_run, tmp_path, caplog):
    saved = _saved(tiny_run)
    common = {"model.fusion.name": "concat", "train.init_from": str(tiny_run), "train.max_steps": 2}
    with caplog.at_level("INFO", logger="engine"):
        train.main(tiny_overrides(tmp_path, "lp", **common, **{"train.linear_probe_steps": 2}))
    lines = [r.getMessage() for r in caplog.records if "tensors loaded" in r.getMessage()]
    assert len(lines) == 1 and "init_report.json" in lines[0]  # one line; every tensor is in the file
    report = json.loads((tmp_path / "lp" / "init_report.json").read_text())
    assert set(report["loaded"]) | set(report["skipped"]) == set(saved)
    probed = _saved(tmp_path / "lp")
    enc = [k for k in saved if k.startswith(("text.", "vision.")) and saved[k].dtype.is_floating_point]
    assert all(torch.equal(probed[k], saved[k]) for k in enc)  # encoders untouched while probing
    assert any(not torch.equal(probed[k], saved[k]) for k in saved if k.startswith("fusion."))
    train.main(tiny_overrides(tmp_path, "lpft", **common, **{"train.linear_probe_steps": 1}))
    tuned = _saved(tmp_path / "lpft")
    assert any(not torch.equal(tuned[k], saved[k]) for k in enc)  # then fine-tuned


def test_layer_decay_scales_encoder_layers(tiny_run):
    model = MultimodalModel.from_pretrained(tiny_run)
    depths = encoder_depths(model)
    assert depths == {"text.": 1, "vision.": 1}
    assert layer_id("text.model.embeddings.word_embeddings.weight", 1) == 0
    assert layer_id("text.model.encoder.layer.0.attention.self.query.weight", 1) == 1
    assert layer_id("vision.model.norm.weight", 1) == 2
    assert layer_id("vision.model.layer3.0.conv1.weight", 4) == 3  # ResNet stages
    groups = param_groups(model, lr=1.0, encoder_lr=0.1, weight_decay=0.01, layer_decay=0.5)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["text.model.embeddings.word_embeddings.weight"])] == pytest.approx(0.1 * 0.25)
    assert lr_of[id(named["text.model.encoder.layer.0.output.dense.weight"])] == pytest.approx(0.1 * 0.5)
    assert lr_of[id(named["vision.model.norm.weight"])] == pytest.approx(0.1)
    assert all(lr == 1.0 for n, p in named.items() if n.startswith(("fusion.", "head.")) for lr in [lr_of[id(p)]])
    assert layer_lr_scale("fusion.mlp.0.weight", depths, 0.5) == 1.0
    plain = param_groups(model, lr=1.0, encoder_lr=0.1, weight_decay=0.01)
    assert {g["name"]: g["lr"] for g in plain}["encoder"] == pytest.approx(0.1)


def _bn_stats(run) -> dict[str, torch.Tensor]:
    return {k: v for k, v in _saved(run).items() if k.startswith("vision.") and "running_" in k}


def test_lpft_probe_keeps_batchnorm_statistics_of_a_cnn_tower(tmp_path):
    """While LP-FT probes, the towers are in eval mode: a ResNet's BatchNorm statistics stay those it was given
    (a probe of fixed features), and move once fine-tuning starts; a frozen tower never moves them."""
    resnet = {"model.vision.name": "test_resnet", "model.vision.kwargs": "{}", "model.fusion.name": "concat"}
    train.main(tiny_overrides(tmp_path, "base", **resnet, **{"train.max_steps": 1}))
    base = _bn_stats(tmp_path / "base")
    assert base
    common = {**resnet, "train.init_from": str(tmp_path / "base"), "train.max_steps": 3,
              "data.eval_split": "''", "data.test_split": "null"}
    train.main(tiny_overrides(tmp_path, "probe", **common, **{"train.linear_probe_steps": 3}))
    assert all(torch.equal(base[k], v) for k, v in _bn_stats(tmp_path / "probe").items())
    train.main(tiny_overrides(tmp_path, "frozen", **common, **{"model.vision.freeze": "true"}))
    assert all(torch.equal(base[k], v) for k, v in _bn_stats(tmp_path / "frozen").items())
    train.main(tiny_overrides(tmp_path, "tuned", **common, **{"train.linear_probe_steps": 1}))
    tuned = _bn_stats(tmp_path / "tuned")
    assert any(not torch.equal(base[k], v) for k, v in tuned.items() if "running_mean" in k)
