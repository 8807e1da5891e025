"""Figures of a run (matplotlib): confusion matrix, per-language and modality-ablation bars, a reliability diagram,
learning curves from ``log.jsonl``. ``evaluate.py RUN --plots`` writes them to ``RUN/plots/``; the trainer sends the
confusion matrix to TensorBoard. Every function returns a ``matplotlib.figure.Figure`` (the caller saves or logs it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def _figure(width: float = 6.0, height: float = 4.0):
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a cluster node
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    return fig, fig.subplots()


def confusion_matrix_figure(labels: np.ndarray, predicted: np.ndarray, names: list[str], title: str = ""):
    """Rows: true class, columns: predicted class; each cell the count and the row share. ``labels`` and
    ``predicted``: ``(N,)`` class ids."""
    k = len(names)
    matrix = np.zeros((k, k), dtype=int)
    np.add.at(matrix, (labels, predicted), 1)
    share = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    size = max(3.5, 0.55 * k + 2)
    fig, ax = _figure(size + 1, size)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the true class")
    ax.set_xticks(range(k), names, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{matrix[i, j]}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.6 else "black")
    ax.set_title(title or f"confusion matrix ({int(matrix.sum())} rows)")
    return fig


def bars_figure(values: dict[str, float], title: str, ylabel: str = "accuracy", reference: float | None = None,
                reference_label: str = "majority class"):
    """One bar per key (a language, an ablation), with an optional dashed reference line (the chance rate)."""
    fig, ax = _figure(max(4.0, 0.8 * len(values) + 2), 3.6)
    names = list(values)
    bars = ax.bar(names, [values[n] for n in names], color="#4C72B0")
    ax.bar_label(bars, labels=[f"{values[n]:.1%}" for n in names], fontsize=8)
    if reference is not None:
        ax.axhline(reference, ls="--", color="grey", lw=1, label=f"{reference_label} ({reference:.1%})")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return fig


def reliability_figure(scores: np.ndarray, labels: np.ndarray, bins: int = 10, title: str = ""):
    """Confidence of the predicted class against how often it is right (Guo et al. 2017, "On Calibration of Modern
    Neural Networks"), with the expected calibration error. ``scores`` ``(N, C)`` probabilities, ``labels`` ``(N,)``."""
    confidence, predicted = scores.max(1), scores.argmax(1)
    right = predicted == labels
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges) - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    accuracy = np.bincount(which, weights=right, minlength=bins) / np.maximum(counts, 1)
    mean_conf = np.bincount(which, weights=confidence, minlength=bins) / np.maximum(counts, 1)
    ece = float((counts * np.abs(accuracy - mean_conf)).sum() / max(len(labels), 1))
    fig, ax = _figure(4.4, 4.2)
    used = counts > 0
    ax.bar(edges[:-1][used], accuracy[used], width=1 / bins, align="edge", edgecolor="white", color="#4C72B0",
           label="accuracy in the bin")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (probability of the predicted class)")
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"{title or 'reliability'} (ECE {ece:.3f}, {len(labels)} rows)")
    return fig


def learning_curves_figure(log_path: str | Path, metric: str = "accuracy"):
    """Training loss per log step and the validation ``metric`` per evaluation, from a run's ``log.jsonl``."""
    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    train = [(r["step"], r["train/loss"]) for r in rows if "train/loss" in r]
    val = [(r["step"], r[f"val/{metric}"]) for r in rows if f"val/{metric}" in r and "train/loss" not in r]
    fig, ax = _figure(6.0, 3.8)
    if train:
        ax.plot(*zip(*train), color="#4C72B0", lw=1.2, label="train loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("train loss")
    if val:
        other = ax.twinx()
        other.plot(*zip(*val), color="#DD8452", marker="o", ms=3, label=f"val {metric}")
        other.set_ylabel(f"val {metric}")
        other.set_ylim(0, 1.02)
        lines = ax.get_legend_handles_labels(), other.get_legend_handles_labels()
        fig.legend(lines[0][0] + lines[1][0], lines[0][1] + lines[1][1], loc="outside lower center", ncols=2,
                   fontsize=8)
    ax.set_title("learning curves")
    return fig


def run_figures(results: dict[str, Any], split: str, pred: dict[str, np.ndarray], names: list[str],
                multi_label: bool, log_path: Path | None) -> dict[str, Any]:
    """Every figure of a run's evaluation on ``split``, by file stem."""
    res = results[split]
    figures: dict[str, Any] = {}
    if not multi_label and len(pred["labels"]):
        figures["confusion_matrix"] = confusion_matrix_figure(pred["labels"], pred["scores"].argmax(1), names,
                                                              f"{split}: confusion matrix")
        figures["reliability"] = reliability_figure(pred["scores"], pred["labels"], title=f"{split}: reliability")
    if len(res.get("per_language", {})) > 1:
        figures["per_language"] = bars_figure({k: m["accuracy"] for k, m in res["per_language"].items()},
                                              f"{split}: accuracy per language", reference=res.get("majority_rate"))
    if res.get("ablation"):
        figures["ablation"] = bars_figure({"both": res["overall"]["accuracy"],
                                           **{k: m["accuracy"] for k, m in res["ablation"].items()}},
                                          f"{split}: accuracy with a modality masked",
                                          reference=res.get("majority_rate"))
    if log_path is not None and Path(log_path).is_file():
        figures["learning_curves"] = learning_curves_figure(log_path)
    return figures
