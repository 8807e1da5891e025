"""Single-stream fusion: one transformer over the concatenated tokens of both modalities."""

from __future__ import annotations

import torch
from einops import repeat
from torch import Tensor, nn

from .base import FusionModule, ModalityFeatures
from .layers import Block, TokenProjection, cat_tokens
from .registry import register_fusion


@register_fusion("single_stream")
class SingleStreamFusion(FusionModule):
    """A learned CLS token, text tokens and image tokens in one sequence, encoded by a transformer; output the CLS.

    Tokens are projected to ``dim`` and tagged with a learned modality-type embedding; the sequence
    ``[CLS; text (B, N_t, dim); image (B, N_i, dim)]`` goes through ``layers`` pre-norm transformer blocks
    (``fusion.layers.Block``) with a key padding mask. Output: the final CLS state ``(B, dim)``.

    References: Li et al., 2019, "VisualBERT: A Simple and Performant Baseline for Vision and Language"; Kiela et al.,
    2019, "Supervised Multimodal Bitransformers for Classifying Images and Text" (MMBT); Kim, Son and Kim, 2021,
    "ViLT: Vision-and-Language Transformer Without Convolution or Region Supervision".

    Args:
        layers: transformer encoder layers.
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
        self.text_proj = TokenProjection(text_dim, dim)
        self.image_proj = TokenProjection(image_dim, dim)
        self.type_embed = nn.Parameter(torch.randn(2, dim) * 0.02)
        self.cls = nn.Parameter(torch.randn(dim) * 0.02)
        # Our own pre-norm blocks rather than nn.TransformerEncoder, whose fused attention path bakes the traced
        # sequence length into its reshapes, which made the ONNX graph fail on any other text length.
        self.blocks = nn.ModuleList(Block(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def fuse(self, text: ModalityFeatures, image: ModalityFeatures) -> Tensor:
        t = self.text_proj(text.tokens, text.mask) + self.type_embed[0]
        i = self.image_proj(image.tokens, image.mask) + self.type_embed[1]
        tokens, mask = cat_tokens(t, text.mask, i, image.mask)
        cls = repeat(self.cls, "d -> b 1 d", b=tokens.shape[0])
        tokens = torch.cat([cls, tokens], dim=1)
        mask = torch.cat([mask.new_ones(mask.shape[0], 1), mask], dim=1)
        for block in self.blocks:
            tokens = block(tokens, mask)
        return self.norm(tokens[:, 0])
