"""RegMean (Jin et al. 2023, "Dataless Knowledge Fusion by Merging Weights of Language Models"): each linear layer
merged in closed form, as the least-squares fit of every model's outputs on its own inputs."""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import register_merge_method


def reduce_off_diagonal(gram: Tensor, alpha: float) -> Tensor:
    """``alpha * G + (1 - alpha) * diag(G)``: the paper's regularisation, shrinking the inputs' correlations (the
    off-diagonal entries) towards 0; ``alpha = 0`` turns RegMean into an average weighted by input energy."""
    return alpha * gram + (1.0 - alpha) * torch.diag_embed(torch.diagonal(gram))


@register_merge_method("regmean", needs_grams=True)
def regmean(tensors: list[Tensor], grams: list[Tensor] | None = None, alpha: float = 0.9) -> Tensor:
    """``W = (sum_i G_i W_i^T)^T (sum_i G_i)^{-1}``-style closed form for a linear layer's weight, the mean otherwise.

    For a linear layer ``y = x W^T`` with weights ``W_i`` ``(out, in)`` and input Gram matrices ``G_i = X_i^T X_i``
    ``(in, in)`` (``X_i``: the inputs the layer saw in model ``i`` on that model's data, ``(n_i, in)``), the merge
    minimising ``sum_i ||X_i W^T - X_i W_i^T||^2`` is ``W^T = (sum_i G_i)^{-1} sum_i G_i W_i^T``: with ``alpha = 1``
    exactly the least-squares solution over the concatenated inputs. Each ``G_i`` first has its off-diagonal entries
    scaled by ``alpha`` (:func:`reduce_off_diagonal`; the paper's default region is 0.9 to 1). Tensors without
    Grams (biases, norms, embeddings, convolutions) are averaged, as in the paper.

    Args:
        tensors: one tensor per model, each ``(*S)``; a linear weight is ``(out, in)``.
        grams: one ``(in, in)`` Gram per model for a linear weight (supplied by the merge engine from
            :func:`merging.activations.collect_grams`), else None.
        alpha: off-diagonal scaling in [0, 1].

    Returns:
        ``(*S)`` float32 tensor.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"regmean: alpha must be in [0, 1], got {alpha}")
    if grams is None or tensors[0].ndim != 2:
        return torch.stack([t.float() for t in tensors]).mean(0)
    if len(grams) != len(tensors):
        raise ValueError(f"regmean: {len(grams)} Gram matrices for {len(tensors)} models")
    g = [reduce_off_diagonal(x.double(), alpha) for x in grams]
    lhs = sum(g)  # (in, in)
    rhs = sum(gi @ t.double().T for gi, t in zip(g, tensors))  # (in, out)
    try:
        solution = torch.linalg.solve(lhs, rhs)
    except RuntimeError:  # singular (an input dimension no example excited): the minimum-norm least squares
        solution = torch.linalg.lstsq(lhs, rhs, driver="gelsd").solution
    return solution.T.float()
