"""HuggingFace ``datasets`` from local disk: a ``save_to_disk`` folder, or local files (parquet, csv, json, arrow)
loaded with ``load_dataset``. No download: ``root`` is a folder on this machine.

Column names are configurable; a ``ClassLabel`` column gives the label names, an ``Image`` column is read
without decoding (file paths stay paths; embedded bytes are kept in memory and decoded per item).
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .labels import LabelMap, label_names_from_rows
from .records import MultimodalDataset
from .registry import register_dataset
from .rows import MAX_TEXT_CHARS, Columns, modality_columns, records_from_rows
from .splits import SplitNotFoundError, require_root, splits_matching

_BUILDERS = {".parquet": "parquet", ".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json",
             ".arrow": "arrow"}


def _import_datasets():
    try:
        import datasets
    except ImportError:
        raise ImportError("data.name=hf_dataset needs the HuggingFace `datasets` package: "
                          'pip install -e ".[hf]" (or pip install datasets)') from None
    return datasets


def load_hf_split(root: Path, split: str, files: str | None):
    """The ``datasets.Dataset`` of one split: ``load_from_disk(root)[split]`` or ``load_dataset`` of ``files``."""
    datasets = _import_datasets()

    if files is None:
        if not ((root / "dataset_dict.json").is_file() or (root / "dataset_info.json").is_file()):
            raise FileNotFoundError(f"{root} is not a datasets.save_to_disk folder (no dataset_dict.json); for local "
                                    "files set data.params.files to a pattern such as 'data/{split}.parquet'")
        loaded = datasets.load_from_disk(str(root))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise SplitNotFoundError(split, root, loaded, "the splits of this DatasetDict")
            return loaded[split]
        return loaded
    pattern = str(root / files.format(split=split))
    builder = _BUILDERS.get(Path(pattern).suffix)
    if builder is None:
        raise ValueError(f"hf_dataset: cannot tell the format of {pattern!r}; use one of {', '.join(_BUILDERS)}")
    kwargs = {"delimiter": "\t"} if pattern.endswith(".tsv") else {}
    if not glob.glob(pattern):
        raise SplitNotFoundError(split, root, splits_matching(root, files), f"no file matches {pattern}")
    return datasets.load_dataset(builder, data_files={split: pattern}, split=split, **kwargs)


def _rows(ds, file: str, label_column: str | None = None) -> Iterator[tuple[str, int, Any]]:
    """``(file, row number, row)``; a ``ClassLabel`` column's integers become their names (``-1``, the
    ``datasets`` convention for a missing label, becomes no label)."""
    feature = ds.features.get(label_column) if label_column else None
    feature = getattr(feature, "feature", feature)  # Sequence(ClassLabel) for multi-label
    names = getattr(feature, "names", None) if type(feature).__name__ == "ClassLabel" else None

    def name(x):
        return None if x is None or x == -1 else names[x] if isinstance(x, int) and 0 <= x < len(names) else x

    for i, row in enumerate(ds):
        if names is not None and label_column in row:
            value = row[label_column]
            row = {**row, label_column: [name(x) for x in value] if isinstance(value, list) else name(value)}
        yield file, i + 1, row


@register_dataset("hf_dataset")
def build_hf_dataset(
    root: str,
    split: str,
    files: str | None = None,
    modalities: tuple[str, ...] = ("text", "image"),
    id_column: str | None = None,
    text_column: str = "text",
    image_column: str = "image",
    label_column: str = "label",
    labels: list[str] | None = None,
    label_split: str = "train",
    label_case: str = "error",
    on_error: str = "raise",
    allow_outside_root: bool = False,
    check_images: bool = False,
    max_text_chars: int | None = MAX_TEXT_CHARS,
) -> MultimodalDataset:
    """One split of a local HuggingFace dataset.

    Args:
        root: a ``save_to_disk`` folder, or the folder ``files`` is relative to.
        split: split name.
        files: local data files per split, e.g. ``"data/{split}-*.parquet"`` (None = ``load_from_disk(root)``).
        modalities: which of ``text``/``image`` to read (``[text]`` or ``[image]`` for a unimodal task).
        id_column: column of row ids (default: none; errors name a row ``<root>/<split>:<row number>``).
        text_column / image_column / label_column: column names.
        labels: class names (default: the ``ClassLabel`` names, else the labels of ``label_split`` under the label
            policy of :mod:`data.labels`).
        label_split: split whose labels define the class list when there is no ``ClassLabel`` (so every split
            agrees; the split itself if there is no such split).
        on_error / check_images / max_text_chars / label_case: see :func:`data.table.build_table`.
    """
    datasets = _import_datasets()
    base = require_root(root)
    ds = load_hf_split(base, split, files)
    if image_column is not None and image_column in ds.column_names \
            and isinstance(ds.features[image_column], datasets.Image):
        ds = ds.cast_column(image_column, datasets.Image(decode=False))  # {"path", "bytes"}: decoded per item
    names = labels
    feature = ds.features.get(label_column) if label_column else None
    if names is None and isinstance(feature, datasets.ClassLabel):
        names = feature.names
    elif names is None and isinstance(feature, datasets.Sequence) and isinstance(feature.feature, datasets.ClassLabel):
        names = feature.feature.names
    elif names is None and label_column in ds.column_names:
        try:
            source = ds if split == label_split else load_hf_split(base, label_split, files)
        except SplitNotFoundError:
            source = ds
        source = source.select_columns([label_column]) if label_column in source.column_names else ds
        names = label_names_from_rows(_rows(source, str(base / label_split), label_column), label_column,
                                      label_case=label_case)
    text_column, image_column = modality_columns(modalities, text_column, image_column)
    cols = Columns(id_column, text_column, image_column, label_column)
    return records_from_rows(_rows(ds, str(base / split), label_column), cols, LabelMap(names or [], label_case),
                             str(base.resolve()), on_error, check_images, max_text_chars,
                             allow_outside_root=allow_outside_root)
