"""Fisher-weighted averaging (Matena & Raffel 2022, "Merging Models with Fisher-Weighted Averaging")."""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import normalised_weights, register_merge_method


@register_merge_method("fisher", needs_fisher=True)
def fisher(tensors: list[Tensor], fishers: list[Tensor], base: Tensor | None = None,
           weights: list[float] | None = None, floor: float = 1e-6) -> Tensor:
    """Per-entry average weighted by each model's diagonal Fisher information:
    ``theta = sum_i w_i F_i theta_i / sum_i w_i F_i``.

    A parameter a model is confident about (large Fisher) pulls the merge towards its value. With equal Fishers
    this is exactly the linear (weighted) merge. The Fisher of each model is estimated on data by
    :func:`merging.fisher_estimation.estimate_fisher`.

    Args:
        tensors: one tensor per model, each ``(*S)``.
        fishers: one ``(*S)`` non-negative diagonal Fisher per model (supplied by the merge engine).
        base: unused.
        weights: per-model weights (default uniform).
        floor: Fisher values are clamped to at least this, so entries no model has information about are averaged
            instead of divided by zero (the paper's ``fisher_floor``).

    Returns:
        ``(*S)`` float32 tensor.
    """
    if len(fishers) != len(tensors):
        raise ValueError(f"fisher: {len(fishers)} Fisher tensors for {len(tensors)} models")
    w = normalised_weights(weights, len(tensors))
    num = torch.zeros_like(tensors[0], dtype=torch.float32)
    den = torch.zeros_like(num)
    for wi, t, f in zip(w, tensors, fishers):
        f = f.float().clamp_min(floor) * wi
        num.add_(f * t.float())
        den.add_(f)
    return num / den
