"""Gated Multimodal Unit (GMU)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import FusionModule, ModalityFeatures
from .layers import MLP, pooled_projections
from .registry import register_fusion


@register_fusion("gated")
class GatedFusion(FusionModule):
    """Gated Multimodal Unit: a learned gate mixes per-modality hidden representations.

    ``h_t = tanh(W_t x_t)``, ``h_i = tanh(W_i x_i)``, ``z = sigmoid(W_z [x_t; x_i])``,
    ``h = z * h_t + (1 - z) * h_i``, followed by an MLP (the paper feeds the GMU into an MLP classifier).
    Shapes: ``text.pooled`` ``(B, text_dim)``, ``image.pooled`` ``(B, image_dim)`` -> ``(B, dim)``.

    Reference: Arevalo, Solorio, Montes-y-Gomez and Gonzalez, 2017, "Gated Multimodal Units for Information
    Fusion".
    """

    def __init__(self, text_dim: int, image_dim: int, num_outputs: int, dim: int = 256, dropout: float = 0.1):
        super().__init__(text_dim, image_dim, num_outputs, dim, dropout)
        self.text_proj, self.image_proj = pooled_projections(text_dim, image_dim, dim)
        self.gate = nn.Linear(text_dim + image_dim, dim)
        self.mlp = MLP(dim, dim, dim, dropout)

    def fuse(self, text: ModalityFeatures, image: ModalityFeatures) -> Tensor:
        h_text = torch.tanh(self.text_proj(text.pooled))
        h_image = torch.tanh(self.image_proj(image.pooled))
        z = torch.sigmoid(self.gate(torch.cat([text.pooled, image.pooled], dim=-1)))
        return self.mlp(z * h_text + (1 - z) * h_image)
