"""A dataset health report: rows read, rows rejected per reason (with file:line examples), label and modality
counts. ``validate.py`` prints it for every split of a config before any training."""

from __future__ import annotations

from collections import Counter
from typing import Any

from .records import MultimodalDataset


def dataset_report(dataset: MultimodalDataset, examples: int = 3) -> dict[str, Any]:
    """Counts for one split read with ``on_error="skip"``.

    Returns:
        ``rows`` (kept), ``skipped`` (per reason), ``examples`` (the first ``examples`` skips of each reason as
        ``file:line: detail``), ``labels`` (rows per class name; multi-label: per label), ``unlabelled``,
        ``with_text``, ``with_image``.
    """
    labels: Counter = Counter()
    unlabelled = 0
    streamed = not hasattr(dataset, "records")  # tar shards: read the whole stream once (images not decoded)
    items = list(dataset) if streamed else dataset.records
    records = [r for r in items if "skipped" not in r]
    skipped = [r["skipped"] for r in items if "skipped" in r] if streamed else dataset.skipped
    for r in records:
        if r["label"] is None:
            unlabelled += 1
        for c in r["label"] if isinstance(r["label"], list) else [r["label"]] if r["label"] is not None else []:
            labels[dataset.label_names[c]] += 1
    shown: dict[str, list[str]] = {}
    for s in skipped:
        lines = shown.setdefault(s["reason"], [])
        if len(lines) < examples:
            lines.append(f"{s['file']}:{s['line']}: {s['detail']}")
    return {"rows": len(records), "skipped": dict(Counter(s["reason"] for s in skipped)), "examples": shown,
            "labels": {name: labels[name] for name in dataset.label_names}, "unlabelled": unlabelled,
            "with_text": sum(r["text"] is not None for r in records),
            "with_image": sum(r["image"] is not None for r in records)}


def format_report(split: str, report: dict[str, Any]) -> str:
    """Human-readable lines for one split's report."""
    total = report["rows"] + sum(report["skipped"].values())
    lines = [f"[{split}] {report['rows']} of {total} rows usable; text {report['with_text']}, "
             f"image {report['with_image']}, unlabelled {report['unlabelled']}"]
    counts = ", ".join(f"{k}={v}" for k, v in report["labels"].items())
    lines.append(f"  labels: {counts if len(counts) < 400 else counts[:400] + ' ...'}")
    for reason, n in sorted(report["skipped"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  {reason.replace('_', ' ')}: {n} rows, e.g.")
        lines += [f"    {line}" for line in report["examples"][reason]]
    return "\n".join(lines)
