"""Early fusion by concatenating the projected pooled vectors."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import FusionModule, ModalityFeatures
from .layers import MLP, pooled_projections
from .registry import register_fusion


@register_fusion("concat")
class ConcatFusion(FusionModule):
    """Concatenation of projected pooled vectors followed by an MLP (the classic early-fusion baseline).

    Shapes: ``text.pooled`` ``(B, text_dim)`` and ``image.pooled`` ``(B, image_dim)`` are projected to ``(B, dim)``
    each, concatenated to ``(B, 2 * dim)`` and mapped by an MLP to ``(B, dim)``.

    Reference: the early-fusion baseline surveyed in Baltrusaitis, Ahuja and Morency, 2019, "Multimodal Machine
    Learning: A Survey and Taxonomy".
    """

    def __init__(self, text_dim: int, image_dim: int, num_outputs: int, dim: int = 256, dropout: float = 0.1):
        super().__init__(text_dim, image_dim, num_outputs, dim, dropout)
        self.text_proj, self.image_proj = pooled_projections(text_dim, image_dim, dim)
        self.mlp = MLP(2 * dim, dim, dim, dropout)

    def fuse(self, text: ModalityFeatures, image: ModalityFeatures) -> Tensor:
        both = torch.cat([self.text_proj(text.pooled), self.image_proj(image.pooled)], dim=-1)
        return self.mlp(both)
