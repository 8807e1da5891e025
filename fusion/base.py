"""The fusion contract shared by every method in :mod:`fusion`.

Each modality reaches a fusion module as a :class:`ModalityFeatures`: its token features, a token mask, a pooled
vector and a per-sample ``present`` flag. A fusion module maps ``(text, image)`` to one tensor of shape
``(B, out_dim)``: a fused representation that a head turns into logits, or the logits themselves when the module
sets ``produces_logits`` (late fusion).

Missing modalities are handled once, here: before ``fuse`` runs, every sample whose modality is absent has its
tokens and pooled vector replaced by learned "missing" embeddings and its token mask reduced to one valid position.
So every method gets a defined output, and the absent modality's input cannot influence it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn


class ModalityFeatures(NamedTuple):
    """Features of one modality for a batch (a named tuple: DeepSpeed ZeRO-3 finds the tensors in module inputs and
    outputs only in tuples, lists and dicts, and must, to gather parameters again for the backward pass).

    Attributes:
        tokens: ``(B, N, D)`` token features (text tokens, ViT patches or a CNN's flattened spatial map).
        mask: ``(B, N)`` bool, True where a token is real (not padding).
        pooled: ``(B, D)`` one vector per sample (CLS/mean for text, the timm pooled feature for images).
        present: ``(B,)`` bool, True where the modality was observed for that sample.
    """

    tokens: Tensor
    mask: Tensor
    pooled: Tensor
    present: Tensor

    @property
    def dim(self) -> int:
        return self.tokens.shape[-1]


class FusionModule(nn.Module):
    """Base class of every fusion method.

    Subclasses implement :meth:`fuse` and set ``self.out_dim``. Constructor arguments common to all methods are
    ``text_dim``, ``image_dim`` (widths of the incoming features), ``num_outputs`` (number of logits the task needs;
    only modules that produce logits use it), ``dim`` (the method's internal width) and ``dropout``. Method-specific
    keyword arguments come after them and form the method's config.

    Class attributes:
        modalities: the modalities the method reads; a model does not build the tower of a modality not listed.
        produces_logits: True when ``forward`` returns logits ``(B, num_outputs)`` and no head is needed.
        idle_parameters: True when some trainable parameter can get no gradient in a step (e.g. a branch taken
            only for some inputs); DDP must then search for unused parameters after every forward. No method of
            ours does (``tests/test_fusion.py`` checks every registered method, with each modality absent too).
    """

    modalities: tuple[str, ...] = ("text", "image")
    produces_logits: bool = False
    idle_parameters: bool = False

    def __init__(self, text_dim: int, image_dim: int, num_outputs: int, dim: int = 256, dropout: float = 0.1):
        super().__init__()
        self.text_dim, self.image_dim, self.num_outputs, self.dim = text_dim, image_dim, num_outputs, dim
        self.out_dim = dim
        # Learned stand-ins for an absent modality (see module docstring); small init keeps them near "no signal".
        if "text" in self.modalities:
            self.missing_text = nn.Parameter(torch.randn(text_dim) * 0.02)
        if "image" in self.modalities:
            self.missing_image = nn.Parameter(torch.randn(image_dim) * 0.02)

    def forward(self, text: ModalityFeatures | None, image: ModalityFeatures | None) -> Tensor:
        """Fuse two modalities.

        Args:
            text: text features (``None`` only for methods that do not read text).
            image: image features (``None`` only for methods that do not read images).

        Returns:
            ``(B, out_dim)`` fused features, or ``(B, num_outputs)`` logits when ``produces_logits``.
        """
        if "text" in self.modalities:
            text = fill_missing(text, self.missing_text)
        if "image" in self.modalities:
            image = fill_missing(image, self.missing_image)
        return self.fuse(text, image)

    def fuse(self, text: ModalityFeatures, image: ModalityFeatures) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def fill_missing(feats: ModalityFeatures, missing: Tensor) -> ModalityFeatures:
    """Replace absent samples by a learned embedding.

    Args:
        feats: features with ``present`` of shape ``(B,)``.
        missing: ``(D,)`` learned vector used as the pooled vector and as the single valid token.

    Returns:
        Features where absent samples carry only ``missing``: tokens ``(B, N, D)`` all equal to it, mask ``(B, N)``
        True at position 0 only, pooled ``(B, D)`` equal to it. Present samples are untouched.
    """
    # No early return when every sample is present: testing that would sync the GPU and break torch.compile's
    # graph on every forward; torch.where then selects the features unchanged.
    keep = feats.present.bool()[:, None]
    pooled = torch.where(keep, feats.pooled, missing.to(feats.pooled.dtype).expand_as(feats.pooled))
    tokens = torch.where(keep[:, :, None], feats.tokens, missing.to(feats.tokens.dtype).expand_as(feats.tokens))
    first = torch.zeros_like(feats.mask, dtype=torch.bool)
    first[:, 0] = True
    mask = torch.where(keep, feats.mask.bool(), first)
    return feats._replace(tokens=tokens, mask=mask, pooled=pooled)


def masked_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    """Mean over valid tokens: ``(B, N, D)``, ``(B, N)`` -> ``(B, D)``; rows with no valid token give zeros."""
    weights = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(1) / weights.sum(1).clamp_min(1.0)
