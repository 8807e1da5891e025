"""Early fusion by summing the projected pooled vectors."""

from __future__ import annotations

from torch import Tensor

from .base import FusionModule, ModalityFeatures
from .layers import MLP, pooled_projections
from .registry import register_fusion


@register_fusion("sum")
class SumFusion(FusionModule):
    """Elementwise sum of projected pooled vectors followed by an MLP.

    Shapes: ``text.pooled`` ``(B, text_dim)`` and ``image.pooled`` ``(B, image_dim)`` are projected to ``(B, dim)``,
    added, and mapped by an MLP to ``(B, dim)``. The MLP supplies the non-linearity that lets a sum express
    interactions between the modalities.

    Reference: the additive early-fusion baseline of Baltrusaitis, Ahuja and Morency, 2019, "Multimodal Machine
    Learning: A Survey and Taxonomy".
    """

    def __init__(self, text_dim: int, image_dim: int, num_outputs: int, dim: int = 256, dropout: float = 0.1):
        super().__init__(text_dim, image_dim, num_outputs, dim, dropout)
        self.text_proj, self.image_proj = pooled_projections(text_dim, image_dim, dim)
        self.mlp = MLP(dim, dim, dim, dropout)

    def fuse(self, text: ModalityFeatures, image: ModalityFeatures) -> Tensor:
        return self.mlp(self.text_proj(text.pooled) + self.image_proj(image.pooled))
