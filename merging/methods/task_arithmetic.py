"""Task arithmetic (Ilharco et al. 2023, "Editing Models with Task Arithmetic"): add scaled task vectors."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..registry import register_merge_method


@register_merge_method("task_arithmetic", needs_base=True)
def task_arithmetic(tensors: list[Tensor], base: Tensor, scale: float = 1.0,
                    weights: list[float] | None = None) -> Tensor:
    """``base + scale * sum_i w_i * (theta_i - base)``: each fine-tune's change from the shared base is a task
    vector; the merge adds them all, scaled by ``lambda = scale``.

    Args:
        tensors: one tensor per fine-tuned model, each ``(*S)``.
        base: ``(*S)`` tensor of the model they were all fine-tuned from.
        scale: ``lambda``; 0 returns the base, 1/N with unit weights is the uniform soup.
        weights: per-model multipliers of the task vectors (default 1 each, as in the paper).

    Returns:
        ``(*S)`` float32 tensor.
    """
    return add_task_vectors(tensors, base, scale, weights)


def add_task_vectors(tensors: list[Tensor], base: Tensor, scale: float = 1.0, weights: list[float] | None = None,
                     sparsify: Callable[[int, Tensor], Tensor] | None = None) -> Tensor:
    """``base + scale * sum_i w_i * sparsify(i, theta_i - base)``: task arithmetic over task vectors that a method
    may first sparsify (DARE, Breadcrumbs); each task vector is ``(*S)`` float32, one model's at a time in memory.

    Args:
        tensors: one ``(*S)`` tensor per fine-tuned model.
        base: ``(*S)`` tensor of the shared starting point.
        scale: ``lambda``.
        weights: per-model multipliers (default 1 each); a length mismatch is a user error.
        sparsify: ``(model index, task vector) -> task vector``; ``None`` keeps them whole.
    """
    w = [1.0] * len(tensors) if weights is None else [float(x) for x in weights]
    if len(w) != len(tensors):
        raise ValueError(f"weights has {len(w)} entries for {len(tensors)} models; give one weight per model")
    b = base.float()
    delta = torch.zeros_like(b)
    for i, (wi, t) in enumerate(zip(w, tensors)):
        d = t.float() - b
        delta.add_(d if sparsify is None else sparsify(i, d), alpha=wi)
    return b + scale * delta
