"""AdaMerging (Yang et al. 2024, "AdaMerging: Adaptive Model Merging for Multi-Task Learning"): task arithmetic
with one learned coefficient per model (task-wise) or per model and tensor (layer-wise)."""

from __future__ import annotations

from torch import Tensor

from ..registry import register_merge_method


@register_merge_method("adamerging", needs_base=True)
def adamerging(tensors: list[Tensor], base: Tensor, coefficients: dict[str, list[float]] | None = None,
               init: float = 0.3, key: str = "") -> Tensor:
    """``base + sum_k lambda_k(key) * (theta_k - base)`` with the coefficients the ``adamerging`` task learned.

    ``merge.py`` with ``method: adamerging`` first trains the coefficients through the engine's loop
    (:class:`merging.adamerging.AdaMergingTask`: minimise the entropy of the merged model's predictions on unlabelled
    data), then merges with them here, tensor by tensor.

    Args:
        tensors: one tensor per fine-tuned model, each ``(*S)``.
        base: ``(*S)`` tensor of the shared starting point.
        coefficients: ``{tensor name: one lambda per model}`` (layer-wise), or ``{"*": [...]}`` for every tensor
            (task-wise); a tensor named in neither gets ``init``.
        init: the coefficient of a tensor without a learned one (the paper's initial 0.3).
        key: the tensor's name (supplied by the merge engine).

    Returns:
        ``(*S)`` float32 tensor.
    """
    coefficients = coefficients or {}
    lam = coefficients.get(key, coefficients.get("*", [init] * len(tensors)))
    if len(lam) != len(tensors):
        raise ValueError(f"adamerging: {len(lam)} coefficients for {key!r} but {len(tensors)} models")
    b = base.float()
    out = b.clone()
    for lk, t in zip(lam, tensors):
        out.add_(t.float() - b, alpha=float(lk))
    return out
