"""Unimodal baselines: an MLP on one modality's pooled vector; the other modality is not read (may be None)."""

from __future__ import annotations

from torch import Tensor

from .base import FusionModule, ModalityFeatures
from .layers import MLP
from .registry import register_fusion


@register_fusion("text_only")
class TextOnly(FusionModule):
    """Text-only baseline: ``text.pooled`` ``(B, text_dim)`` -> MLP -> ``(B, dim)``; ``image`` is ignored.

    Reference: the unimodal baselines every multimodal benchmark reports, e.g. Kiela et al., 2020, "The Hateful
    Memes Challenge: Detecting Hate Speech in Multimodal Memes".
    """

    modalities = ("text",)

    def __init__(self, text_dim: int, image_dim: int, num_outputs: int, dim: int = 256, dropout: float = 0.1):
        super().__init__(text_dim, image_dim, num_outputs, dim, dropout)
        self.mlp = MLP(text_dim, dim, dim, dropout)

    def fuse(self, text: ModalityFeatures, image: ModalityFeatures | None) -> Tensor:
        return self.mlp(text.pooled)


@register_fusion("image_only")
class ImageOnly(FusionModule):
    """Image-only baseline: ``image.pooled`` ``(B, image_dim)`` -> MLP -> ``(B, dim)``; ``text`` is ignored.

    Reference: the unimodal baselines every multimodal benchmark reports, e.g. Kiela et al., 2020, "The Hateful
    Memes Challenge: Detecting Hate Speech in Multimodal Memes".
    """

    modalities = ("image",)

    def __init__(self, text_dim: int, image_dim: int, num_outputs: int, dim: int = 256, dropout: float = 0.1):
        super().__init__(text_dim, image_dim, num_outputs, dim, dropout)
        self.mlp = MLP(image_dim, dim, dim, dropout)

    def fuse(self, text: ModalityFeatures | None, image: ModalityFeatures) -> Tensor:
        return self.mlp(image.pooled)
