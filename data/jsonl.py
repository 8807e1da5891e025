"""Datasets in the Hateful-Memes / MMBT jsonl layout: ``root/<split>.jsonl`` with one JSON object per line,
``{"id", "img" | "image", "text", "label", "lang"?}``; image paths are relative to ``root``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from PIL import Image

from .records import DataError, MultimodalDataset, check_on_error
from .registry import register_dataset

MODALITIES = ("text", "image")


def _label_names_from_files(root: Path) -> list[str]:
    """Sorted distinct labels over every ``*.jsonl`` in root, so all splits agree; bad lines are ignored here."""
    found: set = set()
    for path in sorted(root.glob("*.jsonl")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    label = json.loads(line).get("label")
                except (ValueError, AttributeError):
                    continue
                for item in label if isinstance(label, list) else [label]:
                    if isinstance(item, (int, str)):
                        found.add(item)
    if found and all(isinstance(x, int) for x in found):
        return [str(i) for i in range(max(found) + 1)]
    return sorted(str(x) for x in found)


def resolve_label_names(root: str | Path, labels: list[str] | None = None) -> list[str]:
    """``labels`` if given, else ``root/labels.json`` (a list, or ``{"labels": [...]}``), else labels found."""
    if labels is not None:
        return [str(x) for x in labels]
    path = Path(root) / "labels.json"
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        return [str(x) for x in (data["labels"] if isinstance(data, dict) else data)]
    return _label_names_from_files(Path(root))


def check_image(path: str) -> None:
    """Fully decode an image, raising ``OSError`` if it is unreadable or truncated."""
    with Image.open(path) as im:
        im.load()


def _parse_label(raw: Any, names: list[str], err) -> int | list[int]:
    def one(x: Any) -> int:
        if isinstance(x, int) and 0 <= x < len(names):
            return int(x)
        if isinstance(x, str) and x in names:
            return names.index(x)
        raise err("unknown_label", f"label {x!r} is not one of {names} (or an index into them)")

    return [one(x) for x in raw] if isinstance(raw, list) else one(raw)


def parse_row(
    obj: Any, root: Path, names: list[str], modalities: tuple[str, ...], file: str, line: int, check_images: bool
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
        image = os.path.abspath(os.path.join(root, image))
        if not os.path.isfile(image):
            raise err("missing_image", f"image file {image} does not exist")
        if check_images:
            try:
                check_image(image)
            except (OSError, SyntaxError, ValueError) as e:
                raise err("unreadable_image", f"cannot read image {image}: {e}") from None
    lang = obj.get("lang")
    return {
        "id": str(obj["id"]),
        "text": text,
        "image": image,
        "label": _parse_label(obj["label"], names, err),
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
) -> MultimodalDataset:
    """Read one jsonl file into a :class:`MultimodalDataset`.

    Args:
        path: the jsonl file.
        root: folder image paths are relative to (default: the file's folder).
        label_names: class names (default: see :func:`resolve_label_names`).
        languages: keep only rows whose ``lang`` is in this list (None: all).
        modalities: which of ``text``/``image`` to read; a row must have the column of each (null = absent).
        on_error: ``"raise"`` a :class:`DataError` naming file and line, or ``"skip"`` the row and record why.
        check_images: decode every image now, so unreadable ones are caught at read time.
    """
    check_on_error(on_error)
    path = Path(path).resolve()
    root = Path(root).resolve() if root is not None else path.parent
    for m in modalities:
        if m not in MODALITIES:
            raise ValueError(f"unknown modality {m!r}; valid: {', '.join(MODALITIES)}")
    if not path.is_file():
        raise FileNotFoundError(f"no data file {path}")
    names = resolve_label_names(root, label_names)
    records, skipped, multi = [], [], False
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
                record = parse_row(obj, root, names, modalities, str(path), line_no, check_images)
            except DataError as e:
                if on_error == "raise":
                    raise
                skipped.append(e.as_skip())
                continue
            multi = multi or isinstance(record["label"], list)
            records.append(record)
    if multi:
        for r in records:
            if not isinstance(r["label"], list):
                r["label"] = [r["label"]]
    return MultimodalDataset(records, names, multi_label=multi, skipped=skipped)


@register_dataset("jsonl")
def build_jsonl(
    root: str,
    split: str,
    labels: list[str] | None = None,
    languages: list[str] | None = None,
    modalities: tuple[str, ...] = MODALITIES,
    on_error: str = "raise",
    check_images: bool = False,
) -> MultimodalDataset:
    """Any dataset in the Hateful-Memes / MMBT jsonl layout (``root/<split>.jsonl``); see :func:`read_jsonl`."""
    path = Path(root) / f"{split}.jsonl"
    if not path.is_file():
        found = sorted(p.stem for p in Path(root).glob("*.jsonl"))
        raise FileNotFoundError(f"no split {split!r}: {path} does not exist (splits found in {root}: {found})")
    return read_jsonl(path, root, labels, languages, tuple(modalities), on_error, check_images)
