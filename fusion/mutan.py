"""MUTAN: multimodal Tucker fusion."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from .base import FusionModule, ModalityFeatures
from .registry import register_fusion


@register_fusion("mutan")
class MutanFusion(FusionModule):
    """MUTAN: Tucker-decomposed bilinear fusion with a rank-constrained core tensor.

    Each pooled vector is projected and squashed, ``q = tanh(W_q x_t)``, ``v = tanh(W_v x_i)`` (``(B, dim)``); the
    core tensor is a sum of ``rank`` rank-one slices, ``z = tanh(sum_r (W_qr q) * (W_vr v))`` with ``W_qr``,
    ``W_vr`` mapping ``dim -> dim``. Output ``(B, dim)``.

    Reference: Ben-younes, Cadene, Cord and Thome, 2017, "MUTAN: Multimodal Tucker Fusion for Visual Question
    Answering".

    Args:
        rank: rank ``R`` of the core tensor's decomposition.
    """

    def __init__(
        self, text_dim: int, image_dim: int, num_outputs: int, dim: int = 256, dropout: float = 0.1, rank: int = 5
    ):
        super().__init__(text_dim, image_dim, num_outputs, dim, dropout)
        self.rank = rank
        self.text_proj = nn.Linear(text_dim, dim)
        self.image_proj = nn.Linear(image_dim, dim)
        self.text_core = nn.Linear(dim, rank * dim)
        self.image_core = nn.Linear(dim, rank * dim)
        self.drop = nn.Dropout(dropout)

    def fuse(self, text: ModalityFeatures, image: ModalityFeatures) -> Tensor:
        q = self.drop(torch.tanh(self.text_proj(text.pooled)))
        v = self.drop(torch.tanh(self.image_proj(image.pooled)))
        q_r = rearrange(self.text_core(q), "b (r o) -> b r o", r=self.rank)
        v_r = rearrange(self.image_core(v), "b (r o) -> b r o", r=self.rank)
        return torch.tanh((q_r * v_r).sum(dim=1))
