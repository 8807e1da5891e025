"""Training objectives. A task turns (model, batch) into a loss dict, so one loop serves every objective.

Supervised classification lives here; contrastive alignment and distillation register themselves the same way
(``@register_task("name")``) in their own modules.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from crossfuse.registry import Registry

TASKS: Registry[type[Task]] = Registry(
    "task", signature=lambda cls: cls.__init__,
    hint=" (tasks defined in transfer/ and merging/ register when those packages are imported, as the crossfuse "
         "command and the entry scripts do)")


def register_task(name: str, renamed_from: tuple[str, ...] = ()):
    def wrap(cls):
        cls.task_name = name
        return TASKS.add(name, cls, renamed_from)

    return wrap


def list_tasks(pattern: str = "*") -> list[str]:
    return TASKS.names(pattern)


def create_task(name: str, **params: Any) -> Task:
    """Build a registered task; options are checked against its constructor before anything is loaded."""
    try:
        return TASKS.build(name, **params)
    except TypeError as err:
        raise TypeError(f"bad train.task_params: {err}") from None


class Task:
    """An objective. ``__call__`` returns ``{"loss": scalar, ...}`` plus anything worth logging (scalars) and
    ``outputs`` (the model's output dict) for metrics. ``setup`` may add trainable modules (e.g. a projection)."""

    def setup(self, model: nn.Module) -> nn.Module | None:
        return None

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError


@register_task("classification")
class ClassificationTask(Task):
    """Cross-entropy for single-label targets ``(B,)``, BCE-with-logits for multi-hot targets ``(B, C)``.

    Args:
        label_smoothing: cross-entropy label smoothing.
        pos_weight: optional per-label positive weight for BCE (class imbalance in multi-label data).
    """

    def __init__(self, label_smoothing: float = 0.0, pos_weight: list[float] | None = None):
        self.label_smoothing = label_smoothing
        self.pos_weight = pos_weight

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        out = model(batch)
        return {"loss": classification_loss(out["logits"], batch["labels"], self.label_smoothing, self.pos_weight),
                "outputs": out}


def classification_loss(logits: Tensor, labels: Tensor, label_smoothing: float = 0.0,
                        pos_weight: list[float] | None = None, reduction: str = "mean") -> Tensor:
    """Cross-entropy (labels ``(B,)``) or BCE-with-logits (multi-hot ``(B, C)``); ``reduction="none"``: ``(B,)``."""
    if labels.ndim == 2:
        weight = logits.new_tensor(pos_weight) if pos_weight is not None else None
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), pos_weight=weight, reduction="none")
        return loss.mean() if reduction == "mean" else loss.mean(-1)
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing, reduction=reduction)
