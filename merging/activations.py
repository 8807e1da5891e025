"""Input statistics of a model's linear layers on data, for merges that need activations (RegMean).

Collected with the model in eval mode (dropout off, normalisation statistics frozen) through forward hooks, and
accumulated as running sums: the memory is one ``(in, in)`` Gram matrix per linear layer, whatever the number of
examples, and batches stream from the data pipeline one at a time.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn


def take_first(batch: dict[str, Any], k: int) -> dict[str, Any]:
    """The first ``k`` examples of a collated batch (tensors whose first axis is the batch's are sliced)."""
    size = batch["labels"].shape[0]
    return {key: v[:k] if isinstance(v, Tensor) and v.ndim > 0 and v.shape[0] == size else v
            for key, v in batch.items()}


def collect_grams(model: nn.Module, loader: Iterable[dict[str, Any]], max_examples: int = 256,
                  text_mask_key: str = "attention_mask") -> dict[str, Tensor]:
    """Sum of ``x^T x`` over the inputs ``x`` of every ``nn.Linear`` of ``model``, on up to ``max_examples``.

    A linear layer applied to ``(B, L, in)`` token features contributes every token row; in the text tower
    (modules named ``text.*``) rows of padding tokens (``batch[text_mask_key] == 0``) are left out, so a model's
    Gram does not depend on how its batches were padded.

    Args:
        model: a :class:`models.MultimodalModel` (any module called as ``model(batch)``); put in eval mode while
            collecting, then returned to its mode.
        loader: collated batches (``labels`` gives the batch size; labels are not used).
        max_examples: examples read; the last batch is cut to reach exactly this many.
        text_mask_key: the batch key of the text padding mask ``(B, L)``.

    Returns:
        ``{"<linear module>.weight": (in, in) float64 Gram}``, named like the weight it belongs to, so the merge
        engine streams it beside that tensor.
    """
    grams: dict[str, Tensor] = {}
    current: dict[str, Any] = {}

    def hook(name: str):
        def accumulate(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            x = inputs[0].detach()
            mask = current.get("mask")
            if name.startswith("text.") and mask is not None and x.ndim == 3 and tuple(mask.shape) == x.shape[:2]:
                x = x[mask.bool()]
            x = x.reshape(-1, x.shape[-1]).double()
            gram = x.T @ x
            if name in grams:
                grams[name].add_(gram)
            else:
                grams[name] = gram

        return accumulate

    handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    was_training = model.training
    model.eval()
    seen = 0
    try:
        with torch.no_grad():
            for batch in loader:
                if seen >= max_examples:
                    break
                batch = take_first(batch, max_examples - seen)
                current["mask"] = batch.get(text_mask_key)
                model(batch)
                seen += batch["labels"].shape[0]
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if seen == 0:
        raise ValueError("collect_grams: the loader gave no examples")
    return {f"{name}.weight": g.cpu() for name, g in grams.items()}


def save_grams(grams: dict[str, Tensor], path: str | Path) -> Path:
    save_file({k: v.contiguous() for k, v in grams.items()}, str(path), metadata={"format": "pt"})
    return Path(path)
