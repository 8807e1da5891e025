"""Splits, roots, unlabelled test files and duplicate ids (issue #18): a split that does not exist is an error
naming the splits that do; a wrong ``data.root`` says the folder does not exist; a test file without labels is
read for predictions; ``validate.py`` reports duplicate ids."""

from __future__ import annotations

import json
import logging

import pytest
from test_datasets_layouts import (
    EXPERIMENTS,
    LAYOUTS,
    jsonl,
    make_hateful_memes,
    make_text_csv,
    png,
    write_csv,
)
from test_datasets_streaming import write_shards

from crossfuse.commands import validate
from data import SplitNotFoundError, create_dataset, list_datasets, read_jsonl
from data.report import dataset_report
from engine.builders import build_dataset
from engine.config import load_config

AVAILABLE = {  # the splits each fixture layout of tests/test_datasets_layouts.py has
    "hateful_memes": ["dev_seen", "test_seen", "test_unseen", "train"],
    "mmimdb": ["dev", "test", "train"],
    "food101": ["dev", "test", "train"],
    "snli_ve": ["dev", "test", "train"],
    "table": ["test", "train", "val"],
    "image_folder": ["test", "train", "val"],  # val: carved from train
    "hf_dataset": ["train", "validation"],
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_unknown_split_names_the_splits_that_exist(name, tmp_path):
    make, params, *_ = LAYOUTS[name]
    root = make(tmp_path / name)
    with pytest.raises(SplitNotFoundError) as info:
        create_dataset(name, str(root), "nosuch", **params)
    assert isinstance(info.value, FileNotFoundError)
    assert (info.value.split, info.value.available) == ("nosuch", AVAILABLE[name])
    assert "'nosuch'" in str(info.value) and str(AVAILABLE[name]) in str(info.value)


def test_unknown_split_of_jsonl_webdataset_and_shapes(tmp_path):
    root = make_hateful_memes(tmp_path / "hm")
    with pytest.raises(SplitNotFoundError) as info:
        create_dataset("jsonl", str(root), "nosuch")
    assert info.value.available == AVAILABLE["hateful_memes"]
    write_shards(root, tmp_path / "wds", "train")
    write_shards(root, tmp_path / "wds", "dev_seen")
    with pytest.raises(SplitNotFoundError) as info:
        create_dataset("webdataset", str(tmp_path / "wds"), "nosuch")
    assert info.value.available == ["dev_seen", "train"]
    with pytest.raises(SplitNotFoundError) as info:
        create_dataset("shapes", str(tmp_path / "shapes"), "nosuch", n_train=4, n_val=2, n_test=2, image_size=16)
    assert info.value.available == ["test", "train", "val"]


def test_flat_image_folder_has_train_and_a_carved_val_only(tmp_path):
    for c in ("a", "b"):
        for i in range(5):
            png(tmp_path / c / f"{i}.png")
    with pytest.raises(SplitNotFoundError) as info:
        create_dataset("image_folder", str(tmp_path), "test")
    assert info.value.available == ["train", "val"]


def test_the_config_key_that_named_a_missing_split_is_said(tmp_path):
    make_text_csv(tmp_path)
    overrides = [f"data.root={tmp_path}", "data.test_split=nosuch"]
    with pytest.raises(SplitNotFoundError, match=r"data\.test_split='nosuch'.*\['test', 'train', 'val'\]") as info:
        build_dataset(load_config(EXPERIMENTS / "table.yaml", overrides), "nosuch")
    assert info.value.available == ["test", "train", "val"]
    report = validate.main([str(EXPERIMENTS / "table.yaml"), *overrides])
    assert "['test', 'train', 'val']" in report["nosuch"]["error"] and validate.exit_status(report) == 1


@pytest.mark.parametrize("name", sorted(set(list_datasets()) - {"shapes"}))
def test_missing_root_says_the_folder_does_not_exist(name, tmp_path):
    with pytest.raises(FileNotFoundError, match="data.root .*nowhere.* does not exist") as info:
        create_dataset(name, str(tmp_path / "nowhere"), "train")
    assert not isinstance(info.value, SplitNotFoundError)  # not a split that may be skipped: the whole dataset


def test_test_csv_without_a_label_column_is_unlabelled(tmp_path, caplog):
    """A Kaggle-style test.csv (id,text: no label column) could not be read for predictions."""
    write_csv(tmp_path / "train.csv", ["id", "text", "label"], [["a", "good", "pos"], ["b", "bad", "neg"]])
    write_csv(tmp_path / "test.csv", ["id", "text"], [["c", "fine"], ["d", "awful"]])
    with caplog.at_level(logging.WARNING, logger="data"):
        test = create_dataset("table", str(tmp_path), "test", modalities=["text"], id_column="id")
    assert [r["label"] for r in test] == [None, None] and test.label_names == ["neg", "pos"]
    assert "test.csv has no 'label' column" in caplog.text
    write_csv(tmp_path / "train.csv", ["id", "text"], [["a", "good"]])
    with pytest.raises(Exception, match=r"train\.csv:2: missing column: no 'label' column"):
        create_dataset("table", str(tmp_path), "train", modalities=["text"], id_column="id")


def test_validate_reports_duplicate_ids(tmp_path, capsys):
    root = make_hateful_memes(tmp_path)
    rows = [json.loads(x) for x in (root / "train.jsonl").read_text().splitlines()]
    rows[5]["id"] = rows[2]["id"]
    jsonl(root / "train.jsonl", rows)
    report = validate.main([str(EXPERIMENTS / "hateful_memes.yaml"), f"data.root={root}"])
    assert report["train"]["duplicate_ids"] == {"10003": [f"{root / 'train.jsonl'}:3", f"{root / 'train.jsonl'}:6"]}
    assert not report["train"]["skipped"] and validate.exit_status(report) == 1
    assert f"duplicate ids: 1, e.g. '10003' at {root / 'train.jsonl'}:3, {root / 'train.jsonl'}:6" in \
        capsys.readouterr().out


def test_parallel_translations_are_not_duplicates(tmp_path):
    png(tmp_path / "img" / "a.png")
    path = jsonl(tmp_path / "train.jsonl", [{"id": 1, "img": "img/a.png", "text": t, "label": 0, "lang": lang}
                                            for t, lang in (("a cat", "en"), ("eine Katze", "de"))])
    assert dataset_report(read_jsonl(path))["duplicate_ids"] == {}
