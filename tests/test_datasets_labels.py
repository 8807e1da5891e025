"""One label policy for every reader (issue #18; docs/datasets.md, "Labels").

Surrounding whitespace is stripped; integer labels are the sorted values seen (1..4 gives 4 classes, never an
empty class 0); labels differing only in case are an error naming both spellings, or one class with
``label_case=merge``. Each test runs over every reader whose class names come from the data.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from test_datasets_layouts import EXPERIMENTS, jsonl, make_hateful_memes, make_snli_ve, png, write_csv

from crossfuse.commands import validate
from data import DataError, create_dataset


def _table_csv(root: Path, splits: dict[str, list]) -> dict:
    for split, labels in splits.items():
        write_csv(root / f"{split}.csv", ["text", "label"], [[f"text {i}", x] for i, x in enumerate(labels)])
    return {"modalities": ["text"]}


def _table_jsonl(root: Path, splits: dict[str, list]) -> dict:
    for split, labels in splits.items():
        jsonl(root / f"{split}.jsonl", [{"text": f"text {i}", "label": x} for i, x in enumerate(labels)])
    return {"modalities": ["text"]}


def _jsonl(root: Path, splits: dict[str, list]) -> dict:
    for split, labels in splits.items():
        jsonl(root / f"{split}.jsonl", [{"id": f"{split}{i}", "img": None, "text": f"text {i}", "label": x}
                                        for i, x in enumerate(labels)])
    return {"modalities": ["text"]}


def _hf_files(root: Path, splits: dict[str, list]) -> dict:
    _table_jsonl(root, splits)
    return {"files": "{split}.jsonl", "modalities": ["text"]}


def _hf_saved(root: Path, splits: dict[str, list]) -> dict:
    import datasets

    datasets.DatasetDict({split: datasets.Dataset.from_dict({"text": [f"text {i}" for i in range(len(labels))],
                                                             "label": labels})
                          for split, labels in splits.items()}).save_to_disk(str(root))
    return {"modalities": ["text"]}


def _webdataset(root: Path, splits: dict[str, list]) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    for split, labels in splits.items():
        with tarfile.open(root / f"{split}-000000.tar", "w") as tar:
            for i, x in enumerate(labels):
                for ext, data in (("txt", f"text {i}".encode()), ("cls", str(x).encode())):
                    info = tarfile.TarInfo(f"{split}{i:04d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return {}


def _image_folder(root: Path, splits: dict[str, list]) -> dict:
    for split, labels in splits.items():
        for i, x in enumerate(labels):
            png(root / split / str(x) / f"{i:04d}.png")
    return {"dev_fraction": 0}


READERS = {  # name -> (data.name, writer)
    "table_csv": ("table", _table_csv),
    "table_jsonl": ("table", _table_jsonl),
    "jsonl": ("jsonl", _jsonl),
    "hf_files": ("hf_dataset", _hf_files),
    "hf_saved": ("hf_dataset", _hf_saved),
    "webdataset": ("webdataset", _webdataset),
    "image_folder": ("image_folder", _image_folder),
}
FOLDERS = {"image_folder"}  # class names are folder names: no surrounding whitespace to strip


def _read(reader: str, root: Path, splits: dict[str, list], split: str = "train", **params):
    name, write = READERS[reader]
    params = {**write(root, splits), **params}
    return create_dataset(name, str(root), split, **params)


def _labels(ds) -> list:
    """Class names of the rows in the order they were written (the training stream of shards is shuffled)."""
    items = ds.records if hasattr(ds, "records") else list(ds)
    return [ds.label_names[r["label"]] for r in sorted(items, key=lambda r: r["id"])]


@pytest.mark.parametrize("reader", sorted(READERS))
def test_integer_labels_are_the_sorted_values_seen(reader, tmp_path):
    train = [1, 2, 10, 4, 2, 1]
    ds = _read(reader, tmp_path, {"train": train, "test": [4, 0]})
    assert ds.label_names == ["1", "2", "4", "10"]  # 4 classes, in numeric order; no empty class 0 or 3
    assert sorted(_labels(ds)) == sorted(str(x) for x in train)
    with pytest.raises(DataError, match="label '?0'? is not one of"):  # never silently class '1' (index 0)
        _labels(_read(reader, tmp_path / "again", {"train": train, "test": [4, 0]}, split="test"))


def test_an_integer_is_an_index_only_into_names_that_are_not_integers(tmp_path):
    splits = {"train": ["1", "2", "other"], "test": ["0"], "val": [1]}
    with pytest.raises(DataError, match="label '0' is not one of \\['1', '2', 'other'\\]$"):
        _read("table_csv", tmp_path, splits, split="test")
    assert _read("table_csv", tmp_path, {"train": ["cat", "dog"], "val": [1]}, split="val")[0]["label"] == 1


@pytest.mark.parametrize("reader", sorted(set(READERS) - FOLDERS))
def test_surrounding_whitespace_is_stripped(reader, tmp_path):
    ds = _read(reader, tmp_path, {"train": ["Politics ", " Sport", "Politics"]})
    assert ds.label_names == ["Politics", "Sport"] and _labels(ds) == ["Politics", "Sport", "Politics"]
    test = _read(reader, tmp_path / "t", {"train": ["Politics", "Sport"], "test": ["Sport\t", "Politics "]},
                 split="test")
    assert _labels(test) == ["Sport", "Politics"]


@pytest.mark.parametrize("reader", sorted(READERS))
def test_case_variants_are_an_error_naming_both_spellings(reader, tmp_path):
    splits = {"train": ["business", "Business", "sport", "business"]}
    with pytest.raises(DataError, match="'Business'.*'business'.*differ only in case.*label_case=merge"):
        _read(reader, tmp_path, splits)
    merged = _read(reader, tmp_path / "m", splits, label_case="merge")
    assert merged.label_names == ["business", "sport"]  # the most frequent spelling names the class
    assert _labels(merged) == ["business", "business", "sport", "business"]


def test_a_case_variant_in_another_split_is_named(tmp_path):
    splits = {"train": ["Business", "Sport"], "test": ["business"]}
    with pytest.raises(DataError, match=r"test\.csv:2: unknown label: label 'business' .*differs only in case "
                                        "from 'Business'"):
        _read("table_csv", tmp_path, splits, split="test")
    assert _labels(_read("table_csv", tmp_path, splits, split="test", label_case="merge")) == ["Business"]


def test_hf_dataset_splits_share_the_training_labels(tmp_path):
    ds = _read("hf_saved", tmp_path, {"train": ["a", "b", "c"], "validation": ["c", "a"]}, split="validation")
    assert ds.label_names == ["a", "b", "c"] and _labels(ds) == ["c", "a"]


def test_fixed_label_sets_strip_whitespace(tmp_path):
    root = make_snli_ve(tmp_path / "snli")
    rows = [json.loads(x) for x in (root / "snli_ve_dev.jsonl").read_text().splitlines()]
    rows[0]["gold_label"] = " entailment "
    jsonl(root / "snli_ve_dev.jsonl", rows)
    ds = create_dataset("snli_ve", str(root), "dev")
    assert ds.label_names[ds[0]["label"]] == "entailment"
    rows[1]["gold_label"] = "Neutral"
    jsonl(root / "snli_ve_dev.jsonl", rows)
    with pytest.raises(DataError, match="'Neutral' .*differs only in case from 'neutral'"):
        create_dataset("snli_ve", str(root), "dev")
    assert ds.label_names[create_dataset("snli_ve", str(root), "dev", label_case="merge")[1]["label"]] == "neutral"


def test_validate_prints_the_label_map(tmp_path, capsys):
    _table_csv(tmp_path, {"train": [1, 2, 3, 4], "val": [1, 4], "test": [2, 3]})
    report = validate.main([str(EXPERIMENTS / "table.yaml"), f"data.root={tmp_path}"])
    assert report["train"]["label_map"] == ["1", "2", "3", "4"]
    assert "label map: 0='1', 1='2', 2='3', 3='4'" in capsys.readouterr().out


def test_hateful_memes_integer_labels_index_the_named_classes(tmp_path):
    ds = create_dataset("hateful_memes", str(make_hateful_memes(tmp_path)), "train")
    assert ds.label_names == ["not_hateful", "hateful"] and [r["label"] for r in ds][:2] == [0, 1]
