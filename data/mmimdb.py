"""MM-IMDb (Arevalo et al., 2017, "Gated Multimodal Units for Information Fusion"): movie plot + poster ->
genres, multi-label over 23 genres (BCE training, per-label thresholds tuned on the dev split, micro/macro/
weighted/samples F1).

Two layouts are read as they are on disk:

- ``jsonl`` (MMBT, Kiela et al., 2019): ``root/<split>.jsonl`` with ``{"id", "text", "img" | "image",
  "label": [genres]}``, image paths relative to ``root``;
- ``raw`` (the original release): ``root/dataset/<id>.jpeg`` + ``root/dataset/<id>.json`` (``plot``: list of
  plots, the longest is used, as MMBT does; ``genres``: list) and ``root/split.json`` (``{"train": [ids],
  "dev": [...], "test": [...]}``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .labels import LabelMap, split_labels
from .records import DataError, MultimodalDataset
from .registry import register_dataset
from .rows import MAX_TEXT_CHARS, Columns, records_from_rows
from .splits import SplitNotFoundError, require_root
from .table import iter_table

GENRES = ["Drama", "Comedy", "Romance", "Thriller", "Crime", "Action", "Adventure", "Horror", "Documentary",
          "Mystery", "Sci-Fi", "Fantasy", "Family", "Biography", "War", "History", "Music", "Animation", "Musical",
          "Western", "Sport", "Short", "Film-Noir"]
LAYOUTS = ("auto", "jsonl", "raw")
UNKNOWN_GENRES = ("drop", "error")


def _jsonl_rows(path: Path) -> Iterator[tuple[str, int, Any]]:
    for file, line, row in iter_table(path):
        if isinstance(row, dict) and "img" not in row and "image" in row:
            row["img"] = row.pop("image")
        yield file, line, row


def _raw_rows(root: Path, split: str) -> Iterator[tuple[str, int, Any]]:
    """One row per id of ``split.json``; problems name the movie's own json file (line 1)."""
    split_file = root / "split.json"
    ids = json.loads(split_file.read_text(encoding="utf-8"))
    if split not in ids:
        raise SplitNotFoundError(split, root, ids, f"the splits listed in {split_file}")
    for movie_id in ids[split]:
        path = root / "dataset" / f"{movie_id}.json"
        if not path.is_file():
            yield str(split_file), 1, DataError("missing_file", str(split_file), 1,
                                                f"movie {movie_id} listed but {path} does not exist")
            continue
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            plots = meta.get("plot") or [None]
            row = {"id": str(movie_id), "text": max(plots, key=lambda p: len(p or "")),
                   "img": f"dataset/{movie_id}.jpeg", "label": meta.get("genres")}
        except (ValueError, AttributeError, TypeError) as e:
            row = DataError("malformed_line", str(path), 1, f"not a movie JSON object: {e}")
        yield str(path), 1, row


def _filter_genres(rows, names: LabelMap):
    """Drop the genres that are not classes (matched by the label policy: ``' Drama'`` is ``Drama``)."""
    for file, line, row in rows:
        if isinstance(row, dict) and row.get("label") is not None:
            row["label"] = [g for g in split_labels(row["label"]) if names.lookup(g) is not None]
        yield file, line, row


@register_dataset("mmimdb")
def build_mmimdb(
    root: str,
    split: str,
    layout: str = "auto",
    labels: list[str] | None = None,
    unknown_genres: str = "drop",
    on_error: str = "raise",
    allow_outside_root: bool = False,
    check_images: bool = False,
    max_text_chars: int | None = MAX_TEXT_CHARS,
    label_case: str = "error",
) -> MultimodalDataset:
    """One split of MM-IMDb as a multi-label dataset over the 23 genres.

    Args:
        root: dataset folder (``<split>.jsonl`` files, or ``split.json`` + ``dataset/``).
        split: ``train``, ``dev`` or ``test``.
        layout: ``jsonl``, ``raw``, or ``auto`` (``raw`` when ``root/split.json`` exists).
        labels: the genre list (default: the 23 genres of Arevalo et al.).
        unknown_genres: ``drop`` genres outside ``labels`` (the raw release tags movies with rarer genres the
            benchmark leaves out) or ``error`` on them.
        on_error / check_images / max_text_chars / label_case: see :func:`data.table.build_table`.
    """
    for name, value, valid in (("layout", layout, LAYOUTS), ("unknown_genres", unknown_genres, UNKNOWN_GENRES)):
        if value not in valid:
            raise ValueError(f"mmimdb: {name}={value!r}; choose one of {', '.join(valid)}")
    base = require_root(root)
    if layout == "auto":
        layout = "raw" if (base / "split.json").is_file() else "jsonl"
    if layout == "raw":
        if not (base / "split.json").is_file():
            raise FileNotFoundError(f"no {base / 'split.json'}: the raw MM-IMDb layout needs it (or use layout=jsonl)")
        rows = _raw_rows(base, split)
    else:
        path = base / f"{split}.jsonl"
        if not path.is_file():
            raise SplitNotFoundError(split, root, (p.stem for p in base.glob("*.jsonl")),
                                     f"jsonl layout; for the raw release, {base / 'split.json'} is needed")
        rows = _jsonl_rows(path)
    names = LabelMap(labels or GENRES, label_case)
    if unknown_genres == "drop":
        rows = _filter_genres(rows, names)
    cols = Columns(id="id", text="text", image="img", label="label")
    return records_from_rows(rows, cols, names, str(base.resolve()), on_error, check_images, max_text_chars,
                             multi_label=True, allow_outside_root=allow_outside_root)
