"""Generic tables: CSV, TSV or JSON-lines files with configurable column names, one file per split.

The reader most datasets on disk fit without a conversion script: ``root/<split>.csv`` (or ``.tsv``/``.jsonl``,
or any ``file`` pattern) with an id, a text, an image-path and a label column, any of which may be absent
(``text_column: null`` for an image-only table, ``image_column: null`` for a text-only classifier).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .delimited import iter_delimited
from .labels import LabelMap, check_label_case, label_names_from_rows, read_label_file
from .records import DataError, MultimodalDataset
from .registry import register_dataset
from .rows import MAX_TEXT_CHARS, Columns, modality_columns, records_from_rows
from .splits import SplitNotFoundError, require_root, splits_matching

logger = logging.getLogger(__name__)
EXTENSIONS = {".csv": ",", ".tsv": "\t", ".jsonl": None, ".json": None}


def find_split_file(root: Path, split: str, file: str | None) -> Path:
    """``root/file.format(split=split)`` if ``file`` is given, else the one ``root/<split>.{csv,tsv,jsonl}``."""
    if file is not None:
        path = root / file.format(split=split)
        if not path.is_file():
            raise SplitNotFoundError(split, root, splits_matching(root, file), f"no {path}; file pattern {file!r}")
        return path
    found = [root / f"{split}{ext}" for ext in EXTENSIONS if (root / f"{split}{ext}").is_file()]
    if len(found) > 1:
        raise FileNotFoundError(f"split {split!r}: several files {[p.name for p in found]} in {root}; keep one, or "
                                "set data.params.file to a pattern such as 'annotations/{split}.csv'")
    if not found:
        have = [p for p in root.glob("*") if p.suffix in EXTENSIONS and p.is_file()]
        raise SplitNotFoundError(split, root, (p.stem for p in have),
                                 f"no {split}.csv/.tsv/.jsonl; set data.params.file to a pattern such as "
                                 "'annotations/{split}.csv' for another layout")
    return found[0]


def iter_table(path: Path, delimiter: str | None = None, quotechar: str | None = '"',
               multiline_fields: bool = False) -> Iterator[tuple[str, int, dict[str, Any] | DataError]]:
    """``(file, line, row)`` for each data row; a line that cannot be parsed comes as a :class:`DataError`.

    JSON-lines for ``.jsonl``/``.json`` (unless a ``delimiter`` is given), else CSV/TSV read with row accounting
    (:func:`data.delimited.iter_delimited`: a record spanning lines is reported with its line range).
    """
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
    yield from iter_delimited(path, delimiter or EXTENSIONS[path.suffix], quotechar, multiline_fields)


def _blank_to_none(rows, *keys: str | None):
    for file, line, row in rows:
        if isinstance(row, dict):
            for key in keys:
                if key is not None and row.get(key) == "":
                    row[key] = None
        yield file, line, row


def has_column(path: Path, column: str, delimiter: str | None, quotechar: str | None) -> bool:
    """Whether the first parseable row of a table file has ``column`` (a CSV header always does if it names it)."""
    for _, _, row in iter_table(path, delimiter, quotechar, multiline_fields=True):
        if isinstance(row, dict):
            return column in row
    return True


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
    label_case: str = "error",
    image_root: str | None = None,
    quotes: bool = True,
    multiline_fields: bool = False,
    on_error: str = "raise",
    allow_outside_root: bool = False,
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
        text_column / image_column / label_column: column names. A split other than ``label_split`` whose file
            has no label column (a Kaggle-style test file) is read as unlabelled, for predictions.
        label_sep: split string labels on this separator for multi-label tables (``"Drama|Comedy"``).
        labels: class names (default ``root/labels.json``, else the labels of ``label_split``).
        label_split: split whose labels define the class list when none is given (so every split agrees).
        label_case: labels differing only in case are an ``error`` naming both, or ``merge`` into one class.
        image_root: folder image paths are relative to (default ``root``).
        quotes: CSV quoting with ``"`` (a quoted field may hold the delimiter); ``False`` reads quotes as plain
            characters (TSV files written without quoting).
        multiline_fields: accept quoted CSV fields holding line breaks (default: each is reported with its lines,
            since a stray quote produces exactly that; see :mod:`data.delimited`).
        on_error: ``raise`` on the first bad row (naming file and line) or ``skip`` bad rows, counted per reason.
        check_images: decode every image while reading (slower; catches unreadable images before training).
        max_text_chars: longer texts are an error (``text_too_long``); ``None`` = no limit.
    """
    check_label_case(label_case)
    quotechar = '"' if quotes else None
    base = require_root(root)
    path = find_split_file(base, split, file)
    try:
        label_file = find_split_file(base, label_split, file)
    except SplitNotFoundError:
        label_file = path
    if labels is not None:
        names = [str(x) for x in labels]
    else:
        names = read_label_file(base) or label_names_from_rows(
            iter_table(label_file, delimiter, quotechar, multiline_fields), label_column, label_sep, label_case)
    if label_column is not None and path != label_file and not has_column(path, label_column, delimiter, quotechar):
        logger.warning("%s has no %r column: its rows are read as unlabelled (predictions only, no metrics)", path,
                       label_column)
        label_column = None
    cols = Columns(id_column, *modality_columns(modalities, text_column, image_column), label_column, label_sep)
    rows = _blank_to_none(iter_table(path, delimiter, quotechar, multiline_fields), image_column, label_column)
    return records_from_rows(rows, cols, LabelMap(names, label_case), str(Path(image_root or root).resolve()),
                             on_error, check_images, max_text_chars, allow_outside_root=allow_outside_root)
