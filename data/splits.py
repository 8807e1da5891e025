"""Finding a dataset's folder and splits: a missing ``data.root`` and an unknown split name are different errors,
and the second names the splits that do exist.

:class:`SplitNotFoundError` is the one exception a builder raises for a split name the dataset does not have (a
typo in ``data.test_split``, or a dataset released without that split); the caller decides whether that split was
optional. A missing root folder is a plain ``FileNotFoundError``: nothing of that dataset can be read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path


class SplitNotFoundError(FileNotFoundError):
    """A dataset has no split of this name.

    Attributes:
        split: the split asked for.
        root: the dataset folder.
        available: sorted names of the splits the dataset has (may be empty).
        key: the config key that named the split (``data.test_split``), when known.
    """

    def __init__(self, split: str, root: str | Path, available: Iterable[str], detail: str = "",
                 key: str | None = None):
        self.split, self.root, self.available = split, str(root), sorted(set(available))
        self.detail, self.key = detail, key
        asked = f"{key}={split!r}" if key else f"split {split!r}"
        message = f"{asked}: no such split in {self.root}; the splits there are {self.available}"
        super().__init__(message + (f" ({detail})" if detail else ""))

    def __reduce__(self):  # picklable (DataLoader workers, multiprocessing) despite the keyword arguments
        return type(self), (self.split, self.root, self.available, self.detail, self.key)

    def for_key(self, key: str) -> SplitNotFoundError:
        """The same error, saying which config key named the split."""
        return SplitNotFoundError(self.split, self.root, self.available, self.detail, key)


def require_root(root: str | Path) -> Path:
    """``root`` as a Path, or ``FileNotFoundError`` saying that the ``data.root`` folder itself does not exist."""
    path = Path(root)
    if not path.is_dir():
        state = "is a file, not a folder" if path.exists() else "does not exist"
        raise FileNotFoundError(f"data.root {str(root)!r} ({path.resolve()}) {state}: set data.root to the dataset's "
                                "folder")
    return path


def splits_matching(root: Path, pattern: str) -> list[str]:
    """The split names for which ``root / pattern.format(split=...)`` matches files (``*`` is a wildcard); none
    for a pattern that is not relative to ``root``."""
    if Path(pattern).is_absolute():
        return []
    head, _, tail = pattern.partition("{split}")
    regex = re.compile("".join(".*?" if c == "*" else re.escape(c) for c in head) + "(?P<split>[^/]+?)"
                       + "".join("[^/]*" if c == "*" else re.escape(c) for c in tail) + "$")
    found = set()
    for path in root.glob(pattern.replace("{split}", "*")):
        match = regex.match(path.relative_to(root).as_posix())
        if match:
            found.add(match.group("split"))
    return sorted(found)
