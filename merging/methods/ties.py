"""TIES-merging (Yadav et al. 2023, "TIES-Merging: Resolving Interference When Merging Models")."""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import register_merge_method


def trim(delta: Tensor, density: float) -> Tensor:
    """Keep the ``density`` fraction of entries of largest magnitude, zero the rest (ties keep a few more)."""
    if density >= 1.0:
        return delta
    k = int(round(density * delta.numel()))
    if k <= 0:
        return torch.zeros_like(delta)
    threshold = delta.abs().flatten().kthvalue(delta.numel() - k + 1).values
    return delta * (delta.abs() >= threshold)


@register_merge_method("ties", needs_base=True)
def ties(tensors: list[Tensor], base: Tensor, density: float = 0.2, scale: float = 1.0) -> Tensor:
    """Trim, elect sign, disjoint mean.

    1. Trim: each task vector ``theta_i - base`` keeps its top-``density`` entries by magnitude. Trimming is PER
       TENSOR (as in mergekit), not global over the whole model as in the paper: it streams one tensor at a time
       and gives every layer the same density.
    2. Elect: the sign of each entry is the sign of the summed trimmed task vectors (the side with more mass).
    3. Disjoint mean: average only the trimmed entries that agree with the elected sign; zeros (trimmed or
       untouched) do not dilute the mean. E.g. task-vector entries (+3, -1) merge to +3, (+3, 0) to +3.

    Args:
        tensors: one tensor per fine-tuned model, each ``(*S)``.
        base: ``(*S)`` tensor of the shared starting point.
        density: fraction of each task vector kept, in (0, 1].
        scale: ``lambda`` applied to the merged task vector.

    Returns:
        ``(*S)`` float32 tensor ``base + scale * merged_delta``.
    """
    if not 0.0 < density <= 1.0:
        raise ValueError(f"ties: density must be in (0, 1], got {density}")
    b = base.float()
    # One trimmed task vector per model, not stacked: the sign election and the disjoint mean each walk the list
    # with tensor-sized temporaries, so the peak is N + a few tensors, not several (N, *S) stacks (on the largest
    # tensor of a model, the embedding, those stacks were most of the merge's memory).
    deltas = [trim(t.float() - b, density) for t in tensors]
    total = torch.zeros_like(b)
    for d in deltas:
        total += d
    sign = torch.sign(total)
    total.zero_()
    count = torch.zeros_like(b)
    for d in deltas:
        agree = d * sign > 0  # non-zero and on the elected side; an entry whose sum is 0 elects no side
        total += torch.where(agree, d, 0.0)
        count += agree
    return b + scale * total / count.clamp_min(1)
