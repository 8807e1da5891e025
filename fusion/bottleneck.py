"""Multimodal Bottleneck Transformer (MBT): modalities exchange information only through a few shared tokens."""

from __future__ import annotations

import torch
from einops import repeat
from torch import Tensor, nn

from .base import FusionModule, ModalityFeatures
from .layers import Block, TokenProjection, cat_tokens, masked_mean
from .registry import register_fusion


@register_fusion("bottleneck")
class BottleneckFusion(FusionModule):
    """Per-modality transformer layers that share ``num_bottlenecks`` fusion tokens.

    In every layer each modality's self-attention block runs over ``[its tokens; bottleneck tokens]``
    (``(B, N_m + K, dim)``), so a modality sees the other only through the ``K`` bottleneck tokens; the two updated
    copies of the bottleneck are then averaged. Information crosses over from the second layer on, hence
    ``layers=2`` by default. Output: masked means of both modalities' tokens, concatenated, ``(B, 2 * dim)`` (a
    linear head on it generalises MBT's averaging of per-modality logits).

    Reference: Nagrani, Yang, Arnab, Jansen, Schmid and Sun, 2021, "Attention Bottlenecks for Multimodal Fusion".

    Args:
        layers: number of fusion layers.
        heads: attention heads.
        num_bottlenecks: number of shared bottleneck tokens ``K``.
    """

    def __init__(
        self,
        text_dim: int,
        image_dim: int,
        num_outputs: int,
        dim: int = 256,
        dropout: float = 0.1,
        layers: int = 2,
        heads: int = 4,
        num_bottlenecks: int = 4,
    ):
        super().__init__(text_dim, image_dim, num_outputs, dim, dropout)
        self.out_dim = 2 * dim
        self.text_proj = TokenProjection(text_dim, dim)
        self.image_proj = TokenProjection(image_dim, dim)
        self.bottleneck = nn.Parameter(torch.randn(num_bottlenecks, dim) * 0.02)
        self.text_blocks = nn.ModuleList(Block(dim, heads, dropout) for _ in range(layers))
        self.image_blocks = nn.ModuleList(Block(dim, heads, dropout) for _ in range(layers))
        self.text_norm, self.image_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def fuse(self, text: ModalityFeatures, image: ModalityFeatures) -> Tensor:
        t = self.text_proj(text.tokens, text.mask)
        i = self.image_proj(image.tokens, image.mask)
        z = repeat(self.bottleneck, "k d -> b k d", b=t.shape[0])
        k = z.shape[1]
        z_mask = text.mask.new_ones(z.shape[:2], dtype=torch.bool)
        n_text, n_image = t.shape[1], i.shape[1]
        for text_block, image_block in zip(self.text_blocks, self.image_blocks):
            xt, mt = cat_tokens(t, text.mask, z, z_mask)
            xi, mi = cat_tokens(i, image.mask, z, z_mask)
            xt, xi = text_block(xt, mt), image_block(xi, mi)
            t, z_text = xt.split([n_text, k], dim=1)
            i, z_image = xi.split([n_image, k], dim=1)
            z = (z_text + z_image) / 2
        return torch.cat([self.text_norm(masked_mean(t, text.mask)), self.image_norm(masked_mean(i, image.mask))], -1)
