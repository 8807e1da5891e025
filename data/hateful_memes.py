"""Hateful Memes (Kiela et al., 2020, "The Hateful Memes Challenge: Detecting Hate Speech in Multimodal Memes").

DrivenData layout: ``root/img/NNNNN.png`` and ``root/<split>.jsonl`` with ``{"id", "img", "text", "label"}`` per
line, splits ``train``, ``dev_seen``, ``test_seen``, ``dev_unseen``, ``test_unseen`` (phase 1: ``dev``, ``test``).
Test files released without a ``label`` give unlabelled records: evaluate.py skips their metrics and writes the
challenge's ``id,proba,label`` prediction CSV with ``--predictions``.
"""

from __future__ import annotations

import json
from pathlib import Path

from .labels import LabelMap
from .records import MultimodalDataset
from .registry import register_dataset
from .rows import MAX_TEXT_CHARS, Columns, records_from_rows
from .splits import SplitNotFoundError, require_root
from .table import iter_table

LABELS = ["not_hateful", "hateful"]
SPLITS = ("train", "dev_seen", "test_seen", "dev_unseen", "test_unseen", "dev", "test")


def _file_has_labels(path: Path) -> bool:
    """Whether the first parseable line of ``path`` carries a ``label`` key (test files of phase 1 do not)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                return "label" in row
    return True


@register_dataset("hateful_memes")
def build_hateful_memes(
    root: str,
    split: str,
    on_error: str = "raise",
    allow_outside_root: bool = False,
    check_images: bool = False,
    max_text_chars: int | None = MAX_TEXT_CHARS,
    label_case: str = "error",
) -> MultimodalDataset:
    """One split of Hateful Memes; labels ``not_hateful`` (0) / ``hateful`` (1), meme image + its overlaid text.

    Args:
        root: the folder holding ``img/`` and the ``*.jsonl`` files (as unpacked from DrivenData).
        split: ``train``, ``dev_seen``, ``test_seen``, ``dev_unseen``, ``test_unseen`` (or phase-1 ``dev``/``test``).
        on_error / check_images / max_text_chars / label_case: see :func:`data.table.build_table`.
    """
    path = require_root(root) / f"{split}.jsonl"
    if not path.is_file():
        raise SplitNotFoundError(split, root, (p.stem for p in Path(root).glob("*.jsonl")),
                                 f"the DrivenData release has {', '.join(SPLITS[:5])}")
    cols = Columns(id="id", text="text", image="img", label="label" if _file_has_labels(path) else None)
    return records_from_rows(iter_table(path), cols, LabelMap(LABELS, label_case), str(Path(root).resolve()),
                             on_error, check_images, max_text_chars, multi_label=False,
                             allow_outside_root=allow_outside_root)
