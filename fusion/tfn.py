"""Tensor Fusion Network (TFN)."""

from __future__ import annotations

import torch.nn.functional as F
from einops import einsum, rearrange
from torch import Tensor, nn

from .base import FusionModule, ModalityFeatures
from .layers import MLP
from .registry import register_fusion


def append_one(x: Tensor) -> Tensor:
    """``(B, d)`` -> ``(B, d + 1)`` with a constant 1 appended, so the outer product keeps the unimodal terms."""
    return F.pad(x, (0, 1), value=1.0)


@register_fusion("tfn")
class TensorFusion(FusionModule):
    """Tensor Fusion Network: outer product of ``[h_t, 1]`` and ``[h_i, 1]``, then a post-fusion MLP.

    Each pooled vector is first reduced by a ReLU layer to ``tensor_dim`` (default 32) so the outer product stays
    small: ``(B, tensor_dim + 1) x (B, tensor_dim + 1) -> (B, (tensor_dim + 1) ** 2)``; the appended 1 keeps the
    unimodal terms next to the bimodal ones. The post-fusion MLP maps it to ``(B, dim)``.

    Reference: Zadeh, Chen, Poria, Cambria and Morency, 2017, "Tensor Fusion Network for Multimodal Sentiment
    Analysis".

    Args:
        tensor_dim: width of each modality's vector before the outer product.
    """

    def __init__(
        self,
        text_dim: int,
        image_dim: int,
        num_outputs: int,
        dim: int = 256,
        dropout: float = 0.1,
        tensor_dim: int = 32,
    ):
        super().__init__(text_dim, image_dim, num_outputs, dim, dropout)
        self.text_net = nn.Sequential(nn.Linear(text_dim, tensor_dim), nn.ReLU())
        self.image_net = nn.Sequential(nn.Linear(image_dim, tensor_dim), nn.ReLU())
        self.drop = nn.Dropout(dropout)
        self.post = MLP((tensor_dim + 1) ** 2, dim, dim, dropout)

    def fuse(self, text: ModalityFeatures, image: ModalityFeatures) -> Tensor:
        h_text = append_one(self.text_net(text.pooled))
        h_image = append_one(self.image_net(image.pooled))
        outer = einsum(h_text, h_image, "b t, b i -> b t i")
        return self.post(self.drop(rearrange(outer, "b t i -> b (t i)")))
