"""Evaluation: predictions gathered across processes, overall / per-language metrics, modality ablations."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn

from .metrics import classification_metrics, majority_rate, per_group_metrics


@torch.no_grad()
def predict(accelerator: Accelerator, model: nn.Module, loader, drop: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Run ``model`` over ``loader``; returns numpy ``scores`` (N, C), ``labels``, ``index`` (N,), ``lang`` (N,).

    ``gather_for_metrics`` drops the samples padded onto the last batch of a multi-process run, so every dataset
    row is counted exactly once.
    """
    was_training = model.training
    model.eval()
    unwrapped = accelerator.unwrap_model(model)
    chunks: dict[str, list[np.ndarray]] = {"scores": [], "labels": [], "index": [], "lang": []}
    for batch in loader:
        logits = model(batch, drop=drop)["logits"].float()
        scores = torch.sigmoid(logits) if unwrapped.multi_label else torch.softmax(logits, -1)
        gathered = accelerator.gather_for_metrics((scores, batch["labels"], batch["index"], batch["lang"]))
        for key, value in zip(chunks, gathered):
            chunks[key].append(value.cpu().numpy())
    model.train(was_training)
    return {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in chunks.items()}


def evaluate(accelerator: Accelerator, model: nn.Module, loader, languages: list[str],
             ablation: bool = True, reference_language: str | None = None) -> dict[str, Any]:
    """Metrics of ``model`` on ``loader``.

    Returns:
        ``overall`` metrics, ``per_language`` metrics, ``language_gap`` (accuracy of each language minus that of
        ``reference_language``, the training language, when given), ``majority_rate``, and under ``ablation`` the
        overall metrics with the text masked (``no_text``) and with the image masked (``no_image``).
    """
    unwrapped = accelerator.unwrap_model(model)
    pred = predict(accelerator, model, loader)
    multi = unwrapped.multi_label
    out: dict[str, Any] = {
        "overall": classification_metrics(pred["scores"], pred["labels"], multi),
        "majority_rate": majority_rate(pred["labels"]) if len(pred["labels"]) else 0.0,
    }
    if len(languages) > 0 and (pred["lang"] >= 0).any():
        out["per_language"] = per_group_metrics(pred["scores"], pred["labels"], pred["lang"], languages, multi)
        ref = out["per_language"].get(reference_language) if reference_language else None
        if ref is not None:
            out["language_gap"] = {lang: m["accuracy"] - ref["accuracy"] for lang, m in out["per_language"].items()}
    if ablation and len(unwrapped.modalities) > 1:
        out["ablation"] = {}
        for name, drop in (("no_text", ("text",)), ("no_image", ("image",))):
            ab = predict(accelerator, model, loader, drop=drop)
            out["ablation"][name] = classification_metrics(ab["scores"], ab["labels"], multi)
    return out


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """A plain-text table: one row per (split, slice), columns accuracy / macro-F1 / AUROC / n."""
    rows = [("split", "slice", "accuracy", "macro_f1", "auroc", "n")]

    def add(split: str, name: str, m: dict[str, float]) -> None:
        fmt = lambda k: f"{m[k]:.4f}" if k in m else "-"  # noqa: E731
        rows.append((split, name, fmt("accuracy"), fmt("macro_f1"), fmt("auroc"), str(m.get("n", "-"))))

    for split, res in results.items():
        add(split, "all", res["overall"])
        for lang, m in res.get("per_language", {}).items():
            add(split, f"lang={lang}", m)
        for name, m in res.get("ablation", {}).items():
            add(split, name, m)
        rows.append((split, "majority-class", f"{res['majority_rate']:.4f}", "-", "-", "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
