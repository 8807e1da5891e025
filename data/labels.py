"""The one label policy every reader follows (docs/datasets.md, "Labels").

- A label's surrounding whitespace is stripped (``'Politics '`` is ``'Politics'``); a blank label is no label.
- Class names found in the data: if every label is an integer, the classes are the sorted distinct values seen
  (labels 1..4 give the 4 classes ``'1'..'4'``, never an empty class 0); otherwise the sorted distinct names.
- Labels that differ only in case (``business`` / ``Business``) are an error naming both spellings and where each
  was seen; with ``label_case="merge"`` they are one class, named by the most frequent spelling.
- Matching a row's label to given class names: by name; an integer is an index into the names only when none of
  the names is an integer (so with classes ``'1'..'4'`` a label ``0`` is unknown, never silently class ``'1'``).

Readers collect the labels of their training split with :func:`label_names_from_rows` and match rows through a
:class:`LabelMap` (``data.rows.records_from_rows`` does this for every in-memory reader).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .records import DataError

LABEL_CASE = ("error", "merge")
_INTEGER = re.compile(r"[+-]?\d+")


def check_label_case(label_case: str) -> str:
    if label_case not in LABEL_CASE:
        raise ValueError(f"label_case must be one of {', '.join(LABEL_CASE)}, got {label_case!r}")
    return label_case


def label_key(value: Any) -> str | None:
    """The text of one raw label under the policy: stripped, integers in canonical form; ``None`` for no label."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    text = str(value).strip()
    if not text:
        return None
    return str(int(text)) if _INTEGER.fullmatch(text) else text


def _is_integer(key: str) -> bool:
    return _INTEGER.fullmatch(key) is not None


def split_labels(value: Any, sep: str | None = None) -> list[Any]:
    """The raw labels of one cell: a list stays a list; with ``sep`` a string ``"Drama|Comedy"`` is split."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if sep is not None and isinstance(value, str):
        return value.split(sep)
    return [value]


def _case_error(spellings: dict[str, list]) -> DataError:
    """The error for labels differing only in case, located where the later-seen spelling first appears."""
    (a, (fa, la, _, oa)), (b, (fb, lb, _, ob)) = sorted(spellings.items())[:2]
    file, line = (fa, la) if oa > ob else (fb, lb)
    return DataError("label_case", file, line, f"labels {a!r} ({fa}:{la}) and {b!r} ({fb}:{lb}) differ only in case: "
                                               "fix the spelling in the data, or set data.params.label_case=merge to "
                                               "read them as one class")


def label_names_from_rows(rows: Iterable[tuple[str, int, Any]], column: str | None, sep: str | None = None,
                          label_case: str = "error") -> list[str]:
    """The class names of a split under the policy (module docstring); rows that are not dicts are ignored here.

    Args:
        rows: ``(file, line, row)`` as readers yield them.
        column: the label column (``None``: no labels, ``[]``).
        sep: multi-label separator of string cells.
        label_case: ``error`` on labels differing only in case (naming both and where they were seen), or
            ``merge`` them into the most frequent spelling.
    """
    check_label_case(label_case)
    seen: dict[str, list] = {}  # key -> [file, line first seen, count, order of first sighting]
    if column is None:
        return []
    for file, line, row in rows:
        if not isinstance(row, dict):
            continue
        for item in split_labels(row.get(column), sep):
            key = label_key(item)
            if key is not None:
                entry = seen.setdefault(key, [file, line, 0, len(seen)])
                entry[2] += 1
    if seen and all(_is_integer(k) for k in seen):
        return [str(v) for v in sorted(int(k) for k in seen)]
    groups: dict[str, dict[str, list]] = {}
    for key, where in seen.items():
        groups.setdefault(key.casefold(), {})[key] = where
    names = []
    for spellings in groups.values():
        if len(spellings) > 1 and label_case == "error":
            raise _case_error(spellings)
        names.append(max(sorted(spellings), key=lambda k: spellings[k][2]))  # most frequent; ties: sorted first
    return sorted(names)


def read_label_file(root: str | Path) -> list[str] | None:
    """``root/labels.json`` (a list, or ``{"labels": [...]}``) if it exists."""
    path = Path(root) / "labels.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return [str(x) for x in (data["labels"] if isinstance(data, dict) else data)]


class LabelMap:
    """Class names and how a row's raw label finds its class index, under the policy (module docstring).

    Args:
        names: the class names, in index order.
        label_case: ``error``: a label matching a name only up to case is unknown (the message names the class it
            differs from); ``merge``: it is that class.
    """

    def __init__(self, names: Iterable[Any], label_case: str = "error"):
        self.names = [label_key(n) or str(n) for n in names]
        self.label_case = check_label_case(label_case)
        self._indexable = not any(_is_integer(n) for n in self.names)  # may an integer label be an index?
        self._index = {n: i for i, n in enumerate(self.names)}
        self._folded: dict[str, int] = {}
        for i, n in enumerate(self.names):
            self._folded.setdefault(n.casefold(), i)
        if len(self._index) < len(self.names):
            dup = sorted({n for n in self.names if self.names.count(n) > 1})
            raise ValueError(f"class names {dup} are listed more than once in {self.names}")

    @classmethod
    def of(cls, names: LabelMap | Iterable[Any]) -> LabelMap:
        return names if isinstance(names, LabelMap) else cls(names)

    def lookup(self, raw: Any) -> int | None:
        """The class index of one raw label, or ``None`` if it is not a class (see :meth:`index` for why)."""
        key = label_key(raw)
        if key is None:
            return None
        if key in self._index:
            return self._index[key]
        if self._indexable and _is_integer(key) and 0 <= int(key) < len(self.names):
            return int(key)  # an index into named classes
        if self.label_case == "merge":
            return self._folded.get(key.casefold())
        return None

    def index(self, raw: Any, err) -> int:
        """The class index of one raw label; an unknown label raises ``err("unknown_label", detail)``."""
        found = self.lookup(raw)
        if found is not None:
            return found
        key = label_key(raw)
        shown = self.names if len(self.names) <= 30 else self.names[:30] + ["..."]
        detail = f"label {key if key is not None else raw!r} is not one of {shown}"
        detail += " (or an index into them)" if self._indexable else ""
        twin = self._folded.get(str(key).casefold())
        if twin is not None:
            detail += (f"; it differs only in case from {self.names[twin]!r}: fix the spelling, or set "
                       "data.params.label_case=merge")
        else:
            near = difflib.get_close_matches(str(key), self.names, n=1)
            detail += f"; did you mean {near[0]!r}?" if near else ""
        raise err("unknown_label", detail)

    def parse(self, raw: Any, err, sep: str | None = None) -> int | list[int] | None:
        """A cell -> class index, or a list of them for a multi-label cell; no label (``None``, blank) is ``None``."""
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        if isinstance(raw, (list, tuple)) or (sep is not None and isinstance(raw, str)):
            return [self.index(x, err) for x in split_labels(raw, sep) if label_key(x) is not None]
        return self.index(raw, err)
