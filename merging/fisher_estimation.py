"""Diagonal Fisher information of a model, estimated on data (for Fisher-weighted merging, Matena & Raffel 2022).

``F_j = E_x E_{y ~ p(y|x)} [(d log p(y|x) / d theta_j)^2]``: per-example squared gradients of the log-likelihood.
By default ``y`` is SAMPLED from the model's own predictive distribution (the true Fisher, as in the paper);
``labels="true"`` uses the dataset labels instead (the empirical Fisher).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn


def _example(batch: dict[str, Any], i: int) -> dict[str, Any]:
    size = batch["labels"].shape[0]
    return {k: v[i:i + 1] if isinstance(v, Tensor) and v.ndim > 0 and v.shape[0] == size else v
            for k, v in batch.items()}


def estimate_fisher(model: nn.Module, loader: Iterable[dict[str, Any]], max_samples: int = 64,
                    labels: str = "sampled", seed: int = 0) -> dict[str, Tensor]:
    """Average per-example squared gradients of ``log p(y|x)`` over up to ``max_samples`` examples.

    Args:
        model: a :class:`models.MultimodalModel` (put in eval mode here so dropout does not add noise).
        loader: batches as collated by the data pipeline.
        max_samples: examples used (each costs one backward pass).
        labels: ``sampled`` (y drawn from the model's softmax / sigmoids) or ``true`` (the batch's labels).
        seed: seed of the label sampling.

    Returns:
        ``{parameter name: (*shape) float32 Fisher}`` for every trainable parameter; tensors named like the
        model's state dict, so the merge engine streams them next to the weights.
    """
    if labels not in ("sampled", "true"):
        raise ValueError(f"labels must be 'sampled' or 'true', got {labels!r}")
    was_training = model.training
    model.eval()
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    fisher = {k: torch.zeros_like(p, dtype=torch.float32) for k, p in params.items()}
    gen = torch.Generator().manual_seed(seed)
    multi = getattr(model, "multi_label", False)
    seen = 0
    for batch in loader:
        for i in range(batch["labels"].shape[0]):
            if seen >= max_samples:
                break
            ex = _example(batch, i)
            logits = model(ex)["logits"].float()
            if multi:
                target = torch.bernoulli(torch.sigmoid(logits.detach()).cpu(), generator=gen).to(logits) \
                    if labels == "sampled" else ex["labels"].float()
                log_lik = -F.binary_cross_entropy_with_logits(logits, target, reduction="sum")
            else:
                target = torch.multinomial(torch.softmax(logits.detach(), -1).cpu(), 1, generator=gen)[:, 0] \
                    .to(logits.device) if labels == "sampled" else ex["labels"]
                log_lik = -F.cross_entropy(logits, target, reduction="sum")
            grads = torch.autograd.grad(log_lik, list(params.values()), allow_unused=True)
            for (k, _), g in zip(params.items(), grads):
                if g is not None:
                    fisher[k].add_(g.detach().float() ** 2)
            seen += 1
        if seen >= max_samples:
            break
    model.train(was_training)
    if seen == 0:
        raise ValueError("estimate_fisher: the loader gave no examples")
    return {k: (v / seen).cpu() for k, v in fisher.items()}


def save_fisher(fisher: dict[str, Tensor], path: str | Path) -> Path:
    save_file({k: v.contiguous() for k, v in fisher.items()}, str(path), metadata={"format": "pt"})
    return Path(path)
