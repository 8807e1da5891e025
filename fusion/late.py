"""Late fusion: per-modality classifiers whose logits are averaged with learned or fixed modality weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import einsum
from torch import Tensor, nn

from .base import FusionModule, ModalityFeatures
from .layers import MLP
from .registry import register_fusion


@register_fusion("late")
class LateFusion(FusionModule):
    """Weighted average of per-modality logits, over the modalities present in each sample.

    Each modality's pooled vector (``(B, text_dim)``, ``(B, image_dim)``) goes through its own small classifier
    (one hidden layer of width ``dim``) to logits ``(B, num_outputs)``. The logits are averaged with modality weights
    (``softmax`` of learned scores, or a fixed list), renormalised per sample over the modalities that are present,
    so an absent modality contributes nothing; a sample with no modality present uses all of them (their learned
    missing embeddings). Output: logits ``(B, num_outputs)``; the model adds no head.

    The per-modality classifiers have a hidden layer rather than being linear: a sum ``f(text) + g(image)`` of
    non-linear scores can express an AND of per-modality conditions, a sum of linear scores cannot.

    Reference: Snoek, Worring and Smeulders, 2005, "Early versus Late Fusion in Semantic Video Analysis".

    Args:
        weights: ``"learned"`` (default) or a fixed list ``[w_text, w_image]`` of non-negative weights.
    """

    produces_logits = True

    def __init__(
        self,
        text_dim: int,
        image_dim: int,
        num_outputs: int,
        dim: int = 256,
        dropout: float = 0.1,
        weights: str | Sequence[float] = "learned",
    ):
        super().__init__(text_dim, image_dim, num_outputs, dim, dropout)
        self.out_dim = num_outputs
        self.text_head = MLP(text_dim, dim, num_outputs, dropout)
        self.image_head = MLP(image_dim, dim, num_outputs, dropout)
        if isinstance(weights, str):
            if weights != "learned":
                raise ValueError(f"weights must be 'learned' or a list of 2 numbers, got {weights!r}")
            self.weight_scores = nn.Parameter(torch.zeros(2))
            self.register_buffer("fixed_weights", None)
        else:
            fixed = torch.as_tensor(list(weights), dtype=torch.float32)
            if fixed.shape != (2,) or bool((fixed < 0).any()) or float(fixed.sum()) <= 0:
                raise ValueError(f"fixed weights must be 2 non-negative numbers with a positive sum, got {weights!r}")
            self.weight_scores = None
            self.register_buffer("fixed_weights", fixed)

    def fuse(self, text: ModalityFeatures, image: ModalityFeatures) -> Tensor:
        logits = torch.stack([self.text_head(text.pooled), self.image_head(image.pooled)], dim=1)  # (B, 2, C)
        weights = self.fixed_weights if self.weight_scores is None else self.weight_scores.softmax(0)
        present = torch.stack([text.present.bool(), image.present.bool()], dim=1)  # (B, 2)
        present = present | ~present.any(dim=1, keepdim=True)  # nothing observed: fall back to every modality
        present = present.to(logits.dtype)
        weights = weights.to(logits.dtype) * present
        total = weights.sum(dim=1, keepdim=True)
        # Renormalise over the present modalities; if their weights are all 0 (fixed weights), weigh them equally.
        weights = torch.where(total > 0, weights / total.clamp_min(1e-12), present / present.sum(dim=1, keepdim=True))
        return einsum(weights, logits, "b m, b m c -> b c")
