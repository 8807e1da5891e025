"""Keeping the best model: which evaluation is the best so far, by ``train.best_metric`` and ``train.best_mode``."""

from __future__ import annotations

from typing import Any

from crossfuse.registry import nearest

from .config import ConfigError


def check_metric(metric: str, known: set[str], task: str) -> None:
    """Before training: ``train.best_metric`` must be one of the metrics the task reports."""
    if metric not in known:
        raise ConfigError(f"train.best_metric={metric!r} is not a metric of train.task={task}."
                          f"{nearest(metric, sorted(known))} Its metrics: {', '.join(sorted(known))}")


class BestModel:
    """The best value of one metric seen so far and its step; its state lives in the trainer state (checkpointed).

    Args:
        metric: a key of the evaluation's ``overall`` metrics (``accuracy``, ``macro_f1``, ``r@1_mean``, ...).
        mode: ``max`` or ``min``.
    """

    def __init__(self, metric: str, mode: str, state: dict[str, Any]):
        self.metric, self.mode, self.state = metric, mode, state

    def update(self, overall: dict[str, float], step: int) -> bool:
        """Record an evaluation; True when it is the best so far (the model should then be saved)."""
        if self.metric not in overall:
            raise KeyError(f"train.best_metric={self.metric!r} is not among the metrics {sorted(overall)}")
        value, best = overall[self.metric], self.state["best"]
        if best is not None and not (value > best if self.mode == "max" else value < best):
            return False
        self.state.update(best=value, best_step=step)
        return True
