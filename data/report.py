"""A dataset health report: rows read, rows rejected per reason (with file:line examples), the label map and
label counts, duplicate ids, modality counts. ``validate.py`` prints it for every split of a config before any
training."""

from __future__ import annotations

from collections import Counter
from typing import Any

from .records import MultimodalDataset


def _where(skip: dict[str, Any]) -> str:
    last = skip.get("last_line")
    return f"{skip['file']}:{skip['line']}" + (f"-{last}" if last is not None else "")


def dataset_report(dataset: MultimodalDataset, examples: int = 3) -> dict[str, Any]:
    """Counts for one split read with ``on_error="skip"``.

    Returns:
        ``rows`` (kept), ``skipped`` (per reason), ``examples`` (the first ``examples`` skips of each reason as
        ``file:line: detail``, ``file:first-last`` for a row read from several lines), ``rejected_lines`` (physical
        lines the rejected rows cover), ``label_map`` (class names by index), ``labels`` (rows per class name;
        multi-label: per label), ``unlabelled``, ``duplicate_ids`` (id -> its ``file:line`` places, for ids that
        name several rows; rows sharing an id in different languages are parallel translations, not duplicates),
        ``with_text``, ``with_image``.
    """
    labels: Counter = Counter()
    unlabelled = 0
    streamed = not hasattr(dataset, "records")  # tar shards: read the whole stream once (images not decoded)
    items = list(dataset) if streamed else dataset.records
    records = [r for r in items if "skipped" not in r]
    skipped = [r["skipped"] for r in items if "skipped" in r] if streamed else dataset.skipped
    places: dict[tuple, list[str]] = {}
    for r in records:
        if r["label"] is None:
            unlabelled += 1
        for c in r["label"] if isinstance(r["label"], list) else [r["label"]] if r["label"] is not None else []:
            labels[dataset.label_names[c]] += 1
        places.setdefault((r["id"], r.get("lang")), []).append(f"{r['file']}:{r['line']}")
    shown: dict[str, list[str]] = {}
    for s in skipped:
        lines = shown.setdefault(s["reason"], [])
        if len(lines) < examples:
            lines.append(f"{_where(s)}: {s['detail']}")
    duplicates: dict[str, list[str]] = {}
    for (key, _), where in places.items():
        if len(where) > 1:
            duplicates.setdefault(key, []).extend(where)
    return {"rows": len(records), "skipped": dict(Counter(s["reason"] for s in skipped)), "examples": shown,
            "rejected_lines": sum(s.get("last_line", s["line"]) - s["line"] + 1 for s in skipped),
            "label_map": list(dataset.label_names),
            "labels": {name: labels[name] for name in dataset.label_names}, "unlabelled": unlabelled,
            "duplicate_ids": duplicates,
            "with_text": sum(r["text"] is not None for r in records),
            "with_image": sum(r["image"] is not None for r in records)}


def _clip(text: str, limit: int = 400) -> str:
    return text if len(text) < limit else text[:limit] + " ..."


def format_report(split: str, report: dict[str, Any]) -> str:
    """Human-readable lines for one split's report."""
    rejected = sum(report["skipped"].values())
    cover = report.get("rejected_lines", rejected)
    lines = [f"[{split}] {report['rows']} of {report['rows'] + rejected} rows usable"
             + (f" (the rejected rows cover {cover} lines)" if cover > rejected else "")
             + f"; text {report['with_text']}, image {report['with_image']}, unlabelled {report['unlabelled']}"]
    lines.append("  label map: " + _clip(", ".join(f"{i}={name!r}" for i, name in enumerate(report["label_map"]))))
    lines.append("  labels: " + _clip(", ".join(f"{k}={v}" for k, v in report["labels"].items())))
    for reason, n in sorted(report["skipped"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  {reason.replace('_', ' ')}: {n} rows, e.g.")
        lines += [f"    {line}" for line in report["examples"][reason]]
    if report["duplicate_ids"]:
        key, where = next(iter(report["duplicate_ids"].items()))
        lines.append(f"  duplicate ids: {len(report['duplicate_ids'])}, e.g. {key!r} at {', '.join(where[:5])}")
    return "\n".join(lines)
