"""Datasets in the Hateful-Memes / MMBT jsonl layout: ``root/<split>.jsonl`` with one JSON object per line,
``{"id", "img" | "image", "text", "label", "lang"?}``; image paths are relative to ``root``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .images import image_path
from .labels import LabelMap, label_names_from_rows, read_label_file
from .records import DataError, MultimodalDataset, check_on_error
from .registry import register_dataset
from .rows import settle_labels
from .splits import SplitNotFoundError, require_root

MODALITIES = ("text", "image")


def _rows_of_files(files: list[Path]):
    """``(file, line, row)`` of each line of ``files`` (lines that are not JSON are left out here)."""
    for path in files:
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                try:
                    yield str(path), line_no, json.loads(line)
                except ValueError:
                    continue


def resolve_label_names(root: str | Path, labels: list[str] | None = None, label_case: str = "error",
                        label_split: str = "train") -> list[str]:
    """``labels`` if given, else ``root/labels.json``, else the labels of ``root/<label_split>.jsonl`` (or, without
    that file, of every ``*.jsonl`` of root), under the label policy of :mod:`data.labels`: every split agrees."""
    if labels is not None:
        return [str(x) for x in labels]
    root = Path(root)
    train = root / f"{label_split}.jsonl"
    files = [train] if train.is_file() else sorted(root.glob("*.jsonl"))
    return read_label_file(root) or label_names_from_rows(_rows_of_files(files), "label", label_case=label_case)


def parse_row(
    obj: Any, root: Path, names: LabelMap, modalities: tuple[str, ...], file: str, line: int, check_images: bool,
    allow_outside_root: bool = False,
) -> dict[str, Any]:
    """Turn one decoded JSON row into a record, raising :class:`DataError` naming ``file:line``."""

    def err(reason: str, detail: str) -> DataError:
        return DataError(reason, file, line, detail)

    if not isinstance(obj, dict):
        raise err("malformed_json", f"expected a JSON object, got {type(obj).__name__}")
    img_key = "img" if "img" in obj else "image"
    required = ["id", "label"] + [m if m == "text" else img_key for m in modalities]
    for key in required:
        if key not in obj:
            raise err("missing_column", f"no {key!r} column (row has {sorted(obj)})")
    text = obj.get("text") if "text" in modalities else None
    if text is not None and (not isinstance(text, str) or not text.strip()):
        raise err("empty_text", f"text is {text!r}; use null for a row without text")
    image = obj.get(img_key) if "image" in modalities else None
    if image is not None:
        image = image_path(image, root, err, allow_outside_root, check_images)
    lang = obj.get("lang")
    return {
        "id": str(obj["id"]),
        "text": text,
        "image": image,
        "label": names.parse(obj["label"], err),
        "lang": str(lang) if lang is not None else None,
        "file": file,
        "line": line,
    }


def read_jsonl(
    path: str | Path,
    root: str | Path | None = None,
    label_names: list[str] | None = None,
    languages: list[str] | None = None,
    modalities: tuple[str, ...] = MODALITIES,
    on_error: str = "raise",
    check_images: bool = False,
    label_case: str = "error",
    allow_outside_root: bool = False,
) -> MultimodalDataset:
    """Read one jsonl file into a :class:`MultimodalDataset`.

    Args:
        path: the jsonl file.
        root: folder image paths are relative to (default: the file's folder).
        label_names: class names (default: see :func:`resolve_label_names`, from ``root/train.jsonl``).
        languages: keep only rows whose ``lang`` is in this list (None: all).
        modalities: which of ``text``/``image`` to read; a row must have the column of each (null = absent).
        on_error: ``"raise"`` a :class:`DataError` naming file and line, or ``"skip"`` the row and record why.
        check_images: decode every image now, so unreadable ones are caught at read time.
        label_case: labels differing only in case are an ``error`` or ``merge`` into one class (:mod:`data.labels`).
        allow_outside_root: read image paths that leave ``root`` (``../x.png``, absolute paths); refused by default.
    """
    check_on_error(on_error)
    path = Path(path).resolve()
    root = Path(root).resolve() if root is not None else path.parent
    for m in modalities:
        if m not in MODALITIES:
            raise ValueError(f"unknown modality {m!r}; valid: {', '.join(MODALITIES)}")
    if not path.is_file():
        raise FileNotFoundError(f"no data file {path}")
    names = LabelMap(resolve_label_names(root, label_names, label_case), label_case)
    records, skipped = [], []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                try:
                    obj = json.loads(line)
                except ValueError as e:
                    raise DataError("malformed_json", str(path), line_no, str(e)) from None
                if languages is not None and isinstance(obj, dict) and obj.get("lang") not in languages:
                    continue
                record = parse_row(obj, root, names, modalities, str(path), line_no, check_images,
                                   allow_outside_root)
            except DataError as e:
                if on_error == "raise":
                    raise
                skipped.append(e.as_skip())
                continue
            records.append(record)
    records, unlabelled, multi = settle_labels(records, on_error, None)
    return MultimodalDataset(records, names.names, multi_label=multi, skipped=skipped + unlabelled)


@register_dataset("jsonl")
def build_jsonl(
    root: str,
    split: str,
    labels: list[str] | None = None,
    languages: list[str] | None = None,
    modalities: tuple[str, ...] = MODALITIES,
    on_error: str = "raise",
    check_images: bool = False,
    label_case: str = "error",
    allow_outside_root: bool = False,
) -> MultimodalDataset:
    """Any dataset in the Hateful-Memes / MMBT jsonl layout (``root/<split>.jsonl``); see :func:`read_jsonl`."""
    path = require_root(root) / f"{split}.jsonl"
    if not path.is_file():
        raise SplitNotFoundError(split, root, (p.stem for p in Path(root).glob("*.jsonl")), f"no {path}")
    return read_jsonl(path, root, labels, languages, tuple(modalities), on_error, check_images, label_case,
                      allow_outside_root)
