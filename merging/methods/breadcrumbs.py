"""Model Breadcrumbs (Davari & Belilovsky 2024, "Model Breadcrumbs: Scaling Multi-Task Model Merging with Sparse
Masks"): task arithmetic over task vectors from which both tails of the magnitude distribution are removed."""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import register_merge_method
from .task_arithmetic import add_task_vectors


def breadcrumb_mask(delta: Tensor, density: float, gamma: float) -> Tensor:
    """Boolean ``(*S)`` mask keeping, of ``delta``'s ``n`` entries ranked by magnitude, the ``round(density * n)``
    just below the ``round(gamma * n)`` largest: the largest (outliers that dominate and interfere) and the
    smallest (noise) are both dropped. Ties in magnitude are broken by position."""
    n = delta.numel()
    top, keep = int(round(gamma * n)), int(round(density * n))
    order = delta.abs().flatten().argsort(descending=True, stable=True)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[order[top:top + keep]] = True
    return mask.view(delta.shape)


@register_merge_method("breadcrumbs", needs_base=True)
def breadcrumbs(tensors: list[Tensor], base: Tensor, density: float = 0.1, gamma: float = 0.01,
                scale: float = 1.0, weights: list[float] | None = None) -> Tensor:
    """``base + scale * sum_i w_i * m_i * (theta_i - base)`` with ``m_i`` :func:`breadcrumb_mask` of each task
    vector, computed per tensor (the paper masks per layer).

    Args:
        tensors: one tensor per fine-tuned model, each ``(*S)``.
        base: ``(*S)`` tensor of the shared starting point.
        density: fraction of each task vector kept, in (0, 1].
        gamma: fraction of the largest-magnitude entries dropped, in [0, 1 - density].
        scale: ``lambda`` of task arithmetic.
        weights: per-model multipliers (default 1 each).

    Returns:
        ``(*S)`` float32 tensor.
    """
    if not 0.0 < density <= 1.0 or not 0.0 <= gamma <= 1.0 - density:
        raise ValueError(f"breadcrumbs: need 0 < density <= 1 and 0 <= gamma <= 1 - density, got density={density}, "
                         f"gamma={gamma}")
    return add_task_vectors(tensors, base, scale, weights, lambda _, d: d * breadcrumb_mask(d, density, gamma))
