"""The in-memory dataset every builder returns, and the error raised for bad rows."""

from __future__ import annotations

import difflib
from collections import Counter
from typing import Any

from torch.utils.data import Dataset

ON_ERROR = ("raise", "skip")


class DataError(ValueError):
    """A problem with one row of a data file; the message starts with ``file:line`` (``file:line-last_line`` for a
    row read from several physical lines, such as a CSV field that a stray quote ran on)."""

    def __init__(self, reason: str, file: str, line: int, detail: str, last_line: int | None = None):
        self.last_line = last_line if last_line is not None and last_line != line else None
        where = f"{line}-{self.last_line}" if self.last_line is not None else f"{line}"
        super().__init__(f"{file}:{where}: {reason.replace('_', ' ')}: {detail}")
        self.reason, self.file, self.line, self.detail = reason, file, line, detail

    def as_skip(self) -> dict[str, Any]:
        """``{reason, file, line, detail}``, plus ``last_line`` for a row spanning several lines."""
        skip = {"reason": self.reason, "file": self.file, "line": self.line, "detail": self.detail}
        if self.last_line is not None:
            skip["last_line"] = self.last_line
        return skip


def check_on_error(on_error: str) -> str:
    if on_error not in ON_ERROR:
        near = difflib.get_close_matches(str(on_error), ON_ERROR, n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}.{hint}")
    return on_error


class MultimodalDataset(Dataset):
    """A list of raw records; ``__getitem__`` returns the record dict (no decoding).

    Each record is ``{"id": str, "text": str | None, "image": str | None (absolute path),
    "label": int | list[int], "lang": str | None, "file": str, "line": int}``.

    Attributes:
        label_names: class names; ``label`` indexes into it (multi-label: a list of indices).
        multi_label: whether labels are lists of class indices.
        languages: sorted distinct ``lang`` values.
        has_text / has_image: whether any record carries that modality.
        skipped: rows dropped while reading (``on_error="skip"``), as ``{reason, file, line, detail}``.
    """

    def __init__(
        self,
        records: list[dict[str, Any]],
        label_names: list[str],
        multi_label: bool = False,
        skipped: list[dict[str, Any]] | None = None,
    ):
        self.records = records
        self.label_names = list(label_names)
        self.multi_label = multi_label
        self.skipped = list(skipped or [])
        self.languages = sorted({r["lang"] for r in records if r.get("lang")})
        self.has_text = any(r["text"] is not None for r in records)
        self.has_image = any(r["image"] is not None for r in records)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def skip_counts(self) -> dict[str, int]:
        """Number of dropped rows per reason."""
        return dict(Counter(s["reason"] for s in self.skipped))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.records[index]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self)}, labels={self.label_names}, multi_label={self.multi_label}, "
            f"languages={self.languages}, text={self.has_text}, image={self.has_image}, skipped={len(self.skipped)})"
        )
