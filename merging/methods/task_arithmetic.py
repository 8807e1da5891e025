"""Task arithmetic (Ilharco et al. 2023, "Editing Models with Task Arithmetic"): add scaled task vectors."""

from __future__ import annotations

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
    w = [1.0] * len(tensors) if weights is None else [float(x) for x in weights]
    if len(w) != len(tensors):
        raise ValueError(f"weights has {len(w)} entries for {len(tensors)} models; give one weight per model")
    b = base.float()
    delta = torch.zeros_like(b)
    for wi, t in zip(w, tensors):
        delta.add_(t.float() - b, alpha=wi)
    return b + scale * delta
