"""Cross-attention fusion: one modality's tokens attend to the other's."""

from __future__ import annotations

from torch import Tensor, nn

from .base import FusionModule, ModalityFeatures
from .layers import Block, TokenProjection, masked_mean
from .registry import register_fusion


@register_fusion("cross_attention")
class CrossAttentionFusion(FusionModule):
    """Text tokens attend to image tokens; output is the masked mean over the (updated) text tokens.

    Both token sequences are projected to ``dim``: text ``(B, N_t, dim)``, image ``(B, N_i, dim)``. Each of
    ``layers`` pre-norm blocks applies multi-head cross-attention (queries: text, keys/values: image, image padding
    masked) and a feed-forward layer, both residual. Output ``(B, dim)``. :class:`CrossAttentionI2T` swaps roles.

    Reference: the cross-attention layer of Vaswani et al., 2017, "Attention Is All You Need", as used for
    vision-language fusion by e.g. Lu et al., 2019, "ViLBERT" and Tsai et al., 2019, "Multimodal Transformer for
    Unaligned Multimodal Language Sequences".

    Args:
        layers: number of cross-attention blocks.
        heads: attention heads.
    """

    query_modality = "text"

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
        self.text_proj = TokenProjection(text_dim, dim)
        self.image_proj = TokenProjection(image_dim, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, dropout, cross=True) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def fuse(self, text: ModalityFeatures, image: ModalityFeatures) -> Tensor:
        t = self.text_proj(text.tokens, text.mask)
        i = self.image_proj(image.tokens, image.mask)
        (x, x_mask), (context, context_mask) = (t, text.mask), (i, image.mask)
        if self.query_modality == "image":
            (x, x_mask), (context, context_mask) = (context, context_mask), (x, x_mask)
        for block in self.blocks:
            x = block(x, context_mask, context)
        return self.norm(masked_mean(x, x_mask))


@register_fusion("cross_attention_i2t")
class CrossAttentionI2T(CrossAttentionFusion):
    """Image tokens attend to text tokens; output is the masked mean over the image tokens, ``(B, dim)``.

    Same block and arguments as :class:`CrossAttentionFusion` with the roles of the modalities swapped.
    """

    query_modality = "image"
