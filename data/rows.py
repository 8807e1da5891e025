"""Rows of any on-disk format -> checked records: the checks every reader shares, and the seeded stratified split.

Each reader (CSV, jsonl, a folder layout, a HuggingFace dataset) yields ``(file, line, row_dict)`` and names its
columns; :func:`records_from_rows` applies the same checks to all of them, so a bad row gives the same
``file:line: reason: detail`` error, or with ``on_error="skip"`` the same counted skip, whatever the format.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .images import image_path
from .labels import LabelMap
from .records import DataError, MultimodalDataset, check_on_error

# A text this long is almost always a parsing accident (an unbalanced CSV quote swallows the following lines into
# one field), not a document: it is an error unless the dataset's ``max_text_chars`` says otherwise.
MAX_TEXT_CHARS = 20_000


@dataclass
class Columns:
    """Which column of a row holds what; ``None`` means the dataset has no such column.

    ``image`` may hold a path (relative to the dataset's image root), raw bytes, or ``{"path", "bytes"}`` (a
    HuggingFace ``Image`` feature read without decoding). ``label`` may hold a name, an index, or a list of them
    (multi-label); with ``label_sep`` a string such as ``"Drama|Comedy"`` is split into a list. Labels are matched
    to classes by the one label policy of :mod:`data.labels`.
    """

    id: str | None = "id"
    text: str | None = "text"
    image: str | None = "image"
    label: str | None = "label"
    label_sep: str | None = None


def modality_columns(modalities, text_column: str, image_column: str) -> tuple[str | None, str | None]:
    """``(text column or None, image column or None)`` for the ``modalities`` a dataset is configured to read."""
    unknown = sorted(set(modalities) - {"text", "image"})
    if unknown or not modalities:
        raise ValueError(f"modalities must be a non-empty subset of [text, image], got {list(modalities)}")
    return (text_column if "text" in modalities else None), (image_column if "image" in modalities else None)


def _resolve_image(value: Any, image_root: str, err, check_images: bool, allow_outside_root: bool = False
                   ) -> Any:
    if isinstance(value, dict):  # HuggingFace Image feature, decode=False
        value = value.get("path") if value.get("bytes") is None else value["bytes"]
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return image_path(value, image_root, err, allow_outside_root, check_images)


def make_record(row: dict[str, Any], cols: Columns, names: LabelMap, image_root: str, file: str, line: int,
                check_images: bool = False, max_text_chars: int | None = MAX_TEXT_CHARS,
                allow_outside_root: bool = False) -> dict[str, Any]:
    """One row -> a record (see :class:`~data.records.MultimodalDataset`), or :class:`DataError` naming file:line."""

    def err(reason: str, detail: str) -> DataError:
        return DataError(reason, file, line, detail)

    if not isinstance(row, dict):
        raise err("malformed_line", f"expected a record with named columns, got {type(row).__name__}")
    for key in (cols.id, cols.text, cols.image, cols.label):
        if key is not None and key not in row:
            raise err("missing_column", f"no {key!r} column (row has {sorted(map(str, row))})")
    text = row[cols.text] if cols.text is not None else None
    if cols.text is not None:
        if not isinstance(text, str) or not text.strip():
            raise err("empty_text", f"text is {text!r}")
        if max_text_chars is not None and len(text) > max_text_chars:
            raise err("text_too_long", f"text has {len(text)} characters (> max_text_chars={max_text_chars}); "
                                       "a broken quote in a CSV often merges lines, else raise max_text_chars")
    image = _resolve_image(row[cols.image], image_root, err, check_images, allow_outside_root) \
        if cols.image is not None else None
    label = names.parse(row[cols.label], err, cols.label_sep) if cols.label is not None else None
    return {"id": str(row[cols.id]) if cols.id is not None else f"{os.path.basename(file)}:{line}",
            "text": text, "image": image, "label": label, "lang": row.get("lang"), "file": file, "line": line}


def settle_labels(records: list[dict[str, Any]], on_error: str, multi_label: bool | None,
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
    """A split is labelled throughout (train) or not at all (a test file released without labels): in a labelled
    split an unlabelled row is a ``missing_label`` error. Returns ``(records, skips, multi_label)``; multi-label
    records get list labels throughout."""
    skipped = []
    unlabelled = [r for r in records if r["label"] is None]
    if unlabelled and len(unlabelled) < len(records):
        bad = [DataError("missing_label", r["file"], r["line"], "no label, but other rows of this split have one")
               for r in unlabelled]
        if on_error == "raise":
            raise bad[0]
        skipped = [e.as_skip() for e in bad]
        records = [r for r in records if r["label"] is not None]
    multi = any(isinstance(r["label"], list) for r in records) if multi_label is None else multi_label
    if multi:
        for r in records:
            if r["label"] is not None and not isinstance(r["label"], list):
                r["label"] = [r["label"]]
    return records, skipped, multi


def records_from_rows(rows: Iterable[tuple[str, int, Any]], cols: Columns, names: LabelMap | list[str],
                      image_root: str, on_error: str = "raise", check_images: bool = False,
                      max_text_chars: int | None = MAX_TEXT_CHARS, multi_label: bool | None = None,
                      allow_outside_root: bool = False) -> MultimodalDataset:
    """Check every row and build the dataset.

    Args:
        rows: ``(file, line, row)``; a reader passes a :class:`DataError` as ``row`` for a line it could not parse.
        cols / image_root: see :func:`make_record`.
        names: the classes (a :class:`~data.labels.LabelMap`, or plain names matched with ``label_case="error"``).
        on_error: ``"raise"`` the first :class:`DataError`, or ``"skip"`` bad rows and record each in ``skipped``.
        multi_label: force (or forbid) multi-label; ``None`` = multi-label if any label is a list.
        allow_outside_root: read image paths that leave ``image_root`` (refused by default, per row).
    """
    check_on_error(on_error)
    labels = LabelMap.of(names)
    records, skipped = [], []
    for file, line, row in rows:
        try:
            if isinstance(row, DataError):
                raise row
            records.append(make_record(row, cols, labels, image_root, file, line, check_images, max_text_chars,
                                       allow_outside_root))
        except DataError as e:
            if on_error == "raise":
                raise
            skipped.append(e.as_skip())
    records, unlabelled, multi = settle_labels(records, on_error, multi_label)
    return MultimodalDataset(records, labels.names, multi_label=multi, skipped=skipped + unlabelled)


def stratified_split(labels: list[Any], fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean mask ``(N,)`` selecting about ``fraction`` of each class (at least one of any class with 2+ rows).

    The same ``seed`` and labels always give the same mask, so a dev split carved from a train split is stable.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"dev fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    keys = np.array([str(x) for x in labels])
    mask = np.zeros(len(keys), dtype=bool)
    for cls in sorted(set(keys.tolist())):
        idx = np.flatnonzero(keys == cls)
        if len(idx) < 2:
            continue
        take = max(1, int(round(len(idx) * fraction)))
        mask[rng.permutation(idx)[:take]] = True
    return mask


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def class_folder_files(folder: Path) -> list[tuple[str, Path]]:
    """``(class, file)`` for each image in ``folder/<class>/``, sorted (the torchvision ImageFolder layout)."""
    return [(d.name, f) for d in sorted(p for p in folder.iterdir() if p.is_dir())
            for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_EXTENSIONS]


def carve_dev(items: list[tuple[str, Path]], split: str, dev_fraction: float, seed: int) -> list[tuple[str, Path]]:
    """The ``train`` part or the ``dev`` part of ``(class, file)`` items, split per class with a fixed seed."""
    dev = stratified_split([c for c, _ in items], dev_fraction, seed)
    return [item for item, is_dev in zip(items, dev) if is_dev == (split != "train")]
