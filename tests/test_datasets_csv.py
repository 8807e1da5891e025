"""CSV/TSV row accounting (issue #18): every physical line is used, or reported with its line range and reason.

A stray quote makes the CSV parser read the following lines as the inside of one field: rows vanish into another
row's text. Each record's line span is checked, so a field that swallows lines is reported, never silently kept.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_datasets_layouts import EXPERIMENTS

from crossfuse.commands import validate
from data import DataError, create_dataset

HEADER = "id,text,label\n"
TEXT = {"modalities": ["text"], "id_column": "id"}


def _headlines(n: int = 160) -> list[str]:
    """``n`` clean data lines; physical line ``k`` (the header is line 1) holds row ``h{k - 2}``."""
    return [f"h{i},headline number {i},{['business', 'politics'][i % 2]}\n" for i in range(n)]


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(lines), encoding="utf-8", newline="")
    return path


def test_clean_csv_keeps_every_line(tmp_path):
    _write(tmp_path / "train.csv", _headlines())
    ds = create_dataset("table", str(tmp_path), "train", **TEXT)
    assert len(ds) == 160 and ds[0]["line"] == 2 and ds[159]["line"] == 161


def test_stray_quote_closed_later_is_reported_with_its_line_range(tmp_path):
    lines = _headlines()
    lines[8] = 'h8,"headline number 8,politics\n'  # physical line 10: an opening quote nobody closes ...
    lines[28] = 'h28,headline" number 28,business\n'  # ... until this quote on line 30: 21 lines read as one row
    path = _write(tmp_path / "train.csv", lines)
    with pytest.raises(DataError) as info:
        create_dataset("table", str(tmp_path), "train", **TEXT)
    assert (info.value.reason, info.value.line, info.value.last_line) == ("stray_quote", 10, 30)
    assert str(info.value).startswith(f"{path}:10-30: stray quote: ")
    ds = create_dataset("table", str(tmp_path), "train", on_error="skip", **TEXT)
    assert len(ds) == 139 and ds.skip_counts() == {"stray_quote": 1}
    skip = ds.skipped[0]
    assert (skip["line"], skip["last_line"]) == (10, 30)
    assert len(ds) + skip["last_line"] - skip["line"] + 1 == 160  # every data line is used or reported


def test_quote_never_closed_is_reported_to_the_end_of_the_file(tmp_path):
    lines = _headlines()
    lines[125] = 'h125,"headline number 125,politics\n'  # line 127; the file ends on line 161: 35 lines
    _write(tmp_path / "train.csv", lines)
    with pytest.raises(DataError, match=r"train\.csv:127-161: stray quote: .*no closing quote") as info:
        create_dataset("table", str(tmp_path), "train", **TEXT)
    assert info.value.last_line == 161
    ds = create_dataset("table", str(tmp_path), "train", on_error="skip", **TEXT)
    assert len(ds) == 125 and ds.skipped[0]["last_line"] - ds.skipped[0]["line"] + 1 == 35


def test_line_breaks_inside_quotes_are_reported_unless_allowed(tmp_path):
    _write(tmp_path / "train.csv", ['a,"first paragraph.\nsecond paragraph",business\n', "b,plain,politics\n"])
    with pytest.raises(DataError, match=r"train\.csv:2-3: multiline field: .*multiline_fields=true"):
        create_dataset("table", str(tmp_path), "train", **TEXT)
    ds = create_dataset("table", str(tmp_path), "train", multiline_fields=True, **TEXT)
    assert [r["text"] for r in ds] == ["first paragraph.\nsecond paragraph", "plain"]
    assert [r["line"] for r in ds] == [2, 4]


def test_stray_quote_is_caught_even_when_multiline_fields_are_allowed(tmp_path):
    lines = _headlines(20)
    lines[3] = 'h3,"headline number 3,politics\n'
    lines[9] = 'h9,headline" number 9,politics\n'
    _write(tmp_path / "train.csv", lines)
    ds = create_dataset("table", str(tmp_path), "train", on_error="skip", multiline_fields=True, **TEXT)
    assert ds.skip_counts() == {"stray_quote": 1} and (ds.skipped[0]["line"], ds.skipped[0]["last_line"]) == (5, 11)


def test_blank_lines_do_not_shift_line_numbers(tmp_path):
    _write(tmp_path / "train.csv", ["a,fine,business\n", "\n", "\n", "b,  ,politics\n"])
    with pytest.raises(DataError, match=r"train\.csv:5: empty text"):
        create_dataset("table", str(tmp_path), "train", **TEXT)


def test_tsv_with_literal_quotes_reads_with_quotes_false(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text('id\ttext\tlabel\na\t"quoted" at the start\tbusiness\nb\tan "inch mark\tpolitics\n'
                    'c\t"unbalanced start\tbusiness\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.tsv:2: malformed line: .*quotes=false"):  # not '"quoted" at ...'
        create_dataset("table", str(tmp_path), "train", **TEXT)
    ds = create_dataset("table", str(tmp_path), "train", on_error="skip", **TEXT)
    assert ds.skip_counts() == {"malformed_line": 1, "stray_quote": 1} and [r["line"] for r in ds] == [3]
    ds = create_dataset("table", str(tmp_path), "train", quotes=False, **TEXT)
    assert [r["text"] for r in ds] == ['"quoted" at the start', 'an "inch mark', '"unbalanced start']


def test_validate_reports_the_stray_quote_and_fails(tmp_path, capsys):
    lines = _headlines()
    lines[8] = 'h8,"headline number 8,politics\n'
    lines[28] = 'h28,headline" number 28,business\n'
    path = _write(tmp_path / "train.csv", lines)
    for split in ("val", "test"):
        _write(tmp_path / f"{split}.csv", _headlines(4))
    report = validate.main([str(EXPERIMENTS / "table.yaml"), f"data.root={tmp_path}"])
    assert report["train"]["skipped"] == {"stray_quote": 1} and validate.exit_status(report) == 1
    out = capsys.readouterr().out
    assert "[train] 139 of 140 rows usable (the rejected rows cover 21 lines)" in out and f"{path}:10-30: " in out
