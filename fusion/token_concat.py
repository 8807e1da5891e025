"""Early fusion on token sequences: concatenate both sequences, mean-pool, MLP."""

from __future__ import annotations

from torch import Tensor

from .base import FusionModule, ModalityFeatures
from .layers import MLP, TokenProjection, cat_tokens, masked_mean
from .registry import register_fusion


@register_fusion("token_concat")
class TokenConcatFusion(FusionModule):
    """Concatenation of the projected token sequences along the sequence axis, masked mean pooling, then an MLP.

    Text tokens ``(B, N_t, text_dim)`` and image tokens ``(B, N_i, image_dim)`` are projected to ``dim`` and
    concatenated to ``(B, N_t + N_i, dim)``; the mean over the valid tokens of both goes through an MLP to
    ``(B, dim)``. The cheapest token-level baseline: no attention, each modality weighted by its token count.

    Reference: the token-level early fusion that single-stream models build on, e.g. Li et al., 2019,
    "VisualBERT: A Simple and Performant Baseline for Vision and Language" (here without the transformer).
    """

    def __init__(self, text_dim: int, image_dim: int, num_outputs: int, dim: int = 256, dropout: float = 0.1):
        super().__init__(text_dim, image_dim, num_outputs, dim, dropout)
        self.text_proj = TokenProjection(text_dim, dim)
        self.image_proj = TokenProjection(image_dim, dim)
        self.mlp = MLP(dim, dim, dim, dropout)

    def fuse(self, text: ModalityFeatures, image: ModalityFeatures) -> Tensor:
        tokens, mask = cat_tokens(
            self.text_proj(text.tokens, text.mask), text.mask, self.image_proj(image.tokens, image.mask), image.mask
        )
        return self.mlp(masked_mean(tokens, mask))
