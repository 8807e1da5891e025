"""Model Stock (Jang et al. 2024, "Model Stock: All we need is just a few fine-tuned models")."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from ..registry import register_merge_method


def interpolation_ratio(cos: float, n: int) -> float:
    """``t = N cos(theta) / (1 + (N - 1) cos(theta))``, the paper's ratio between the average of ``N`` fine-tuned
    weights and the pretrained one, from the angle ``theta`` between their deltas; clamped to [0, 1] (deltas at
    an obtuse angle keep the base)."""
    cos = min(max(cos, 0.0), 1.0)
    return n * cos / (1.0 + (n - 1) * cos)


@register_merge_method("model_stock", needs_base=True)
def model_stock(tensors: list[Tensor], base: Tensor, filter_wise: bool = False) -> Tensor:
    """``t * mean_i(theta_i) + (1 - t) * base``, per tensor, with ``t`` from the angle between fine-tuned deltas.

    The paper observes that weights fine-tuned from one start lie on a thin shell around a centre that is closer
    to the optimum than any of them; with few models the average has not reached it, and the best point on the
    line from the base to the average is given by the angle ``theta`` between deltas ``theta_i - base``: ``cos``
    is the mean over pairs of models of the cosine between their flattened deltas (per layer, as in the paper),
    and ``t = N cos / (1 + (N - 1) cos)`` (:func:`interpolation_ratio`). Identical deltas give ``t = 1`` (the
    average); orthogonal ones ``t = 0`` (the base).

    Args:
        tensors: ``N >= 2`` tensors of fine-tuned models, each ``(*S)`` (one model returns itself).
        base: ``(*S)`` tensor of the pretrained model they were fine-tuned from.
        filter_wise: one ratio per row (output filter) of a tensor of 2 or more dimensions instead of one per
            tensor (as mergekit offers).

    Returns:
        ``(*S)`` float32 tensor.
    """
    b = base.float()
    if len(tensors) < 2:
        return tensors[0].float()
    average = torch.stack([x.float() for x in tensors]).mean(0)
    rows = b.shape[0] if filter_wise and b.ndim >= 2 else 1
    deltas = [(t.float() - b).reshape(rows, -1) for t in tensors]  # (rows, D) each
    cosines = []
    for u, v in itertools.combinations(deltas, 2):
        nu, nv = u.norm(dim=1), v.norm(dim=1)
        cos = (u * v).sum(1) / (nu * nv).clamp_min(1e-30)
        cosines.append(torch.where((nu == 0) | (nv == 0), torch.ones_like(cos), cos))
    cos = torch.stack(cosines).mean(0).clamp(0.0, 1.0)  # (rows,)
    n = len(tensors)
    t = (n * cos / (1.0 + (n - 1) * cos)).view(rows, *[1] * (b.ndim - 1)) if rows > 1 else \
        interpolation_ratio(float(cos[0]), n)
    return t * average + (1.0 - t) * b
