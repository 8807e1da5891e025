"""Parallel text: sentence pairs ``(source, translation)`` for multilingual distillation.

Read from a TSV (header row) or JSONL file with ``src_text`` / ``tgt_text`` (or ``src`` / ``tgt``) and optionally
``src_lang`` / ``tgt_lang``; the embedded shapes benchmark writes ``<root>/parallel.tsv`` in this format. As a
training set (:func:`parallel_dataset`) each pair is one row whose ``text`` is the source and ``pair`` the
translation; the collator tokenizes both (``input_ids`` and ``pair_input_ids``).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from .records import MultimodalDataset


@dataclass(frozen=True)
class ParallelPair:
    src: str
    tgt: str
    src_lang: str = ""
    tgt_lang: str = ""


_SRC_KEYS, _TGT_KEYS = ("src_text", "src", "source"), ("tgt_text", "tgt", "target", "translation")


def _pick(row: dict, keys: tuple[str, ...], path: Path, line: int) -> str:
    for key in keys:
        if row.get(key):
            return str(row[key])
    raise ValueError(f"{path}:{line}: no sentence under any of {keys}; each row needs a source and a translation "
                     "(TSV header or JSON keys src_text/tgt_text, or src/tgt)")


def read_parallel(path: str | Path, target_languages: list[str] | None = None) -> list[ParallelPair]:
    """Read sentence pairs from a TSV (header row) or JSONL file.

    Columns / keys: ``src_text`` and ``tgt_text`` (or ``src`` / ``tgt``), optionally ``src_lang`` and ``tgt_lang``.
    The embedded shapes benchmark writes ``<root>/parallel.tsv`` in this format (English source).

    Args:
        path: ``.tsv`` / ``.txt`` (tab-separated) or ``.jsonl``.
        target_languages: keep only pairs whose ``tgt_lang`` is one of these (None: all).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parallel data {str(path)!r} does not exist (a TSV with header "
                                "src_lang, src_text, tgt_lang, tgt_text, or JSONL with the same keys)")
    rows: list[tuple[int, dict]] = []
    with open(path, encoding="utf-8", newline="") as f:
        if path.suffix == ".jsonl":
            rows = [(i + 1, json.loads(line)) for i, line in enumerate(f) if line.strip()]
        else:
            rows = [(i + 2, row) for i, row in enumerate(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))]
    pairs = [ParallelPair(_pick(r, _SRC_KEYS, path, i), _pick(r, _TGT_KEYS, path, i), r.get("src_lang") or "",
                          r.get("tgt_lang") or "") for i, r in rows]
    if target_languages is not None:
        pairs = [p for p in pairs if p.tgt_lang in set(target_languages)]
    if not pairs:
        raise ValueError(f"{path} holds no sentence pairs" + (f" with tgt_lang in {target_languages}"
                                                              if target_languages is not None else ""))
    return pairs


def parallel_dataset(pairs: list[ParallelPair], label_names: list[str], multi_label: bool = False,
                     source: str = "parallel") -> MultimodalDataset:
    """The pairs as a training set: rows ``{"text": src, "pair": tgt, "lang": tgt_lang}`` without images or labels.

    ``label_names`` / ``multi_label``: the output space of the model being distilled (the pairs carry no labels;
    the model keeps the outputs it was trained with).
    """
    records = [{"id": f"{source}:{i + 1}", "text": p.src, "pair": p.tgt, "image": None, "label": None,
                "lang": p.tgt_lang or None, "file": source, "line": i + 2} for i, p in enumerate(pairs)]
    return MultimodalDataset(records, label_names, multi_label=multi_label)
