"""Tiny fixture datasets in each real on-disk layout, and every registered reader reading its own layout.

The ``make_*`` builders are shared with tests/test_datasets_errors.py, test_datasets_train.py and test_validate.py.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data import create_dataset, dataset_params, list_datasets
from data.mmimdb import GENRES
from engine.config import load_config

EXPERIMENTS = Path(__file__).resolve().parent.parent / "configs" / "experiments"
COLOURS = [(220, 30, 30), (30, 200, 40), (40, 60, 220)]


def png(path: Path, colour=(200, 0, 0), size: int = 16, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(len(str(path))).integers(0, 40, (size, size, 3))
    Image.fromarray(np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)).save(path, format=fmt)
    return path


def jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def make_hateful_memes(root: Path) -> Path:
    """img/NNNNN.png + train (12) / dev_seen (4) / test_seen (4) / test_unseen (4, no labels) jsonl."""
    n = 0

    def rows(count: int, labelled: bool = True) -> list[dict]:
        nonlocal n
        out = []
        for i in range(count):
            n += 1
            png(root / "img" / f"{n:05d}.png", COLOURS[i % 2])
            row = {"id": 10000 + n, "img": f"img/{n:05d}.png", "text": f"meme {'bad' if i % 2 else 'nice'} {n}"}
            out.append({**row, "label": i % 2} if labelled else row)
        return out

    jsonl(root / "train.jsonl", rows(12))
    jsonl(root / "dev_seen.jsonl", rows(4))
    jsonl(root / "test_seen.jsonl", rows(4))
    jsonl(root / "test_unseen.jsonl", rows(4, labelled=False))
    return root


def _movie(i: int) -> tuple[str, list[str]]:
    genres = [GENRES[i % 3], GENRES[3 + i % 2]]
    return f"a story about {' and '.join(genres).lower()} number {i}", genres


def make_mmimdb_jsonl(root: Path) -> Path:
    """MMBT layout: <split>.jsonl with img (or image) paths and a list of genres."""
    for split, count in (("train", 12), ("dev", 6), ("test", 4)):
        rows = []
        for i in range(count):
            text, genres = _movie(i)
            png(root / "images" / f"{split}{i}.jpeg", COLOURS[i % 3], fmt="JPEG")
            key = "img" if i % 2 else "image"
            rows.append({"id": f"{split}{i}", "text": text, key: f"images/{split}{i}.jpeg", "label": genres})
        jsonl(root / f"{split}.jsonl", rows)
    return root


def make_mmimdb_raw(root: Path) -> Path:
    """Original release: dataset/<id>.jpeg + <id>.json (plot list, genres incl. one outside the 23), split.json."""
    ids = {"train": [f"{i:07d}" for i in range(6)], "dev": ["0000100", "0000101"], "test": ["0000200"]}
    for k, movie_id in enumerate(sum(ids.values(), [])):
        text, genres = _movie(k)
        png(root / "dataset" / f"{movie_id}.jpeg", COLOURS[k % 3], fmt="JPEG")
        meta = {"plot": ["short.", text], "genres": genres + ["Reality-TV"], "title": f"movie {k}"}
        (root / "dataset" / f"{movie_id}.json").write_text(json.dumps(meta))
    (root / "split.json").write_text(json.dumps(ids))
    return root


FOOD = ["apple_pie", "bibimbap", "churros"]


def make_food101(root: Path) -> Path:
    """images/{train,test}/<dish>/*.jpg + texts_txt/<dish>/*.txt: 10 train and 2 test images per dish."""
    for c, dish in enumerate(FOOD):
        for split, count in (("train", 10), ("test", 2)):
            for i in range(count):
                name = f"{dish}_{split}{i}"
                png(root / "images" / split / dish / f"{name}.jpg", COLOURS[c], fmt="JPEG")
                text = root / "texts_txt" / dish / f"{name}.txt"
                text.parent.mkdir(parents=True, exist_ok=True)
                text.write_text(f"recipe page for {dish.replace('_', ' ')} {i}")
    return root


def make_snli_ve(root: Path, form: str = "original") -> Path:
    """snli_ve_<split>.jsonl in the released field names, or <split>.jsonl as image/sentence/label."""
    labels = ["entailment", "neutral", "contradiction"]
    for split, count in (("train", 9), ("dev", 3), ("test", 3)):
        rows = []
        for i in range(count):
            fid = f"{1000 + i}"
            png(root / "flickr30k_images" / f"{fid}.jpg", COLOURS[i % 3], fmt="JPEG")
            if form == "original":
                rows.append({"Flikr30kID": f"{fid}.jpg", "sentence1": "a caption", "sentence2": f"claim {i}",
                             "gold_label": labels[i % 3], "pairID": f"{split}-{i}"})
            else:
                rows.append({"image": fid, "sentence": f"claim {i}", "label": labels[i % 3]})
        jsonl(root / (f"snli_ve_{split}.jsonl" if form == "original" else f"{split}.jsonl"), rows)
    return root


def write_csv(path: Path, header: list[str], rows: list[list], delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def make_table(root: Path, ext: str = ".csv") -> Path:
    """<split>.csv|.tsv|.jsonl with columns uid, caption, path, category (non-default names)."""
    for split, count in (("train", 12), ("val", 4), ("test", 4)):
        rows = []
        for i in range(count):
            png(root / "pics" / f"{split}{i}.png", COLOURS[i % 2])
            rows.append([f"{split}{i}", f"caption, with a comma, {i}", f"pics/{split}{i}.png", ["cat", "dog"][i % 2]])
        header = ["uid", "caption", "path", "category"]
        if ext == ".jsonl":
            jsonl(root / f"{split}.jsonl", [dict(zip(header, r)) for r in rows])
        else:
            write_csv(root / f"{split}{ext}", header, rows, "\t" if ext == ".tsv" else ",")
    return root


TABLE_PARAMS = {"id_column": "uid", "text_column": "caption", "image_column": "path", "label_column": "category"}


def make_text_csv(root: Path) -> Path:
    """A text-only CSV classifier: text,label (no image column at all)."""
    words = {"pos": "great lovely wonderful", "neg": "awful terrible boring"}
    for split, count in (("train", 16), ("val", 6), ("test", 6)):
        rows = [[f"{words['pos' if i % 2 else 'neg']} film {i}", "pos" if i % 2 else "neg"] for i in range(count)]
        write_csv(root / f"{split}.csv", ["text", "label"], rows)
    return root


def make_image_folder(root: Path) -> Path:
    """CIFAR-style folders: train/<class>/*.png (8 per class), test/<class>/*.png (2 per class); no val/."""
    for c, cls in enumerate(["airplane", "bird", "cat"]):
        for split, count in (("train", 8), ("test", 2)):
            for i in range(count):
                png(root / split / cls / f"{i:04d}.png", COLOURS[c])
    return root


def make_hf_dataset(root: Path) -> Path:
    """A datasets.save_to_disk DatasetDict with an Image column (embedded bytes), text and a ClassLabel."""
    import datasets

    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["cat", "dog"])})
    splits = {}
    for split, count in (("train", 8), ("validation", 4)):
        src = root.parent / f"hf_src_{root.name}"
        paths = [str(png(src / f"{split}{i}.png", COLOURS[i % 2])) for i in range(count)]
        splits[split] = datasets.Dataset.from_dict(
            {"image": paths, "text": [f"pet {i}" for i in range(count)], "label": [i % 2 for i in range(count)]},
            features=features)
    datasets.DatasetDict(splits).save_to_disk(str(root))
    return root


# name -> (fixture builder, builder params, {split: rows}, label names or count, modalities)
LAYOUTS = {
    "hateful_memes": (make_hateful_memes, {}, {"train": 12, "dev_seen": 4, "test_seen": 4, "test_unseen": 4},
                      ["not_hateful", "hateful"], ("text", "image")),
    "mmimdb": (make_mmimdb_jsonl, {}, {"train": 12, "dev": 6, "test": 4}, 23, ("text", "image")),
    "food101": (make_food101, {}, {"train": 27, "dev": 3, "test": 6}, FOOD, ("text", "image")),
    "snli_ve": (make_snli_ve, {}, {"train": 9, "dev": 3, "test": 3}, ["contradiction", "neutral", "entailment"],
                ("text", "image")),
    "table": (make_table, TABLE_PARAMS, {"train": 12, "val": 4, "test": 4}, ["cat", "dog"], ("text", "image")),
    "image_folder": (make_image_folder, {}, {"train": 21, "val": 3, "test": 6}, ["airplane", "bird", "cat"],
                     ("image",)),
    "hf_dataset": (make_hf_dataset, {}, {"train": 8, "validation": 4}, ["cat", "dog"], ("text", "image")),
}
TESTED_ELSEWHERE = {"shapes", "jsonl", "webdataset"}  # tests/test_data.py, tests/test_datasets_streaming.py


def test_every_registered_dataset_has_a_fixture_layout():
    missing = set(list_datasets()) - set(LAYOUTS) - TESTED_ELSEWHERE
    assert not missing, f"add a tiny fixture layout for {sorted(missing)} to LAYOUTS in {__file__}"


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_reader_reads_its_layout(name, tmp_path):
    make, params, sizes, labels, modalities = LAYOUTS[name]
    root = make(tmp_path / name)
    for split, n in sizes.items():
        ds = create_dataset(name, str(root), split, check_images=True, **params)
        assert len(ds) == n and not ds.skipped, (split, ds)
        assert ds.num_labels == (labels if isinstance(labels, int) else len(labels))
        if not isinstance(labels, int):
            assert ds.label_names == labels
        assert ds.has_text == ("text" in modalities) and ds.has_image == ("image" in modalities)
        for r in ds:
            assert r["image"] is None or isinstance(r["image"], bytes) or Path(r["image"]).is_file()
    with pytest.raises(FileNotFoundError, match="nosuchsplit"):
        create_dataset(name, str(root), "nosuchsplit", **params)


@pytest.mark.parametrize("name", sorted(set(LAYOUTS) | {"webdataset"}))
def test_each_dataset_has_an_example_config(name):
    cfg = load_config(EXPERIMENTS / f"{name}.yaml")
    assert cfg.data.name == name
    assert set(cfg.data.params) <= set(dataset_params(name))


def test_hateful_memes_labels_and_unlabelled_test(tmp_path):
    root = make_hateful_memes(tmp_path)
    train = create_dataset("hateful_memes", str(root), "train")
    assert [r["label"] for r in train][:4] == [0, 1, 0, 1] and train[0]["id"] == "10001"
    assert train[0]["image"] == str(root / "img" / "00001.png")
    assert all(r["label"] is None for r in create_dataset("hateful_memes", str(root), "test_unseen"))


def test_mmimdb_layouts_agree(tmp_path):
    ds = create_dataset("mmimdb", str(make_mmimdb_jsonl(tmp_path / "j")), "train")
    assert ds.multi_label and ds.label_names == GENRES
    assert [GENRES[c] for c in ds[1]["label"]] == _movie(1)[1]
    raw = create_dataset("mmimdb", str(make_mmimdb_raw(tmp_path / "r")), "train")
    assert raw.multi_label and len(raw) == 6 and raw[0]["image"].endswith("dataset/0000000.jpeg")
    assert raw[0]["text"] == _movie(0)[0]  # the longest plot
    assert [GENRES[c] for c in raw[2]["label"]] == _movie(2)[1]  # Reality-TV (not among the 23) dropped
    assert [len(create_dataset("mmimdb", str(tmp_path / "r"), s)) for s in ("dev", "test")] == [2, 1]


def test_food101_dev_split_is_stratified_seeded_and_disjoint(tmp_path):
    root = str(make_food101(tmp_path))
    train, dev = (create_dataset("food101", root, s) for s in ("train", "dev"))
    assert sorted(r["label"] for r in dev) == [0, 1, 2]  # one of each dish (10% of 10)
    assert not {r["id"] for r in train} & {r["id"] for r in dev}
    assert [r["id"] for r in create_dataset("food101", root, "dev")] == [r["id"] for r in dev]
    other = create_dataset("food101", root, "dev", seed=1)
    assert [r["id"] for r in other] != [r["id"] for r in dev]
    assert train[0]["text"].startswith("recipe page for apple pie")


def test_snli_ve_accepts_both_field_namings(tmp_path):
    a = create_dataset("snli_ve", str(make_snli_ve(tmp_path / "a", "original")), "train")
    b = create_dataset("snli_ve", str(make_snli_ve(tmp_path / "b", "common")), "train")
    for ds in (a, b):
        assert [r["label"] for r in ds][:3] == [2, 1, 0] and ds[1]["text"] == "claim 1"
        assert ds[1]["image"].endswith("flickr30k_images/1001.jpg")


@pytest.mark.parametrize("ext", [".csv", ".tsv", ".jsonl"])
def test_table_formats_and_column_names(ext, tmp_path):
    ds = create_dataset("table", str(make_table(tmp_path, ext)), "train", **TABLE_PARAMS)
    assert ds[1] == {"id": "train1", "text": "caption, with a comma, 1", "label": 1, "lang": None,
                     "image": str(tmp_path / "pics" / "train1.png"), "file": str(tmp_path / f"train{ext}"),
                     "line": 2 if ext == ".jsonl" else 3}  # a CSV's header is line 1
    text_only = create_dataset("table", str(make_text_csv(tmp_path / "t")), "train", modalities=["text"])
    assert text_only.has_text and not text_only.has_image and text_only.label_names == ["neg", "pos"]


def test_table_multi_label_with_separator(tmp_path):
    write_csv(tmp_path / "train.csv", ["id", "text", "label"], [["a", "x", "Drama|Comedy"], ["b", "y", "Drama"]])
    ds = create_dataset("table", str(tmp_path), "train", modalities=["text"], label_sep="|")
    assert ds.multi_label and ds.label_names == ["Comedy", "Drama"] and [r["label"] for r in ds] == [[1, 0], [1]]


def test_image_folder_flat_layout_and_explicit_val(tmp_path):
    for c, cls in enumerate(["a", "b"]):
        for i in range(5):
            png(tmp_path / "flat" / cls / f"{i}.png", COLOURS[c])
    train, val = (create_dataset("image_folder", str(tmp_path / "flat"), s) for s in ("train", "val"))
    assert len(train) + len(val) == 10 and sorted(r["label"] for r in val) == [0, 1]
    root = make_image_folder(tmp_path / "tv")
    png(root / "val" / "bird" / "x.png")
    assert len(create_dataset("image_folder", str(root), "train")) == 24  # a val/ folder: train is not carved
    assert len(create_dataset("image_folder", str(root), "val")) == 1


def test_hf_dataset_from_local_files(tmp_path):
    make_text_csv(tmp_path)
    ds = create_dataset("hf_dataset", str(tmp_path), "val", files="{split}.csv", modalities=["text"])
    assert len(ds) == 6 and not ds.has_image and ds.label_names == ["neg", "pos"] and ds[1]["label"] == 1
    assert (ds[1]["file"], ds[1]["line"]) == (str(tmp_path / "val"), 2)


def test_hf_dataset_without_the_datasets_package_says_how_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` raise ImportError
    with pytest.raises(ImportError, match=r'pip install -e "\.\[hf\]"'):
        create_dataset("hf_dataset", str(tmp_path), "train")
