"""HuggingFace ``datasets`` from local disk: a ``save_to_disk`` folder, or local files (parquet, csv, json, arrow)
loaded with ``load_dataset``. No download: ``root`` is a folder on this machine.

Column names are configurable; a ``ClassLabel`` column gives the label names, an ``Image`` column is read
without decoding (file paths stay paths; embedded bytes are kept in memory and decoded per item).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .records import MultimodalDataset
from .registry import register_dataset
from .rows import MAX_TEXT_CHARS, Columns, modality_columns, records_from_rows

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
                raise FileNotFoundError(f"no split {split!r} in {root} (it has {sorted(loaded)})")
            return loaded[split]
        return loaded
    pattern = str(root / files.format(split=split))
    builder = _BUILDERS.get(Path(pattern).suffix)
    if builder is None:
        raise ValueError(f"hf_dataset: cannot tell the format of {pattern!r}; use one of {', '.join(_BUILDERS)}")
    kwargs = {"delimiter": "\t"} if pattern.endswith(".tsv") else {}
    try:
        return datasets.load_dataset(builder, data_files={split: pattern}, split=split, **kwargs)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"no split {split!r}: no file matches {pattern} ({e})") from None


def _rows(ds, file: str) -> Iterator[tuple[str, int, Any]]:
    for i, row in enumerate(ds):
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
    on_error: str = "raise",
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
        labels: class names (default: the ``ClassLabel`` names, else the sorted distinct labels of the split).
        on_error / check_images / max_text_chars: see :func:`data.table.build_table`.
    """
    datasets = _import_datasets()
    base = Path(root)
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
        values = {x for v in ds[label_column] for x in (v if isinstance(v, list) else [v]) if x is not None}
        ints = all(isinstance(x, int) for x in values)
        names = [str(i) for i in range(max(values) + 1)] if ints and values else sorted(map(str, values))
    text_column, image_column = modality_columns(modalities, text_column, image_column)
    cols = Columns(id_column, text_column, image_column, label_column)
    return records_from_rows(_rows(ds, str(base / split)), cols, list(names or []), str(base.resolve()), on_error,
                             check_images, max_text_chars)
