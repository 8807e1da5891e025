"""DARE (Yu et al. 2024, "Language Models are Super Mario"): Drop And REscale task vectors, then add them."""

from __future__ import annotations

import zlib

import torch
from torch import Tensor

from ..registry import register_merge_method
from .task_arithmetic import add_task_vectors


def drop_and_rescale(delta: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """Zero each entry with probability ``p`` and scale the survivors by ``1 / (1 - p)`` (unbiased in mean)."""
    if p == 0.0:
        return delta
    keep = torch.rand(delta.shape, generator=generator) >= p
    return delta * keep / (1.0 - p)


@register_merge_method("dare", needs_base=True)
def dare(tensors: list[Tensor], base: Tensor, p: float = 0.5, scale: float = 1.0,
         weights: list[float] | None = None, seed: int = 0, key: str = "") -> Tensor:
    """``base + scale * sum_i w_i * DARE_p(theta_i - base)`` (DARE followed by task arithmetic, as in the paper).

    Args:
        tensors: one tensor per fine-tuned model, each ``(*S)``.
        base: ``(*S)`` tensor of the shared starting point.
        p: drop probability in [0, 1); 0 is plain task arithmetic.
        scale: ``lambda`` of task arithmetic.
        weights: per-model multipliers (default 1 each).
        seed: the masks are a function of (seed, tensor name, model index), so a merge is reproducible.
        key: the tensor's name (supplied by the merge engine), so different tensors get different masks.

    Returns:
        ``(*S)`` float32 tensor.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dare: p must be in [0, 1), got {p}")

    def sparsify(i: int, delta: Tensor) -> Tensor:
        return drop_and_rescale(delta, p, torch.Generator().manual_seed(zlib.crc32(f"{seed}:{key}:{i}".encode())))

    return add_task_vectors(tensors, base, scale, weights, sparsify)
