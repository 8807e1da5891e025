"""Perceiver: a small set of learned latents reads both modalities by cross-attention."""

from __future__ import annotations

import torch
from einops import repeat
from torch import Tensor, nn

from .base import FusionModule, ModalityFeatures
from .layers import Block, TokenProjection, cat_tokens
from .registry import register_fusion


@register_fusion("perceiver")
class PerceiverFusion(FusionModule):
    """Learned latents cross-attend to the concatenated tokens of both modalities, then self-attend.

    Text ``(B, N_t, dim)`` and image ``(B, N_i, dim)`` tokens (projected, plus a learned modality embedding) are
    concatenated; ``num_latents`` latents ``(B, L, dim)`` cross-attend to them with a key padding mask, then go
    through ``layers`` self-attention blocks. Output: the mean of the latents ``(B, dim)``. The cost is linear in
    the number of input tokens.

    Reference: Jaegle, Gimeno, Brock, Zisserman, Vinyals and Carreira, 2021, "Perceiver: General Perception with
    Iterative Attention".

    Args:
        layers: self-attention blocks over the latents after the cross-attention.
        heads: attention heads.
        num_latents: number of latent vectors ``L``.
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
        num_latents: int = 16,
    ):
        super().__init__(text_dim, image_dim, num_outputs, dim, dropout)
        self.text_proj = TokenProjection(text_dim, dim)
        self.image_proj = TokenProjection(image_dim, dim)
        self.type_embed = nn.Parameter(torch.randn(2, dim) * 0.02)
        self.latents = nn.Parameter(torch.randn(num_latents, dim) * 0.02)
        self.cross = Block(dim, heads, dropout, cross=True)
        self.blocks = nn.ModuleList(Block(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def fuse(self, text: ModalityFeatures, image: ModalityFeatures) -> Tensor:
        t = self.text_proj(text.tokens, text.mask) + self.type_embed[0]
        i = self.image_proj(image.tokens, image.mask) + self.type_embed[1]
        inputs, mask = cat_tokens(t, text.mask, i, image.mask)
        latents = repeat(self.latents, "l d -> b l d", b=inputs.shape[0])
        latents = self.cross(latents, mask, inputs)
        latent_mask = mask.new_ones(latents.shape[:2])
        for block in self.blocks:
            latents = block(latents, latent_mask)
        return self.norm(latents.mean(dim=1))
