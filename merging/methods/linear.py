"""Linear / weighted average of weights: the uniform model soup (Wortsman et al. 2022, "Model soups")."""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import normalised_weights, register_merge_method


@register_merge_method("linear")
def linear(tensors: list[Tensor], base: Tensor | None = None, weights: list[float] | None = None) -> Tensor:
    """Weighted mean ``sum_i w_i * theta_i`` with ``w`` normalised to sum to 1 (uniform when ``weights`` is None).

    Args:
        tensors: one tensor per model, all of shape ``(*S)``.
        base: unused (accepted so every method shares one call signature).
        weights: one non-negative weight per model.

    Returns:
        ``(*S)`` float32 tensor.
    """
    w = normalised_weights(weights, len(tensors))
    out = torch.zeros_like(tensors[0], dtype=torch.float32)
    for wi, t in zip(w, tensors):
        out.add_(t.float(), alpha=wi)
    return out
