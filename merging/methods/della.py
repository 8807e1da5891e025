"""DELLA-merging (Deep et al. 2024, "DELLA-Merging: Reducing Interference in Model Merging through
Magnitude-Based Sampling"): Drop by magnitude-ranked probabilities (MagPrune), Elect signs, fuse (disjoint mean)."""

from __future__ import annotations

import zlib

import torch
from torch import Tensor

from ..registry import register_merge_method


def keep_probabilities(delta: Tensor, density: float, epsilon: float) -> Tensor:
    """MagPrune's ``(*S)`` keep probabilities: entries ranked by magnitude (rank 0 the smallest of ``n``) get
    ``density - epsilon / 2 + epsilon * rank / (n - 1)``, linearly spaced over a window ``epsilon`` wide around
    ``density``: larger magnitudes are dropped less often, and the mean keep probability is ``density``. Clamped
    to (0, 1]."""
    n = delta.numel()
    if n == 1:
        return torch.full_like(delta, density, dtype=torch.float32)
    rank = torch.empty(n, dtype=torch.float32)
    rank[delta.abs().flatten().argsort(stable=True)] = torch.arange(n, dtype=torch.float32)
    p = density - epsilon / 2 + epsilon * rank / (n - 1)
    return p.clamp(1e-6, 1.0).view(delta.shape)


@register_merge_method("della", needs_base=True)
def della(tensors: list[Tensor], base: Tensor, density: float = 0.7, epsilon: float = 0.1, scale: float = 1.0,
          seed: int = 0, key: str = "") -> Tensor:
    """``base + scale * elect_and_fuse(MagPrune(theta_i - base))``, per tensor.

    1. Drop: each task-vector entry survives with its :func:`keep_probabilities` ``k`` and is rescaled by
       ``1 / k`` (so the pruned vector equals the task vector in expectation, entry by entry).
    2. Elect: the sign of each entry is the sign of the sum of the pruned task vectors.
    3. Fuse: the mean of the surviving entries that agree with it (zeros do not dilute it), as in TIES.

    Args:
        tensors: one tensor per fine-tuned model, each ``(*S)``.
        base: ``(*S)`` tensor of the shared starting point.
        density: mean keep probability, in (0, 1].
        epsilon: width of the window of keep probabilities, in [0, 2 * min(density, 1 - density)] to stay in (0, 1].
        scale: ``lambda`` applied to the fused task vector.
        seed: the masks are a function of (seed, tensor name, model index): a merge is reproducible.
        key: the tensor's name (supplied by the merge engine).

    Returns:
        ``(*S)`` float32 tensor.
    """
    if not 0.0 < density <= 1.0 or epsilon < 0:
        raise ValueError(f"della: need 0 < density <= 1 and epsilon >= 0, got density={density}, epsilon={epsilon}")
    b = base.float()
    pruned = []
    for i, t in enumerate(tensors):
        d = t.float() - b
        k = keep_probabilities(d, density, epsilon)
        gen = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{key}:{i}".encode()))
        pruned.append(d * (torch.rand(d.shape, generator=gen) < k) / k)
    deltas = torch.stack(pruned)  # (N, *S)
    sign = torch.sign(deltas.sum(0))
    agree = (torch.sign(deltas) == sign) & (deltas != 0)
    merged = (deltas * agree).sum(0) / agree.sum(0).clamp_min(1)
    return b + scale * merged
