"""Classification metrics (scikit-learn) with per-language breakdowns."""

from __future__ import annotations

import numpy as np


def classification_metrics(scores: np.ndarray, labels: np.ndarray, multi_label: bool = False,
                           threshold: float | np.ndarray = 0.5) -> dict[str, float]:
    """Metrics of one set of predictions.

    Args:
        scores: ``(N, C)`` probabilities (softmax, or sigmoid for multi-label).
        labels: ``(N,)`` class ids, or ``(N, C)`` multi-hot for multi-label.
        multi_label: treat outputs as independent labels.
        threshold: decision threshold(s) for multi-label outputs (scalar or per label ``(C,)``).

    Returns:
        accuracy, macro_f1, precision, recall (macro), auroc (binary tasks, and macro over labels for multi-label),
        plus micro/weighted/samples F1 for multi-label; ``n`` the number of samples.
    """
    # scikit-learn (with scipy and pandas) takes most of a second to import: only runs that evaluate pay for it
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    n = int(labels.shape[0])
    if n == 0:
        return {"n": 0}
    if multi_label:
        pred = (scores >= threshold).astype(int)
        out = {
            "accuracy": float(accuracy_score(labels, pred)),  # exact match
            "macro_f1": float(f1_score(labels, pred, average="macro", zero_division=0)),
            "micro_f1": float(f1_score(labels, pred, average="micro", zero_division=0)),
            "weighted_f1": float(f1_score(labels, pred, average="weighted", zero_division=0)),
            "samples_f1": float(f1_score(labels, pred, average="samples", zero_division=0)),
            "precision": float(precision_score(labels, pred, average="macro", zero_division=0)),
            "recall": float(recall_score(labels, pred, average="macro", zero_division=0)),
        }
        usable = [c for c in range(labels.shape[1]) if 0 < labels[:, c].sum() < n]
        if usable:
            out["auroc"] = float(np.mean([roc_auc_score(labels[:, c], scores[:, c]) for c in usable]))
    else:
        pred = scores.argmax(1)
        num_classes = scores.shape[1]
        out = {
            "accuracy": float(accuracy_score(labels, pred)),
            "macro_f1": float(f1_score(labels, pred, average="macro", labels=range(num_classes), zero_division=0)),
            "precision": float(precision_score(labels, pred, average="macro", labels=range(num_classes),
                                               zero_division=0)),
            "recall": float(recall_score(labels, pred, average="macro", labels=range(num_classes), zero_division=0)),
        }
        if num_classes == 2 and len(np.unique(labels)) == 2:
            out["auroc"] = float(roc_auc_score(labels, scores[:, 1]))
    out["n"] = n
    return out


def classification_metric_names(multi_label: bool) -> set[str]:
    """The keys :func:`classification_metrics` returns (``auroc`` only where it is defined)."""
    names = {"accuracy", "macro_f1", "precision", "recall", "auroc", "n"}
    return names | {"micro_f1", "weighted_f1", "samples_f1"} if multi_label else names


def per_group_metrics(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, names: list[str],
                      multi_label: bool = False, threshold: float | np.ndarray = 0.5) -> dict[str, dict[str, float]]:
    """``classification_metrics`` for each group id in ``groups`` ``(N,)`` (e.g. language), keyed by name."""
    out = {}
    for gid in sorted(set(groups.tolist())):
        if gid < 0:
            continue
        sel = groups == gid
        out[names[gid]] = classification_metrics(scores[sel], labels[sel], multi_label, threshold)
    return out


def majority_rate(labels: np.ndarray) -> float:
    """Accuracy of always predicting the most frequent class (the chance level a model must beat)."""
    if labels.ndim == 2:
        return float((labels == (labels.mean(0) >= 0.5)).all(1).mean())
    return float(np.bincount(labels).max() / len(labels))


def tune_thresholds(scores: np.ndarray, labels: np.ndarray, grid: np.ndarray | None = None) -> np.ndarray:
    """Per-label decision thresholds ``(C,)`` maximising each label's F1 on held-out predictions.

    The usual protocol for multi-label benchmarks such as MM-IMDb (Arevalo et al., 2017): tune on the dev split,
    then apply the same thresholds to the test split. A label with no positive example keeps 0.5.

    Args:
        scores: ``(N, C)`` sigmoid probabilities.
        labels: ``(N, C)`` multi-hot targets.
        grid: candidate thresholds (default 0.05, 0.10, ..., 0.95).
    """
    grid = np.round(np.arange(0.05, 0.96, 0.05), 2) if grid is None else np.asarray(grid)
    out = np.full(scores.shape[1], 0.5)
    for c in range(scores.shape[1]):
        truth = labels[:, c] > 0.5
        if not truth.any():
            continue
        pred = scores[:, c][None, :] >= grid[:, None]  # (T, N)
        tp = (pred & truth).sum(1)
        f1 = 2 * tp / np.maximum(pred.sum(1) + truth.sum(), 1)
        out[c] = float(grid[int(f1.argmax())])
    return out
