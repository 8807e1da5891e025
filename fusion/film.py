"""FiLM: feature-wise linear modulation of image tokens by the text."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .base import FusionModule, ModalityFeatures
from .layers import TokenProjection, masked_mean
from .registry import register_fusion


@register_fusion("film")
class FiLMFusion(FusionModule):
    """FiLM: the text predicts a per-channel scale and shift that modulate the image tokens.

    Image tokens ``(B, N_i, image_dim)`` are projected to ``(B, N_i, dim)``. Each of ``layers`` FiLM residual
    blocks computes ``x + relu(gamma * LN(W x) + beta)`` where ``(gamma, beta)`` ``(B, dim)`` each are predicted from
    ``text.pooled`` ``(B, text_dim)`` (``gamma`` as ``1 + delta`` so a block starts near identity modulation).
    The tokens are then mean-pooled over valid positions: output ``(B, dim)``.

    Reference: Perez, Strub, de Vries, Dumoulin and Courville, 2018, "FiLM: Visual Reasoning with a General
    Conditioning Layer".

    Args:
        layers: number of FiLM residual blocks.
    """

    def __init__(
        self, text_dim: int, image_dim: int, num_outputs: int, dim: int = 256, dropout: float = 0.1, layers: int = 1
    ):
        super().__init__(text_dim, image_dim, num_outputs, dim, dropout)
        self.image_proj = TokenProjection(image_dim, dim)
        self.film = nn.ModuleList(nn.Linear(text_dim, 2 * dim) for _ in range(layers))
        self.convs = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def fuse(self, text: ModalityFeatures, image: ModalityFeatures) -> Tensor:
        x = self.image_proj(image.tokens, image.mask)
        for film, conv in zip(self.film, self.convs):
            delta_gamma, beta = film(text.pooled)[:, None].chunk(2, dim=-1)  # (B, 1, dim) each
            # Affine-free norm: FiLM supplies scale and shift. The shape is a constant, not x.shape[-1:], which an
            # ONNX trace would turn into a Gather on a traced shape that the exporter rejects.
            h = F.layer_norm(conv(x), (conv.out_features,))
            x = x + self.drop(F.relu((1 + delta_gamma) * h + beta))
        return self.norm(masked_mean(x, image.mask))
