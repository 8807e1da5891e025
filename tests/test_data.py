"""Tests for the data package: shapes generator, jsonl reader, processing, collation and the registry."""

from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data import (
    Collator,
    DataError,
    ExampleProcessor,
    ProcessedDataset,
    build_dataloader,
    build_image_transform,
    create_dataset,
    dataset_params,
    generate_shapes,
    list_datasets,
    read_jsonl,
    sample_examples,
)
from data.shapes_text import LANGUAGES

SMALL = {"n_train": 40, "n_val": 10, "n_test": 10, "image_size": 32}
DATA_CONFIG = {"input_size": (3, 32, 32), "interpolation": "bilinear", "mean": (0.5,) * 3, "std": (0.5,) * 3,
               "crop_pct": 1.0}  # fmt: skip


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("shapes") / "easy", **SMALL)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------- shapes generator


def test_generation_is_deterministic(shapes_root, tmp_path):
    same = _files(generate_shapes(tmp_path / "again", **SMALL))
    assert same == _files(shapes_root)
    other = _files(generate_shapes(tmp_path / "seed1", seed=1, **SMALL))
    assert other["train.jsonl"] != same["train.jsonl"]
    assert other["img/train_00000.png"] != same["img/train_00000.png"]


def test_generation_reuses_or_refuses_existing_root(shapes_root, tmp_path):
    before = (shapes_root / "meta.json").stat().st_mtime_ns
    generate_shapes(shapes_root, **SMALL)  # same args: nothing to do
    assert (shapes_root / "meta.json").stat().st_mtime_ns == before
    with pytest.raises(FileExistsError, match="another root or delete"):
        generate_shapes(shapes_root, **{**SMALL, "seed": 3})
    partial = tmp_path / "partial"  # e.g. files left without meta.json
    (partial / "img").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="not a complete shapes dataset"):
        generate_shapes(partial, **SMALL)
    assert not list(tmp_path.glob(".*tmp-*")), "temporary folders must be cleaned up"


def test_a_dataset_written_before_colour_lures_existed_is_reused_not_refused(shapes_root, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(shapes_root, old)
    meta = json.loads((old / "meta.json").read_text())
    del meta["args"]["colour_lures"]  # what generate_shapes wrote before the option
    (old / "meta.json").write_text(json.dumps(meta))
    before = _files(old)
    generate_shapes(old, **SMALL)
    assert _files(old) == before
    with pytest.raises(FileExistsError, match="colour_lures"):
        generate_shapes(old, **SMALL, colour_lures=0.5)  # new data never mixes into an old folder


def test_splits_are_parallel_and_balanced(shapes_root):
    meta = json.loads((shapes_root / "meta.json").read_text())
    assert meta["args"]["languages"] == list(LANGUAGES)
    assert json.loads((shapes_root / "labels.json").read_text()) == ["false", "true"]
    for split in ("train", "val", "test"):
        rows = _rows(shapes_root / f"{split}.jsonl")
        n = SMALL[f"n_{split}"]
        assert len(rows) == n * len(LANGUAGES)
        by_id = defaultdict(list)
        for r in rows:
            by_id[r["id"]].append(r)
        assert len(by_id) == n
        for group in by_id.values():
            assert sorted(r["lang"] for r in group) == sorted(LANGUAGES)
            assert len({r["label"] for r in group}) == 1 and len({r["img"] for r in group}) == 1
            assert len({r["text"] for r in group}) == len(LANGUAGES)
            assert (shapes_root / group[0]["img"]).is_file()
        labels = [g[0]["label"] for g in by_id.values()]
        assert labels.count(1) == n // 2
    parallel = (shapes_root / "parallel.tsv").read_text(encoding="utf-8").splitlines()
    assert parallel[0].split("\t") == ["id", "src_lang", "src_text", "tgt_lang", "tgt_text"]
    assert len(parallel) - 1 == SMALL["n_train"] * (len(LANGUAGES) - 1)
    assert {line.split("\t")[1] for line in parallel[1:]} == {"en"}


def _holds(objects: list, statement: tuple) -> bool:
    kind = statement[0]
    if kind == "present":
        return statement[1:] in [(o[0], o[1]) for o in objects]
    if kind == "count":
        return sum(o[1] == statement[1] for o in objects) == statement[2]
    pos = {(o[0], o[1]): (o[2], o[3]) for o in objects}
    (ax, ay), (bx, by) = pos[statement[1]], pos[statement[3]]
    return {"left": ax < bx, "right": ax > bx, "above": ay < by, "below": ay > by}[statement[2]]


def _majority_accuracy(train: list, test: list, key) -> float:
    votes = defaultdict(Counter)
    for ex in train:
        votes[key(ex)][ex["label"]] += 1
    hits = [(votes[key(ex)].most_common(1)[0][0] if votes[key(ex)] else 0) == ex["label"] for ex in test]
    return float(np.mean(hits))


@pytest.mark.parametrize("difficulty", ["easy", "hard", "binding", "relation"])
def test_no_single_modality_predicts_the_label(difficulty):
    train, test = sample_examples(20000, difficulty, seed=0), sample_examples(20000, difficulty, seed=1)
    assert all(_holds(ex["objects"], ex["statement"]) == bool(ex["label"]) for ex in train)
    assert sum(ex["label"] for ex in train) == 10000

    def image(ex):
        return tuple(sorted((o[0], o[1]) for o in ex["objects"]))

    def statement(ex):
        return ex["statement"]

    for key in (statement, image):
        assert abs(_majority_accuracy(train, test, key) - 0.5) < 0.025, key.__name__
    per_statement = defaultdict(set)
    for ex in train:
        per_statement[ex["statement"]].add(ex["label"])
    frequent = [s for s, c in Counter(ex["statement"] for ex in train).items() if c >= 30]
    assert frequent and all(per_statement[s] == {0, 1} for s in frequent)
    if difficulty == "hard":
        kinds = Counter(ex["statement"][0] for ex in train)
        assert kinds["relation"] > 8000 and kinds["count"] > 8000


def test_relation_variant_needs_positions_not_identities():
    """Two objects told apart by colour; knowing which objects are drawn (but not where) is worth nothing."""
    train, test = sample_examples(20000, "relation", seed=0), sample_examples(20000, "relation", seed=1)
    assert all(len(ex["objects"]) == 2 and ex["objects"][0][0] != ex["objects"][1][0] for ex in train)
    assert all(ex["statement"][0] == "relation" for ex in train)

    def identities_and_statement(ex):
        return tuple(sorted((o[0], o[1]) for o in ex["objects"])), ex["statement"]

    assert abs(_majority_accuracy(train, test, identities_and_statement) - 0.5) < 0.03


def test_colour_lures_make_shape_carry_the_label_and_keep_both_modalities_uninformative():
    """easy: "the colours match" is right 92% of the time (3 of the 19 false combinations share the stated colour);
    with colour_lures=0.5 that rule drops to 71%, and neither modality alone says anything."""
    plain = sample_examples(20000, "easy", seed=0)
    assert plain == sample_examples(20000, "easy", seed=0, colour_lures=0.0)  # the default dataset is unchanged
    train, test = sample_examples(20000, "easy", seed=0, colour_lures=0.5), sample_examples(20000, "easy", seed=1,
                                                                                            colour_lures=0.5)
    assert all(_holds(ex["objects"], ex["statement"]) == bool(ex["label"]) for ex in train)

    def colour_rule(examples):
        return np.mean([(ex["objects"][0][0] == ex["statement"][1]) == bool(ex["label"]) for ex in examples])

    assert 0.91 < colour_rule(plain) < 0.93  # 1 - 0.5 * 3/19
    assert 0.70 < colour_rule(test) < 0.73  # 1 - 0.5 * (0.5 + 0.5 * 3/19)
    for key in (lambda ex: ex["statement"], lambda ex: (ex["objects"][0][0], ex["objects"][0][1])):
        assert abs(_majority_accuracy(train, test, key) - 0.5) < 0.025
    with pytest.raises(ValueError, match="easy variant only"):
        generate_shapes(Path("unused"), difficulty="binding", colour_lures=0.5)


def test_binding_variant_defeats_a_bag_of_features():
    """Knowing only which colours and which shapes are drawn (not which go together) caps accuracy near 75%."""
    train, test = sample_examples(20000, "binding", seed=0), sample_examples(20000, "binding", seed=1)

    def bag(ex):
        colours, shapes = {o[0] for o in ex["objects"]}, {o[1] for o in ex["objects"]}
        return ex["statement"][1] in colours, ex["statement"][2] in shapes

    assert all(len(ex["objects"]) == 2 for ex in train)
    assert 0.72 < _majority_accuracy(train, test, bag) < 0.78
    lures = [ex for ex in train if ex["label"] == 0 and bag(ex) == (True, True)]
    assert abs(len(lures) / 5000 - 1) < 0.05  # half of the 10000 false statements


def test_tokenizer_loads_and_knows_cyrillic(shapes_root):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(shapes_root / "tokenizer")
    ru = [r["text"] for r in _rows(shapes_root / "train.jsonl") if r["lang"] == "ru"]
    ru += ["количество треугольников: два", "жёлтый крест находится ниже зелёного квадрата"]
    de = ["das weiße Kreuz ist über dem grünen Quadrat"]
    for text in ru + de:
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids, (text, tok.convert_ids_to_tokens(ids))
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert "ё" in tok.decode(tok("жёлтый")["input_ids"], skip_special_tokens=True)


# ---------------------------------------------------------------- registry


def test_registry_lists_and_validates():
    assert {"jsonl", "shapes"} <= set(list_datasets())
    for name in list_datasets():
        assert isinstance(dataset_params(name), dict)
    assert dataset_params("shapes")["n_train"] == 2000
    with pytest.raises(KeyError, match="Did you mean 'shapes'.*jsonl"):
        create_dataset("shapez", "x", "train")
    with pytest.raises(TypeError, match="Did you mean 'n_train'"):
        create_dataset("shapes", "x", "train", n_trian=3)


def test_shapes_builder_filters_languages(shapes_root):
    ds = create_dataset("shapes", str(shapes_root), "val", languages=["en", "ru"], seed=None, **SMALL)
    assert len(ds) == 2 * SMALL["n_val"] and ds.languages == ["en", "ru"]
    assert ds.label_names == ["false", "true"] and not ds.multi_label and ds.has_text and ds.has_image
    rec = ds[0]
    assert set(rec) == {"id", "text", "image", "label", "lang", "file", "line"} and Path(rec["image"]).is_absolute()
    with pytest.raises(FileNotFoundError, match="generate=True"):
        create_dataset("shapes", str(shapes_root.parent / "nothing"), "val", generate=False)


# ---------------------------------------------------------------- jsonl reader


def _png(path: Path, colour=(255, 0, 0)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)


def _write_jsonl(root: Path, split: str, rows: list) -> Path:
    path = root / f"{split}.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_reader_layouts(tmp_path):
    _png(tmp_path / "img" / "a.png")
    _png(tmp_path / "img" / "b.png")
    _write_jsonl(tmp_path, "train", [
        {"id": 1, "img": "img/a.png", "text": "a meme", "label": 1},
        {"id": 2, "image": "img/b.png", "text": "another", "label": 0, "lang": "de"},
        {"id": 3, "img": None, "text": "text only", "label": 1},
    ])  # fmt: skip
    ds = create_dataset("jsonl", str(tmp_path), "train")
    assert ds.label_names == ["0", "1"] and [r["label"] for r in ds] == [1, 0, 1]
    assert ds[1]["image"] == str(tmp_path / "img" / "b.png") and ds[2]["image"] is None and ds[0]["id"] == "1"
    assert ds.languages == ["de"] and ds[0]["lang"] is None

    _write_jsonl(tmp_path, "val", [{"id": "x", "img": "img/a.png", "text": "t", "label": "hateful"}])
    (tmp_path / "labels.json").write_text(json.dumps(["benign", "hateful"]))
    assert create_dataset("jsonl", str(tmp_path), "val")[0]["label"] == 1
    assert create_dataset("jsonl", str(tmp_path), "val", labels=["hateful", "benign"])[0]["label"] == 0

    multi = _write_jsonl(tmp_path, "multi", [
        {"id": "m1", "img": "img/a.png", "text": "t", "label": ["cat", "dog"]},
        {"id": "m2", "img": "img/b.png", "text": "u", "label": "dog"},
    ])  # fmt: skip
    ds = read_jsonl(multi, label_names=["bird", "cat", "dog"])
    assert ds.multi_label and [r["label"] for r in ds] == [[1, 2], [2]]
    text_only = read_jsonl(multi, label_names=["bird", "cat", "dog"], modalities=("text",))
    assert text_only.has_text and not text_only.has_image


def _truncated_png(path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


BAD_ROWS = {
    "malformed_json": '{"id": "bad", "img": "img/ok.png", "text": "x", "label": 1',
    "missing_column": {"id": "bad", "img": "img/ok.png", "label": 1},
    "missing_image": {"id": "bad", "img": "img/nope.png", "text": "x", "label": 1},
    "empty_text": {"id": "bad", "img": "img/ok.png", "text": "  ", "label": 1},
    "unknown_label": {"id": "bad", "img": "img/ok.png", "text": "x", "label": 7},
    "unreadable_image": {"id": "bad", "img": "img/garbage.png", "text": "x", "label": 1},
    "truncated_image": {"id": "bad", "img": "img/truncated.png", "text": "x", "label": 1},
}


@pytest.fixture()
def bad_root(tmp_path) -> Path:
    _png(tmp_path / "img" / "ok.png")
    (tmp_path / "img" / "garbage.png").write_bytes(b"this is not a png at all" * 10)
    _truncated_png(tmp_path / "img" / "truncated.png")
    (tmp_path / "labels.json").write_text('["no", "yes"]')
    return tmp_path


def _bad_file(root: Path, case: str) -> Path:
    good = {"id": "ok", "img": "img/ok.png", "text": "fine", "label": 0}
    return _write_jsonl(root, "train", [good, good, BAD_ROWS[case], good])  # bad row on line 3


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_read_errors_name_file_and_line(bad_root, case):
    path = _bad_file(bad_root, case)
    check = case in ("unreadable_image", "truncated_image")
    with pytest.raises(DataError, match=r"train\.jsonl:3: ") as info:
        create_dataset("jsonl", str(bad_root), "train", check_images=check)
    reason = "unreadable_image" if check else case
    assert info.value.reason == reason and info.value.line == 3 and info.value.file == str(path)
    ds = create_dataset("jsonl", str(bad_root), "train", check_images=check, on_error="skip")
    assert len(ds) == 3 and ds.skip_counts() == {reason: 1}
    assert ds.skipped[0]["line"] == 3 and ds.skipped[0]["file"] == str(path)


@pytest.mark.parametrize("case", ["unreadable_image", "truncated_image", "missing_image"])
def test_load_errors_name_image_and_line(bad_root, case):
    _bad_file(bad_root, "empty_text")  # any file; point line 3 at the bad image after reading
    ds = create_dataset("jsonl", str(bad_root), "train", on_error="skip")
    record = dict(ds[0], line=3, image=str(bad_root / BAD_ROWS[case]["img"]))
    ds.records[0] = record
    transform = build_image_transform(DATA_CONFIG, train=False)
    raising = ProcessedDataset(ds, ExampleProcessor(transform))
    with pytest.raises(DataError, match=r"train\.jsonl:3: .*" + Path(record["image"]).name):
        raising[0]
    skipping = ProcessedDataset(ds, ExampleProcessor(transform, on_error="skip"))
    batch = Collator(None, num_labels=2, has_text=False)([skipping[i] for i in range(len(ds))])
    assert batch["index"].tolist() == [1, 2] and batch["pixel_values"].shape == (2, 3, 32, 32)
    assert [(s["reason"], s["line"], s["index"]) for s in batch["skipped"]] == [("unreadable_image", 3, 0)]


def test_on_error_is_validated(tmp_path):
    _write_jsonl(tmp_path, "train", [])
    with pytest.raises(ValueError, match="Did you mean 'skip'"):
        create_dataset("jsonl", str(tmp_path), "train", on_error="skp")


# ---------------------------------------------------------------- processing and collation


def test_collator_contract(shapes_root):
    from transformers import AutoTokenizer

    ds = create_dataset("shapes", str(shapes_root), "train", **SMALL)
    tok = AutoTokenizer.from_pretrained(shapes_root / "tokenizer")
    proc = ProcessedDataset(ds, ExampleProcessor(build_image_transform(DATA_CONFIG, train=True)))
    collate = Collator.for_dataset(ds, tok, max_length=6)
    examples = [proc[i] for i in (0, 7, 13)]
    examples[1]["text"] = None
    examples[2]["pixel_values"] = None
    batch = collate(examples)
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values", "text_present", "image_present", "labels",
                          "index", "lang", "skipped"}  # fmt: skip
    b = 3
    assert batch["input_ids"].dtype == batch["attention_mask"].dtype == torch.long
    assert batch["input_ids"].shape == batch["attention_mask"].shape and batch["input_ids"].shape[0] == b
    assert batch["input_ids"].shape[1] <= 6
    assert batch["pixel_values"].shape == (b, 3, 32, 32) and batch["pixel_values"].dtype == torch.float32
    assert batch["text_present"].tolist() == [True, False, True]
    assert batch["image_present"].tolist() == [True, True, False]
    assert not batch["pixel_values"][2].any()
    assert batch["labels"].dtype == torch.long and batch["labels"].shape == (b,)
    assert batch["index"].tolist() == [0, 7, 13] and batch["skipped"] == []
    assert batch["lang"].tolist() == [ds.languages.index(ds[i]["lang"]) for i in (0, 7, 13)]

    multi = Collator(tok, 8, num_labels=4, multi_label=True, languages=["en"], has_image=False)
    out = multi([{"index": 0, "text": "a", "pixel_values": None, "label": [1, 3], "lang": "xx"}])
    assert out["labels"].tolist() == [[0.0, 1.0, 0.0, 1.0]] and out["lang"].tolist() == [-1]
    assert "pixel_values" not in out and out["labels"].dtype == torch.float32


def test_dataloader_shuffle_is_seeded(shapes_root):
    ds = create_dataset("shapes", str(shapes_root), "train", languages=["en"], **SMALL)
    proc = ProcessedDataset(ds, ExampleProcessor(build_image_transform(DATA_CONFIG, train=False)))
    collate = Collator.for_dataset(ds, None, has_text=False)

    def order(seed: int) -> list[int]:
        loader = build_dataloader(proc, collate, batch_size=8, shuffle=True, seed=seed)
        return [i for batch in loader for i in batch["index"].tolist()]

    assert order(0) == order(0) and sorted(order(0)) == list(range(len(ds)))
    assert order(0) != order(1)
