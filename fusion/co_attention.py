"""Co-attention: two streams, each attending to the other (ViLBERT / LXMERT)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import FusionModule, ModalityFeatures
from .layers import Block, TokenProjection, masked_mean
from .registry import register_fusion


@register_fusion("co_attention")
class CoAttentionFusion(FusionModule):
    """Two-stream co-attention: in each layer both streams cross-attend to the other, then self-attend.

    Text ``(B, N_t, dim)`` and image ``(B, N_i, dim)`` tokens (after projection) are updated simultaneously: each
    stream cross-attends to the other stream as it was at the start of the layer (LXMERT's cross-modality layer:
    cross-attention, self-attention, feed-forward, all pre-norm and residual). The masked means of both streams are
    concatenated: output ``(B, 2 * dim)``.

    References: Lu, Batra, Parikh and Lee, 2019, "ViLBERT: Pretraining Task-Agnostic Visiolinguistic
    Representations for Vision-and-Language Tasks"; Tan and Bansal, 2019, "LXMERT: Learning Cross-Modality Encoder
    Representations from Transformers".

    Args:
        layers: number of co-attention layers.
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

        def stream() -> nn.ModuleDict:
            return nn.ModuleDict(
                {"cross": Block(dim, heads, dropout, cross=True, ffn=False), "self": Block(dim, heads, dropout)}
            )

        self.text_layers = nn.ModuleList(stream() for _ in range(layers))
        self.image_layers = nn.ModuleList(stream() for _ in range(layers))
        self.text_norm, self.image_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def fuse(self, text: ModalityFeatures, image: ModalityFeatures) -> Tensor:
        t = self.text_proj(text.tokens, text.mask)
        i = self.image_proj(image.tokens, image.mask)
        for text_layer, image_layer in zip(self.text_layers, self.image_layers):
            t, i = text_layer["cross"](t, image.mask, i), image_layer["cross"](i, text.mask, t)
            t, i = text_layer["self"](t, text.mask), image_layer["self"](i, image.mask)
        pooled = [self.text_norm(masked_mean(t, text.mask)), self.image_norm(masked_mean(i, image.mask))]
        return torch.cat(pooled, dim=-1)
