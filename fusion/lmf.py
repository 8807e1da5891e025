"""Low-rank Multimodal Fusion (LMF)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import einsum
from torch import Tensor, nn

from .base import FusionModule, ModalityFeatures
from .registry import register_fusion


@register_fusion("lmf")
class LowRankFusion(FusionModule):
    """Low-rank Multimodal Fusion: the TFN weight tensor factorised into ``rank`` modality-specific factors.

    ``h = sum_r w_r * (W_t^r [x_t; 1]) * (W_i^r [x_i; 1]) + b``: each factor maps a pooled vector with a 1 appended,
    ``(B, text_dim + 1)`` or ``(B, image_dim + 1)``, to ``(B, rank, dim)``; their elementwise product is summed over
    the rank with learned weights, giving ``(B, dim)`` without ever building the outer product.

    Reference: Liu, Shen, Lakshminarasimhan, Liang, Zadeh and Morency, 2018, "Efficient Low-rank Multimodal Fusion
    with Modality-Specific Factors".

    Args:
        rank: number of rank-one factors.
    """

    def __init__(
        self, text_dim: int, image_dim: int, num_outputs: int, dim: int = 256, dropout: float = 0.1, rank: int = 4
    ):
        super().__init__(text_dim, image_dim, num_outputs, dim, dropout)
        # std 1/sqrt(fan_in) keeps each factor's output at unit scale, so their product does not vanish or explode.
        self.text_factor = nn.Parameter(torch.randn(rank, text_dim + 1, dim) / (text_dim + 1) ** 0.5)
        self.image_factor = nn.Parameter(torch.randn(rank, image_dim + 1, dim) / (image_dim + 1) ** 0.5)
        self.rank_weights = nn.Parameter(torch.randn(rank) / rank**0.5)
        self.bias = nn.Parameter(torch.zeros(dim))
        self.drop = nn.Dropout(dropout)

    def fuse(self, text: ModalityFeatures, image: ModalityFeatures) -> Tensor:
        x_text = F.pad(self.drop(text.pooled), (0, 1), value=1.0)
        x_image = F.pad(self.drop(image.pooled), (0, 1), value=1.0)
        f_text = einsum(x_text, self.text_factor, "b d, r d o -> b r o")
        f_image = einsum(x_image, self.image_factor, "b d, r d o -> b r o")
        return einsum(f_text * f_image, self.rank_weights, "b r o, r -> b o") + self.bias
