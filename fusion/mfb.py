"""Multimodal Factorized Bilinear pooling (MFB)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import reduce
from torch import Tensor, nn

from .base import FusionModule, ModalityFeatures
from .registry import register_fusion


def signed_sqrt(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Power normalisation ``sign(x) * sqrt(|x|)``, with ``eps`` so the gradient at 0 stays finite."""
    return torch.sqrt(F.relu(x) + eps) - torch.sqrt(F.relu(-x) + eps)


@register_fusion("mfb")
class MFBFusion(FusionModule):
    """MFB: low-rank bilinear pooling with sum pooling over ``factor`` groups, power and L2 normalisation.

    ``z = SumPool_k((U^T x_t) * (V^T x_i))``: both pooled vectors are projected to ``(B, dim * factor)``, multiplied
    elementwise, summed over non-overlapping groups of ``factor`` to ``(B, dim)``, then signed-square-rooted and
    L2-normalised. Output ``(B, dim)`` has unit norm.

    Reference: Yu, Yu, Fan and Tao, 2017, "Multi-modal Factorized Bilinear Pooling with Co-Attention Learning for
    Visual Question Answering".

    Args:
        factor: the latent factor ``k`` of the bilinear decomposition (5 in the paper).
    """

    def __init__(
        self, text_dim: int, image_dim: int, num_outputs: int, dim: int = 256, dropout: float = 0.1, factor: int = 5
    ):
        super().__init__(text_dim, image_dim, num_outputs, dim, dropout)
        self.factor = factor
        self.text_proj = nn.Linear(text_dim, dim * factor)
        self.image_proj = nn.Linear(image_dim, dim * factor)
        self.drop = nn.Dropout(dropout)

    def fuse(self, text: ModalityFeatures, image: ModalityFeatures) -> Tensor:
        joint = self.drop(self.text_proj(text.pooled) * self.image_proj(image.pooled))
        z = reduce(joint, "b (o k) -> b o", "sum", k=self.factor)
        return F.normalize(signed_sqrt(z), dim=-1)
