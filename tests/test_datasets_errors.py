"""Bad data in every reader: an error naming file and line by default; with on_error=skip, every skip counted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_datasets_layouts import (
    jsonl,
    make_food101,
    make_image_folder,
    make_mmimdb_jsonl,
    make_mmimdb_raw,
    make_snli_ve,
    png,
    write_csv,
)

from data import DataError, ExampleProcessor, ProcessedDataset, create_dataset

HEADER = ["id", "text", "image", "label"]
GOOD = ["ok", "fine text", "pics/ok.png", "cat"]
BAD_ROWS = {  # reason -> the row written on line 3 of train.csv (line 1 is the header)
    "missing_image": ["bad", "x", "pics/nope.png", "cat"],
    "unreadable_image": ["bad", "x", "pics/garbage.png", "cat"],
    "truncated_image": ["bad", "x", "pics/truncated.png", "cat"],
    "empty_text": ["bad", "   ", "pics/ok.png", "cat"],
    "text_too_long": ["bad", "x" * 50, "pics/ok.png", "cat"],
    "unknown_label": ["bad", "x", "pics/ok.png", "bird"],
    "malformed_line": ["bad", "x", "pics/ok.png", "cat", "an extra field"],
    "missing_label": ["bad", "x", "pics/ok.png", ""],
}
OPTIONS = {"labels": ["cat", "dog"], "check_images": True, "max_text_chars": 20}


def _truncated_png(path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:300])


@pytest.fixture()
def root(tmp_path) -> Path:
    png(tmp_path / "pics" / "ok.png")
    (tmp_path / "pics" / "garbage.png").write_bytes(b"not an image" * 20)
    _truncated_png(tmp_path / "pics" / "truncated.png")
    return tmp_path


def _expect(build, file: Path, line: int, reason: str, kept: int) -> None:
    """``build(on_error)`` raises naming file:line, and with skip keeps ``kept`` rows and counts the one skip."""
    with pytest.raises(DataError) as info:
        build("raise")
    assert (info.value.reason, info.value.file, info.value.line) == (reason, str(file), line)
    assert str(info.value).startswith(f"{file}:{line}: {reason.replace('_', ' ')}: ")
    ds = build("skip")
    assert len(ds) == kept and ds.skip_counts() == {reason: 1}
    assert (ds.skipped[0]["file"], ds.skipped[0]["line"]) == (str(file), line)


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_table_bad_rows(root, case):
    path = write_csv(root / "train.csv", HEADER, [GOOD, BAD_ROWS[case], GOOD])
    reason = "unreadable_image" if case == "truncated_image" else case
    _expect(lambda on_error: create_dataset("table", str(root), "train", on_error=on_error, **OPTIONS),
            path, 3, reason, kept=2)


def test_table_missing_column_and_malformed_json(root):
    path = write_csv(root / "train.csv", ["id", "text", "image"], [GOOD[:3]])
    with pytest.raises(DataError, match=r"train\.csv:2: missing column: no 'label' column"):
        create_dataset("table", str(root), "train", labels=["cat"])
    path.unlink()
    good = dict(zip(HEADER, GOOD))
    path = jsonl(root / "train.jsonl", [good, '{"id": "bad", "text": ', good])
    _expect(lambda on_error: create_dataset("table", str(root), "train", on_error=on_error, **OPTIONS),
            path, 2, "malformed_line", kept=2)


def test_unreadable_image_found_while_training_names_the_row(root):
    write_csv(root / "train.csv", HEADER, [GOOD, ["bad", "x", "pics/truncated.png", "cat"]])
    ds = create_dataset("table", str(root), "train", labels=["cat", "dog"])  # not decoded at read time
    with pytest.raises(DataError, match=r"train\.csv:3: unreadable image: cannot read image .*truncated\.png"):
        ProcessedDataset(ds, ExampleProcessor())[1]
    assert ProcessedDataset(ds, ExampleProcessor(on_error="skip"))[1]["skipped"]["line"] == 3


def test_food101_missing_text(tmp_path):
    root = make_food101(tmp_path)
    (root / "texts_txt" / "bibimbap" / "bibimbap_test1.txt").unlink()
    image = root / "images" / "test" / "bibimbap" / "bibimbap_test1.jpg"
    _expect(lambda on_error: create_dataset("food101", str(root), "test", on_error=on_error), image, 1,
            "missing_text", kept=5)


def test_mmimdb_raw_missing_movie_and_unknown_genre(tmp_path):
    root = make_mmimdb_raw(tmp_path)
    (root / "dataset" / "0000101.json").unlink()
    _expect(lambda on_error: create_dataset("mmimdb", str(root), "dev", on_error=on_error), root / "split.json",
            1, "missing_file", kept=1)
    with pytest.raises(DataError, match="0000200.json:1: unknown label: label 'Reality-TV'"):
        create_dataset("mmimdb", str(root), "test", unknown_genres="error")
    with pytest.raises(ValueError, match="unknown_genres='ignore'; choose one of drop, error"):
        create_dataset("mmimdb", str(root), "test", unknown_genres="ignore")


def test_mmimdb_jsonl_missing_column(tmp_path):
    root = make_mmimdb_jsonl(tmp_path)
    path = root / "test.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    del rows[1]["text"]
    jsonl(path, rows)
    _expect(lambda on_error: create_dataset("mmimdb", str(root), "test", on_error=on_error), path, 2,
            "missing_column", kept=3)


def test_snli_ve_unknown_label_and_missing_image(tmp_path):
    root = make_snli_ve(tmp_path)
    path = root / "snli_ve_dev.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    rows[0]["gold_label"] = "-"  # SNLI marks pairs without annotator consensus so
    jsonl(path, rows)
    _expect(lambda on_error: create_dataset("snli_ve", str(root), "dev", on_error=on_error), path, 1,
            "unknown_label", kept=2)
    (root / "flickr30k_images" / "1002.jpg").unlink()
    _expect(lambda on_error: create_dataset("snli_ve", str(root), "test", on_error=on_error),
            root / "snli_ve_test.jsonl", 3, "missing_image", kept=2)


def test_image_folder_unknown_class_and_corrupt_image(tmp_path):
    root = make_image_folder(tmp_path)
    stray = png(root / "test" / "truck" / "0000.png")
    _expect(lambda on_error: create_dataset("image_folder", str(root), "test", on_error=on_error), stray, 1,
            "unknown_label", kept=6)
    stray.unlink()
    bad = root / "test" / "cat" / "0001.png"
    bad.write_bytes(b"\x89PNG broken")
    _expect(lambda on_error: create_dataset("image_folder", str(root), "test", on_error=on_error,
                                            check_images=True), bad, 1, "unreadable_image", kept=5)
