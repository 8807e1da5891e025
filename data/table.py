"""Generic tables: CSV, TSV or JSON-lines files with configurable column names, one file per split.

The reader most datasets on disk fit without a conversion script: ``root/<split>.csv`` (or ``.tsv``/``.jsonl``,
or any ``file`` pattern) with an id, a text, an image-path and a label column, any of which may be absent
(``text_column: null`` for an image-only table, ``image_column: null`` for a text-only classifier).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .records import DataError, MultimodalDataset
from .registry import register_dataset
from .rows import MAX_TEXT_CHARS, Columns, modality_columns, records_from_rows

EXTENSIONS = {".csv": ",", ".tsv": "\t", ".jsonl": None, ".json": None}


def find_split_file(root: Path, split: str, file: str | None) -> Path:
    """``root/file.format(split=split)`` if ``file`` is given, else the one ``root/<split>.{csv,tsv,jsonl}``."""
    if file is not None:
        path = root / file.format(split=split)
        if not path.is_file():
            raise FileNotFoundError(f"no split {split!r}: {path} does not exist (file pattern {file!r})")
        return path
    found = [root / f"{split}{ext}" for ext in EXTENSIONS if (root / f"{split}{ext}").is_file()]
    if len(found) != 1:
        have = sorted(p.name for p in root.glob("*") if p.suffix in EXTENSIONS)
        what = "several files" if found else "no file"
        raise FileNotFoundError(f"no split {split!r}: {what} named {split}.csv/.tsv/.jsonl in {root} (files there: "
                                f"{have}); set data.params.file to a pattern such as 'annotations/{{split}}.csv'")
    return found[0]


def iter_table(path: Path, delimiter: str | None = None) -> Iterator[tuple[str, int, dict[str, Any] | DataError]]:
    """``(file, line, row)`` for each data row; a line that cannot be parsed comes as a :class:`DataError`."""
    file = str(path)
    if delimiter is None and EXTENSIONS.get(path.suffix) is None:
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    yield file, line_no, json.loads(line)
                except ValueError as e:
                    yield file, line_no, DataError("malformed_line", file, line_no, f"not valid JSON: {e}")
        return
    csv.field_size_limit(sys.maxsize)  # over-long fields are reported by the text check, with their line
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter or EXTENSIONS[path.suffix])
        header = reader.fieldnames or []
        start = reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield file, start, DataError("malformed_line", file, start, f"CSV parse error: {e}")
                start = reader.line_num + 1
                continue
            if None in row or any(v is None for v in row.values()):
                n = len(header) + len(row.get(None) or []) - sum(v is None for v in row.values())
                yield file, start, DataError("malformed_line", file, start,
                                             f"row has {n} fields, the header has {len(header)}: {header}")
            else:
                yield file, start, row
            start = reader.line_num + 1


def _blank_to_none(rows, *keys: str | None):
    for file, line, row in rows:
        if isinstance(row, dict):
            for key in keys:
                if key is not None and row.get(key) == "":
                    row[key] = None
        yield file, line, row


def table_label_names(path: Path, column: str, sep: str | None, delimiter: str | None) -> list[str]:
    """Distinct labels of one file (bad rows ignored here): ``0..max`` if all are integers, else sorted names."""
    found: set[str] = set()
    for _, _, row in iter_table(path, delimiter):
        if not isinstance(row, dict) or row.get(column) in (None, ""):
            continue
        value = row[column]
        items = value if isinstance(value, list) else (value.split(sep) if sep and isinstance(value, str) else [value])
        found.update(str(x).strip() for x in items if str(x).strip())
    if found and all(x.lstrip("-").isdigit() for x in found):
        return [str(i) for i in range(max(int(x) for x in found) + 1)]
    return sorted(found)


def resolve_table_labels(root: Path, labels: list[str] | None, label_file: Path, column: str | None,
                         sep: str | None, delimiter: str | None) -> list[str]:
    """``labels``, else ``root/labels.json``, else the labels found in ``label_file`` (the train split)."""
    if labels is not None:
        return [str(x) for x in labels]
    if (root / "labels.json").is_file():
        data = json.loads((root / "labels.json").read_text(encoding="utf-8"))
        return [str(x) for x in (data["labels"] if isinstance(data, dict) else data)]
    return table_label_names(label_file, column, sep, delimiter) if column else []


@register_dataset("table")
def build_table(
    root: str,
    split: str,
    file: str | None = None,
    delimiter: str | None = None,
    modalities: tuple[str, ...] = ("text", "image"),
    id_column: str | None = None,
    text_column: str = "text",
    image_column: str = "image",
    label_column: str = "label",
    label_sep: str | None = None,
    labels: list[str] | None = None,
    label_split: str = "train",
    image_root: str | None = None,
    on_error: str = "raise",
    check_images: bool = False,
    max_text_chars: int | None = MAX_TEXT_CHARS,
) -> MultimodalDataset:
    """A CSV / TSV / JSON-lines table per split.

    Args:
        root: dataset folder.
        split: split name; the file is ``root/<split>.csv|.tsv|.jsonl`` or ``file.format(split=split)``.
        file: file pattern relative to root, e.g. ``"annotations/{split}.tsv"``.
        delimiter: CSV delimiter (default from the extension; JSON-lines when the extension is .jsonl).
        modalities: which of ``text``/``image`` the table has (``[text]``: a text-only classifier; ``[image]``:
            image-only); the other column is not read even if present.
        id_column: column of row ids (default: none; rows are named ``file:line``).
        text_column / image_column / label_column: column names.
        label_sep: split string labels on this separator for multi-label tables (``"Drama|Comedy"``).
        labels: class names (default ``root/labels.json``, else the labels of ``label_split``).
        label_split: split whose labels define the class list when none is given (so every split agrees).
        image_root: folder image paths are relative to (default ``root``).
        on_error: ``raise`` on the first bad row (naming file and line) or ``skip`` bad rows, counted per reason.
        check_images: decode every image while reading (slower; catches unreadable images before training).
        max_text_chars: longer texts are an error (``text_too_long``); ``None`` = no limit.
    """
    base = Path(root)
    path = find_split_file(base, split, file)
    try:
        label_file = find_split_file(base, label_split, file)
    except FileNotFoundError:
        label_file = path
    names = resolve_table_labels(base, labels, label_file, label_column, label_sep, delimiter)
    cols = Columns(id_column, *modality_columns(modalities, text_column, image_column), label_column, label_sep)
    rows = _blank_to_none(iter_table(path, delimiter), image_column, label_column)
    return records_from_rows(rows, cols, names, str(Path(image_root or root).resolve()), on_error, check_images,
                             max_text_chars)
