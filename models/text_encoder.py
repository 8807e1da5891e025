"""Text tower: any HuggingFace ``AutoModel`` (BERT, mBERT, XLM-R, MiniLM, ...) behind one small adapter."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import AutoConfig, AutoModel, BertConfig, PretrainedConfig

from fusion.base import ModalityFeatures, masked_mean

from .errors import hf_model_hint


def _encoder_layers(model: nn.Module) -> list[nn.Module]:
    """The stack of transformer layers of an HF encoder (BERT/RoBERTa/XLM-R/MiniLM/DistilBERT layouts)."""
    for path in ("encoder.layer", "transformer.layer", "encoder.layers", "layers"):
        node = model
        for attr in path.split("."):
            node = getattr(node, attr, None)
            if node is None:
                break
        if isinstance(node, nn.ModuleList):
            return list(node)
    raise ValueError(f"cannot find the transformer layers of {type(model).__name__} to unfreeze")


class TextEncoder(nn.Module):
    """Wraps an HF encoder; returns token features, a pooled vector and the attention mask.

    Args:
        name: HF model name or local directory. ``None`` builds a tiny BERT from ``tiny`` (no download).
        pretrained: load weights (``from_pretrained``) or only the architecture (``from_config``).
        tiny: BertConfig fields for the tiny model (hidden_size, num_hidden_layers, ...).
        vocab_size: vocabulary size of the tokenizer (needed for the tiny model).
        pooling: ``"cls"`` (first token) or ``"mean"`` (mean of valid tokens).
        freeze: freeze every weight of the tower; ``unfreeze_last_n`` then re-enables the last N layers.
        gradient_checkpointing: trade compute for activation memory.
        hf_config: a saved HF config; rebuilds the architecture without any download (used by ``from_pretrained``).
    """

    def __init__(
        self,
        name: str | None = None,
        pretrained: bool = True,
        tiny: dict | None = None,
        vocab_size: int | None = None,
        pooling: str = "cls",
        freeze: bool = False,
        unfreeze_last_n: int = 0,
        gradient_checkpointing: bool = False,
        hf_config: PretrainedConfig | None = None,
        **_: object,
    ):
        super().__init__()
        self.pooling = pooling
        if hf_config is not None:
            self.model = AutoModel.from_config(hf_config, add_pooling_layer=False)
        elif name is None:
            if vocab_size is None:
                raise ValueError("a tiny text encoder needs the tokenizer's vocab_size")
            config = BertConfig(vocab_size=vocab_size, max_position_embeddings=512, **(tiny or {}))
            self.model = AutoModel.from_config(config, add_pooling_layer=False)
        else:
            try:
                if pretrained:
                    self.model = AutoModel.from_pretrained(name, add_pooling_layer=False)
                else:
                    self.model = AutoModel.from_config(AutoConfig.from_pretrained(name), add_pooling_layer=False)
            except (OSError, ValueError) as err:
                raise hf_model_hint("text encoder", name, err) from err
            except TypeError:  # architectures without a pooler do not take add_pooling_layer
                loader = AutoModel.from_pretrained if pretrained else lambda n: AutoModel.from_config(
                    AutoConfig.from_pretrained(n))
                self.model = loader(name)
        self.dim = self.model.config.hidden_size
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        if freeze:
            self.model.requires_grad_(False)
            if unfreeze_last_n > 0:
                for layer in _encoder_layers(self.model)[-unfreeze_last_n:]:
                    layer.requires_grad_(True)

    @property
    def hf_config(self) -> PretrainedConfig:
        return self.model.config

    def forward(self, input_ids: Tensor, attention_mask: Tensor, present: Tensor | None = None) -> ModalityFeatures:
        """``(B, L)`` ids and mask -> tokens ``(B, L, D)``, mask ``(B, L)``, pooled ``(B, D)``."""
        tokens = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.bool()
        pooled = tokens[:, 0] if self.pooling == "cls" else masked_mean(tokens, mask)
        if present is None:
            present = torch.ones(tokens.shape[0], dtype=torch.bool, device=tokens.device)
        return ModalityFeatures(tokens=tokens, mask=mask, pooled=pooled, present=present)

    def save_config(self, directory: str | Path) -> None:
        self.model.config.save_pretrained(directory)
