"""Multimodal Transformer (MulT): crossmodal transformers in both directions, then self-attention."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import FusionModule, ModalityFeatures
from .layers import Block, TokenProjection, masked_mean
from .registry import register_fusion


@register_fusion("mult")
class MulTFusion(FusionModule):
    """MulT: text <- image and image <- text crossmodal transformers, a self-attention transformer on each, concat.

    Text ``(B, N_t, dim)`` and image ``(B, N_i, dim)`` tokens (after projection) feed two crossmodal transformers of
    ``layers`` blocks: in each, the target stream's queries attend to the *low-level* (projected, not updated)
    tokens of the source modality, as in the paper. Each result then goes through ``layers`` self-attention blocks,
    is mean-pooled over its valid tokens, and the two are concatenated: output ``(B, 2 * dim)``.

    Reference: Tsai, Bai, Liang, Kolter, Morency and Salakhutdinov, 2019, "Multimodal Transformer for Unaligned
    Multimodal Language Sequences".

    Args:
        layers: blocks in each crossmodal and each self-attention transformer.
        heads: attention heads.
    """

    def __init__(
        self,
        text_dim: int,
        image_dim: int,
        num_outputs: int,
        dim: int = 256,
        dropout: float = 0.1,
        layers: int = 1,
        heads: int = 4,
    ):
        super().__init__(text_dim, image_dim, num_outputs, dim, dropout)
        self.out_dim = 2 * dim
        self.text_proj = TokenProjection(text_dim, dim)
        self.image_proj = TokenProjection(image_dim, dim)
        self.text_from_image = nn.ModuleList(Block(dim, heads, dropout, cross=True) for _ in range(layers))
        self.image_from_text = nn.ModuleList(Block(dim, heads, dropout, cross=True) for _ in range(layers))
        self.text_self = nn.ModuleList(Block(dim, heads, dropout) for _ in range(layers))
        self.image_self = nn.ModuleList(Block(dim, heads, dropout) for _ in range(layers))
        self.text_norm, self.image_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def fuse(self, text: ModalityFeatures, image: ModalityFeatures) -> Tensor:
        t0 = self.text_proj(text.tokens, text.mask)
        i0 = self.image_proj(image.tokens, image.mask)
        t, i = t0, i0
        for block in self.text_from_image:
            t = block(t, image.mask, i0)
        for block in self.image_from_text:
            i = block(i, text.mask, t0)
        for block in self.text_self:
            t = block(t, text.mask)
        for block in self.image_self:
            i = block(i, image.mask)
        return torch.cat([self.text_norm(masked_mean(t, text.mask)), self.image_norm(masked_mean(i, image.mask))], -1)
