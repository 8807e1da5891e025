"""Cross-lingual transfer: per-language evaluation of a one-language run, parallel data, multilingual distillation."""

import json

import conftest
import numpy as np
import pytest
import torch
from conftest import tiny_overrides
from safetensors.torch import load_file

from crossfuse.commands import distill_multilingual, evaluate, train
from data import generate_shapes
from data.parallel import ParallelPair, read_parallel
from engine.builders import build_tokenizer
from engine.config import load_config
from models import MultimodalModel
from transfer.multilingual import embed, translation_retrieval

LANGS = {"de", "en", "es", "fr", "ru"}


@pytest.fixture(scope="module")
def en_run(tmp_path_factory):
    """A tiny run trained on English only (pooled-input fusion, so distillation aligns what the fusion reads)."""
    out = tmp_path_factory.mktemp("en")
    train.main(tiny_overrides(out, "en", **{"train.max_steps": 4, "model.fusion.name": "gated",
                                            "model.text.pooling": "mean",
                                            "data.languages": "[en]", "eval.modality_ablation": "false"}))
    return out / "en"


@pytest.fixture(scope="module")
def data_root():
    """The session's tiny shapes dataset (the same arguments as tiny_overrides, so generated at most once)."""
    return generate_shapes(conftest._DATA_ROOT, n_train=48, n_val=16, n_test=16, image_size=32)


def test_one_language_run_reports_every_language_and_its_gap(en_run):
    res = json.loads((en_run / "metrics.json").read_text())["results"]["val"]
    assert set(res["per_language"]) == LANGS  # trained on en, evaluated zero-shot on all
    assert res["language_gap"]["en"] == 0.0
    for lang in LANGS:
        gap = res["per_language"][lang]["accuracy"] - res["per_language"]["en"]["accuracy"]
        assert res["language_gap"][lang] == pytest.approx(gap)


def test_read_parallel_tsv_and_jsonl(data_root, tmp_path):
    pairs = read_parallel(data_root / "parallel.tsv")
    assert {p.tgt_lang for p in pairs} == LANGS - {"en"} and {p.src_lang for p in pairs} == {"en"}
    assert len(read_parallel(data_root / "parallel.tsv", ["ru"])) == len(pairs) // 4
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"src": "a red circle", "tgt": "ein roter Kreis", "tgt_lang": "de"}\n\n')
    (pair,) = read_parallel(path)
    assert (pair.src, pair.tgt, pair.tgt_lang) == ("a red circle", "ein roter Kreis", "de")
    bad = tmp_path / "bad.tsv"
    bad.write_text("english\tgerman\nhello\thallo\n")
    with pytest.raises(ValueError, match="src_text/tgt_text"):
        read_parallel(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_parallel(tmp_path / "missing.tsv")


def _translation_gap(teacher, student, tokenizer, pairs) -> float:
    """How far the student puts translations from the teacher's vectors of their source sentences (MSE)."""
    with torch.no_grad():
        target = embed(teacher.eval(), tokenizer, [p.src for p in pairs])
        return torch.nn.functional.mse_loss(embed(student.eval(), tokenizer, [p.tgt for p in pairs]), target).item()


def test_distillation_through_the_trainer_aligns_translations_to_the_teacher(en_run, data_root, tmp_path):
    """multilingual_distill trains in the engine's loop: the student tower moves translations onto the teacher's
    vectors, the teacher run is untouched, and the log, checkpoints and metrics are a normal run's."""
    cfg = load_config(en_run / "config.yaml")
    tokenizer = build_tokenizer(cfg, en_run / "model")
    pairs = read_parallel(data_root / "parallel.tsv")
    saved = load_file(str(en_run / "model" / "model.safetensors"))
    teacher = MultimodalModel.from_pretrained(en_run).text
    out = tmp_path / "ml"
    report = distill_multilingual.main([str(en_run), "--out", str(out), "--steps", "30", "--batch-size", "32",
                                        "--lr", "3e-3", "train.save_every=15", "run.progress_bar=false"])
    student = MultimodalModel.from_pretrained(out).text
    before = _translation_gap(teacher, teacher, tokenizer, pairs)  # the teacher reads translations as it is
    assert _translation_gap(teacher, student, tokenizer, pairs) < 0.5 * before
    losses = [json.loads(x)["train/loss"] for x in (out / "log.jsonl").read_text().splitlines() if "train/loss" in x]
    assert len(losses) == 30 and np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert all(torch.equal(v, load_file(str(en_run / "model" / "model.safetensors"))[k]) for k, v in saved.items())
    assert [p.name for p in (out / "checkpoints").iterdir()] and report["steps"] == 30
    assert set(report["results"]["val"]["per_language"]) == LANGS


def test_translation_retrieval_counts_matches_per_language(en_run):
    cfg = load_config(en_run / "config.yaml")
    encoder = MultimodalModel.from_pretrained(en_run).text
    tokenizer = build_tokenizer(cfg, en_run / "model")
    same = [ParallelPair(s, s, "en", "xx") for s in ["there is a red circle", "there is a blue square",
                                                    "there are two crosses", "there is a white triangle"]]
    swapped = [ParallelPair(p.src, same[(i + 1) % 4].tgt, "en", "yy") for i, p in enumerate(same)]
    acc = translation_retrieval(encoder, tokenizer, same + swapped)
    assert acc == {"xx": 1.0, "yy": 0.0, "mean": 0.5}


def test_distill_script_swaps_the_text_tower_and_evaluates(en_run, tmp_path):
    out = tmp_path / "ml"
    report = distill_multilingual.main([str(en_run), "--out", str(out), "--steps", "3", "--batch-size", "8"])
    assert report["retrieval_after"].keys() == report["retrieval_before"].keys()
    original, swapped = MultimodalModel.from_pretrained(en_run), MultimodalModel.from_pretrained(out)
    orig_state, new_state = original.state_dict(), swapped.state_dict()
    assert any(not torch.equal(orig_state[k], new_state[k]) for k in orig_state if k.startswith("text."))
    assert all(torch.equal(orig_state[k], new_state[k]) for k in orig_state if not k.startswith("text."))
    res = evaluate.main([str(out), "--out", str(tmp_path / "e.json")])
    assert set(res["val"]["per_language"]) == LANGS and res["val"]["language_gap"]["en"] == 0.0
    with pytest.raises(FileExistsError, match="already holds a trained model"):
        distill_multilingual.main([str(en_run), "--out", str(out), "--steps", "1"])
