"""SNLI-VE (Xie et al., 2019, "Visual Entailment: A Novel Task for Fine-Grained Image Understanding"): a
Flickr30k image as premise and a hypothesis sentence -> entailment / neutral / contradiction.

Files: ``root/snli_ve_<split>.jsonl`` (as released) or ``root/<split>.jsonl``, splits ``train``, ``dev``,
``test``; images ``root/<image_dir>/<flickr id>.jpg``. Both the released field names (``Flikr30kID`` - sic -,
``sentence2``, ``gold_label``; ``sentence1`` is the caption the image replaces and is not read) and the common
``image``, ``sentence``, ``label`` form are accepted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .labels import LabelMap
from .records import MultimodalDataset
from .registry import register_dataset
from .rows import MAX_TEXT_CHARS, Columns, records_from_rows
from .splits import SplitNotFoundError, require_root
from .table import iter_table

LABELS = ["contradiction", "neutral", "entailment"]
_IMAGE_KEYS = ("Flikr30kID", "Flickr30kID", "Flickr30K_ID", "flickr30k_id", "image")
_TEXT_KEYS = ("sentence2", "sentence", "hypothesis")
_LABEL_KEYS = ("gold_label", "label")


def _normalise(rows, image_dir: str) -> Iterator[tuple[str, int, Any]]:
    """Map either naming onto ``image``/``text``/``label``; a row lacking one keeps it missing (reported)."""
    for file, line, row in rows:
        if isinstance(row, dict):
            out = {"id": row.get("pairID", row.get("id", f"{Path(file).stem}:{line}"))}
            for target, keys in (("image", _IMAGE_KEYS), ("text", _TEXT_KEYS), ("label", _LABEL_KEYS)):
                key = next((k for k in keys if k in row), None)
                if key is not None:
                    out[target] = row[key]
            if isinstance(out.get("image"), (str, int)):
                name = str(out["image"])
                out["image"] = f"{image_dir}/{name if Path(name).suffix else name + '.jpg'}"
            row = out
        yield file, line, row


@register_dataset("snli_ve")
def build_snli_ve(
    root: str,
    split: str,
    image_dir: str = "flickr30k_images",
    on_error: str = "raise",
    allow_outside_root: bool = False,
    check_images: bool = False,
    max_text_chars: int | None = MAX_TEXT_CHARS,
    label_case: str = "error",
) -> MultimodalDataset:
    """One split of SNLI-VE, labels ``contradiction`` / ``neutral`` / ``entailment``.

    Args:
        root: folder holding the jsonl files and ``image_dir``.
        split: ``train``, ``dev`` or ``test``.
        image_dir: the Flickr30k image folder, relative to root.
        on_error / check_images / max_text_chars / label_case: see :func:`data.table.build_table`.
    """
    base = require_root(root)
    path = next((p for p in (base / f"snli_ve_{split}.jsonl", base / f"{split}.jsonl") if p.is_file()), None)
    if path is None:
        have = {p.stem.removeprefix("snli_ve_") for p in base.glob("*.jsonl")}
        raise SplitNotFoundError(split, root, have, f"neither snli_ve_{split}.jsonl nor {split}.jsonl")
    cols = Columns(id="id", text="text", image="image", label="label")
    return records_from_rows(_normalise(iter_table(path), image_dir), cols, LabelMap(LABELS, label_case),
                             str(base.resolve()), on_error, check_images, max_text_chars, multi_label=False,
                             allow_outside_root=allow_outside_root)
